"""The bench's windowed page-load job on Quix Streams (3.x, confluent-kafka and RocksDB).

Topic of raw bytes -> decode a record into its events (`apply(expand=True)`) -> event
time as the message timestamp (`set_timestamp`) -> `group_by` page x device (Quix
repartitions through a topic of its own) -> de-duplicate (a stateful `filter`, ids in
the key's RocksDB state) -> `tumbling_window(1 min, grace 30 s).reduce(...).final()`, one
summary per closed window. Quix keeps window values as JSON in its state store, so the
figures travel as `WindowFigures.to_dict()`. Events reaching the de-duplication are
served as `expmon_events_total{topic=...}` on a tiny /metrics, so the bench times it like
the worker.

Runs from the venv `make bench` makes for it (.venv-quix), with this source tree on
PYTHONPATH: Quix Streams' pins exclude the project's pydantic, and this module needs
none of it.

    .venv-quix/bin/python -m expmon.bench.peers.quix_job --bootstrap HOST:PORT --topic T --port P
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from expmon.bench.peers.common import (
    PEER_CONSUMER_TUNING,
    EventCount,
    WindowLog,
    peer_parser,
    serve_event_count,
)
from expmon.bench.peers.window import (
    GRACE_MS,
    WINDOW_MS,
    Decoder,
    WindowFigures,
    event_time_ms,
    summarize,
    window_key,
)
from schemas.events import Event

log = logging.getLogger(__name__)


def reduce_window() -> tuple[Any, Any]:
    """(reducer, initializer) over `WindowFigures.to_dict()` values."""

    def initializer(event: Event) -> dict[str, Any]:
        return WindowFigures().add(event).to_dict()

    def reducer(figures: dict[str, Any], event: Event) -> dict[str, Any]:
        return WindowFigures.from_dict(figures).add(event).to_dict()

    return reducer, initializer


def first_seen(count: EventCount) -> Any:
    """The stateful filter: an `event_id` passes once per key (page x device)."""

    def keep(event: Event, state: Any) -> bool:
        count.events += 1
        event_id = event["event_id"]
        if state.exists(event_id):
            return False
        state.set(event_id, 1)
        return True

    return keep


def build_app(args: argparse.Namespace, count: EventCount) -> Any:
    from quixstreams import Application

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        consumer_extra_config=dict(PEER_CONSUMER_TUNING),
        state_dir=args.state_dir or tempfile.mkdtemp(prefix="expmon-bench-quix-"),
        loglevel=args.log_level,
    )
    topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    decoder = Decoder()
    sdf = app.dataframe(topic)
    sdf = sdf.apply(decoder.decode, expand=True)
    sdf = sdf.set_timestamp(lambda event, _key, _ts, _headers: event_time_ms(event))
    sdf = sdf.group_by(window_key, name="page-device")
    sdf = sdf.filter(first_seen(count), stateful=True)
    reducer, initializer = reduce_window()

    def late(*_args: Any) -> bool:
        count.late += 1
        return False  # counted, not logged per event

    sdf = (
        sdf.tumbling_window(duration_ms=WINDOW_MS, grace_ms=GRACE_MS, on_late=late)
        .reduce(reducer=reducer, initializer=initializer)
        .final()
    )

    window_log = WindowLog(count, args.windows_out)

    def summary(window: dict[str, Any], key: Any, _ts: int, _headers: Any) -> dict[str, Any]:
        figures = WindowFigures.from_dict(window["value"])
        out = summarize(str(key), int(window["start"]), figures)
        window_log.emit(out)
        return out

    sdf = sdf.apply(summary, metadata=True)
    return app


def build_parser() -> argparse.ArgumentParser:
    return peer_parser("expmon.bench.peers.quix_job", __doc__)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level))
    count = serve_event_count(args.port, args.topic)
    build_app(args, count).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
