"""What the bench's consumers share: the processed-event count they serve as
`expmon_events_total{topic=...}`, librdkafka's tuned prefetch, the peers' arguments.

The count is a plain int read by a collector at scrape time: a Counter's lock per event
would be a cost of the bench's own making on the peers' per-event paths."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

FETCH_MAX_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_BYTES = 16 * 1024 * 1024
# librdkafka prefetches into a queue per partition, by default a small one: tuned up so
# that its threads fetch while Python decodes (the confluent ceiling's consumer).
CONSUMER_TUNING: dict[str, Any] = {
    "queued.min.messages": 500_000,
    "queued.max.messages.kbytes": 512 * 1024,
    "fetch.max.bytes": FETCH_MAX_BYTES,
    "max.partition.fetch.bytes": PARTITION_FETCH_BYTES,
    "receive.message.max.bytes": FETCH_MAX_BYTES + 1024 * 1024,
    "fetch.wait.max.ms": 100,
}
# The peers' consumers: the same deep queue, librdkafka's default fetch sizes. A fetch of
# 16 MB from one partition is ~50 s of the bench's event time in 100-event records: read
# ahead of the other partitions by that much, the windows' watermark (per key, over all
# partitions) passes the others' events and the frameworks drop them as late.
PEER_CONSUMER_TUNING: dict[str, Any] = {
    "queued.min.messages": 500_000,
    "queued.max.messages.kbytes": 512 * 1024,
}
# Events a peer takes from one partition at a time (Bytewax's source batch, in records:
# this over the events per record), for the same reason: 3 s of the bench's event time.
# On 200k events in 100-event records: 10,000 dropped 13 % as late; 3,000 and 1,000
# none, 3,000 ~1.2x faster than 1,000.
PEER_SOURCE_EVENTS = 3_000


def peer_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A peer job's command line: `python -m module`, described by its docstring's first
    paragraph, with the arguments every peer job takes (the bench passes them all)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=(doc or "").split("\n\n")[0]
    )
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--port", type=int, required=True, help="/metrics port")
    parser.add_argument("--group", default="expmon-bench-peer", help="consumer group")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument(
        "--events-per-record", type=int, default=1, help="events in each record of the topic"
    )
    parser.add_argument("--state-dir", default=None, help="the framework's state directory")
    parser.add_argument(
        "--windows-out",
        default=None,
        metavar="FILE",
        help="also write each emitted window's summary here, a JSON line each (to check them)",
    )
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING"
    )
    return parser


class WindowLog:
    """Emitted windows counted, and written as JSON lines when a file is given."""

    def __init__(self, count: EventCount, path: str | None) -> None:
        self.count = count
        self._out = open(path, "ab", buffering=0) if path else None  # noqa: SIM115

    def emit(self, summary: dict[str, Any]) -> None:
        self.count.windows += 1
        if self._out is not None:
            self._out.write(orjson.dumps(summary) + b"\n")


class EventCount(Collector):
    """Events a job took in (`events`), and what it emitted or dropped, by topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.events = 0
        self.windows = 0  # windows emitted
        self.late = 0  # events dropped as late by the framework

    def describe(self) -> Iterator[CounterMetricFamily]:
        # the registry maps names to collectors from this: /metrics?name[]=... needs it
        return self.collect()

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, doc, value in (
            ("expmon_events", "Events taken in", self.events),
            ("expmon_bench_windows", "Windows emitted", self.windows),
            ("expmon_bench_late_events", "Events dropped as late", self.late),
        ):
            family = CounterMetricFamily(name, doc, labels=["topic"])
            family.add_metric([self.topic], value)
            yield family


def serve_event_count(port: int, topic: str) -> EventCount:
    """Start a /metrics on 127.0.0.1:`port` (a thread) serving the returned count."""
    registry = CollectorRegistry()
    count = EventCount(topic)
    registry.register(count)
    start_http_server(port, addr="127.0.0.1", registry=registry)
    return count
