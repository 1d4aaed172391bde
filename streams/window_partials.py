"""The merge processor: per-partition window partials into final windows and views."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from expmon.families.checkout import new_checkout_merger
from expmon.families.logistics import new_logistics_merger
from expmon.families.page_load import new_page_load_merger
from schemas import codec
from streams.alerting import AlertRunner, build_sinks
from streams.runner import MergeRunner
from streams.state import TableState

if TYPE_CHECKING:
    from streams.app import Runtime


def register(rt: Runtime) -> list[MergeRunner]:
    settings = rt.settings
    table = rt.app.Table("window-merge-state", partitions=1, key_type=bytes, value_type=bytes)
    state = TableState(table)
    runners = [
        MergeRunner(rt, new_merger(settings), state)
        for new_merger in (new_page_load_merger, new_checkout_merger, new_logistics_merger)
    ]

    async def window_partials(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_max_records, settings.batch_within_seconds
        ):
            messages = [codec.loads(e.message.value) for e in events]
            telemetry = [m for m in messages if m.get("kind") == "telemetry"]
            if telemetry and rt.alert_runner is not None:
                rt.alert_runner.add_telemetry(telemetry)
            for runner in runners:
                await runner.handle(messages)

    if rt.rules is not None:
        rt.alert_runner = AlertRunner(rt, rt.rules, build_sinks(rt), state)
    rt.app.agent(rt.partials_topic, name="window-partials", concurrency=1)(window_partials)
    return runners
