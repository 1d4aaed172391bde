"""The bench's windowed page-load job on Bytewax (0.21, a Rust dataflow core).

Kafka source (confluent-kafka, one consumer per partition, deep prefetch queues but
default fetch sizes, ~3000 events from a partition at a time: see `PEER_CONSUMER_TUNING`
and `PEER_SOURCE_EVENTS`) -> decode a batch of records -> key by page x device -> de-duplicate
(`stateful_flat_map`) -> `fold_window` (event-time clock with 30 s of grace, 1-minute
tumbling windows) -> one summary per closed window. Events reaching the de-duplication
are served as `expmon_events_total{topic=...}` on a tiny /metrics, so the bench times it
like the worker; windows emitted and events dropped as late are served beside it.

    python -m expmon.bench.peers.bytewax_job --bootstrap HOST:PORT --topic T --port P
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from expmon.bench.peers.common import (
    PEER_CONSUMER_TUNING,
    PEER_SOURCE_EVENTS,
    EventCount,
    WindowLog,
    peer_parser,
    serve_event_count,
)
from expmon.bench.peers.window import (
    GRACE_MS,
    WINDOW_MS,
    Decoder,
    Deduplicator,
    WindowFigures,
    event_time_ms,
    summarize,
    window_key,
)
from schemas.events import Event

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def deduplicate(count: EventCount) -> Any:
    """The `stateful_flat_map` mapper: a Deduplicator per key, each event counted."""

    def mapper(state: Deduplicator | None, event: Event) -> tuple[Deduplicator, Iterable[Event]]:
        if state is None:
            state = Deduplicator()
        count.events += 1
        if state.first_seen(event["event_id"], event_time_ms(event)):
            return state, (event,)
        return state, ()

    return mapper


def event_datetime(event: Event) -> datetime:
    return EPOCH + timedelta(milliseconds=event_time_ms(event))


def kafka_source(bootstrap: str, topic: str, events_per_record: int) -> Any:
    from bytewax.connectors.kafka import KafkaSource

    return KafkaSource(
        [bootstrap],
        [topic],
        tail=True,
        add_config={name: str(value) for name, value in PEER_CONSUMER_TUNING.items()},
        batch_size=max(1, PEER_SOURCE_EVENTS // max(1, events_per_record)),
    )


def build_flow(source: Any, count: EventCount, windows_out: str | None = None) -> Any:
    """The dataflow over `source`, whose items have the record's bytes as `.value`."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators import windowing as win

    flow = Dataflow("expmon-bench-page-load")
    messages = op.input("kafka", flow, source)
    decoder = Decoder()

    def decode(batch: list[Any]) -> list[Event]:
        events: list[Event] = []
        for message in batch:
            events += decoder.decode(message.value)
        return events

    events = op.flat_map_batch("decode", messages, decode)
    keyed = op.key_on("page_device", events, window_key)
    unique = op.stateful_flat_map("dedup", keyed, deduplicate(count))
    windows = win.fold_window(
        "window",
        unique,
        win.EventClock(event_datetime, wait_for_system_duration=timedelta(milliseconds=GRACE_MS)),
        win.TumblingWindower(length=timedelta(milliseconds=WINDOW_MS), align_to=EPOCH),
        WindowFigures,
        WindowFigures.add,
        WindowFigures.merge,
    )

    def summary(item: tuple[str, tuple[int, WindowFigures]]) -> dict[str, Any]:
        key, (window_id, figures) = item
        return summarize(key, window_id * WINDOW_MS, figures)

    window_log = WindowLog(count, windows_out)

    def emitted(_step: str, summary: dict[str, Any]) -> None:
        window_log.emit(summary)

    def late(_step: str, _item: Any) -> None:
        count.late += 1

    op.inspect("emitted", op.map("summarize", windows.down, summary), emitted)
    op.inspect("late", windows.late, late)
    return flow


def build_parser() -> argparse.ArgumentParser:
    return peer_parser("expmon.bench.peers.bytewax_job", __doc__)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level))
    from bytewax.run import cli_main

    count = serve_event_count(args.port, args.topic)
    source = kafka_source(args.bootstrap, args.topic, args.events_per_record)
    flow = build_flow(source, count, args.windows_out)
    cli_main(flow, workers_per_process=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
