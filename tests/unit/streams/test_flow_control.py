"""Stream queues across faust's recovery: records fetched for the new assignment survive.

faust resumes flow twice per assignment (to read the changelogs, then at the end of
recovery, after the input partitions were resumed and seeked). Its stock flow control
cleared the stream queues on both; the second clear dropped records the consumer had
already moved past, and a restarted worker silently skipped them.
"""

from pathlib import Path

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from expmon.settings import Settings
from streams.app import KeepQueuedOnResume, new_faust_app


def recovery_sequence(flow: FlowControlEvent) -> FlowControlQueue[str]:
    """What faust does with the flow and an input stream queue on an assignment."""
    queue: FlowControlQueue[str] = FlowControlQueue(
        maxsize=100, flow_control=flow, clear_on_resume=True
    )
    queue.put_nowait("fetched before the revocation")
    flow.suspend()  # on_partitions_revoked: suspend, then clear
    flow.clear()
    flow.resume()  # recovery starts: read the changelogs
    # on_recovery_completed: input partitions resumed and seeked to the committed
    # offsets; the fetcher delivers records and moves its position past them ...
    queue.put_nowait("offset 1880")
    queue.put_nowait("offset 1881")
    flow.resume()  # ... then flow is resumed once more
    return queue


def drain(queue: FlowControlQueue[str]) -> list[str]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_stock_flow_control_drops_records_fetched_at_the_end_of_recovery() -> None:
    # Why KeepQueuedOnResume exists; if faust changes this, the subclass can go.
    assert drain(recovery_sequence(FlowControlEvent())) == []


def test_records_fetched_at_the_end_of_recovery_are_kept() -> None:
    assert drain(recovery_sequence(KeepQueuedOnResume())) == ["offset 1880", "offset 1881"]


def test_resume_after_a_suspension_still_clears() -> None:
    flow = KeepQueuedOnResume()
    queue: FlowControlQueue[str] = FlowControlQueue(
        maxsize=10, flow_control=flow, clear_on_resume=True
    )
    flow.resume()
    queue.put_nowait("old assignment")
    flow.suspend()
    assert not flow.is_active()
    flow.resume()
    assert flow.is_active()
    assert queue.empty()


def test_the_worker_app_uses_it(tmp_path: Path) -> None:
    app = new_faust_app(Settings.from_env(state_dir=tmp_path, app_id="flow-test"))
    assert isinstance(app.flow_control, KeepQueuedOnResume)
