"""The two reference consumers `expmon bench` compares the pipeline with, each its own process.

`--mode bare`: the ceiling. An aiokafka consumer (partitions assigned, no group) that only
decodes each record with orjson and walks the events of a batch record; it times itself
from its first record to the last expected event and prints one JSON line.

`--mode faust` (default): a plain faust agent doing the pipeline's per-record work one
event at a time (`stream.events()`): decode and validate with `RecordDecoder` and window
with `PageLoadStage.process([record])`, no batching. It serves the processed-event count
as `expmon_events_total{topic=...}` on a tiny /metrics so the bench times it like the worker.

    python -m expmon.bench.baseline --bootstrap HOST:PORT --topic T --app-id A --port P
    python -m expmon.bench.baseline --mode bare --bootstrap HOST:PORT --topic T --events N
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, start_http_server

from expmon.engine.stage import RawRecord
from expmon.families.page_load import PageLoadStage
from expmon.gctune import throughput_gc
from expmon.kafka.connection import aiokafka_kwargs
from expmon.memory import read_vm_hwm_kb
from expmon.settings import Settings

log = logging.getLogger(__name__)

BARE_FETCH_MAX_BYTES = 64 * 1024 * 1024
BARE_PARTITION_FETCH_BYTES = 16 * 1024 * 1024
BARE_MAX_RECORDS = 10_000


# --------------------------------------------------------------------------- bare ceiling
async def run_bare(
    settings: Settings,
    topic: str,
    partitions: int,
    expected: int,
    timeout_s: float,
    repeat: int = 1,
) -> dict[str, Any]:
    """Consume `topic` from the beginning until `expected` events were decoded, `repeat` times."""
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=BARE_FETCH_MAX_BYTES,
        max_partition_fetch_bytes=BARE_PARTITION_FETCH_BYTES,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        loads = orjson.loads
        events = records = 0

        def decode(batches: dict[Any, list[Any]]) -> None:
            nonlocal events, records
            for messages in batches.values():
                records += len(messages)
                for message in messages:
                    value = loads(message.value)
                    if type(value) is list:
                        for _event in value:
                            events += 1
                    else:
                        events += 1

        passes: list[dict[str, Any]] = []
        for _ in range(repeat):
            events = records = 0
            await consumer.seek_to_beginning(*tps)
            # Warm-up: connection, metadata and the first fetch are not part of the timing.
            while records == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no record within {timeout_s:.0f} s")
                decode(await consumer.getmany(timeout_ms=200, max_records=1))
            first_events, first_records = events, records
            started = time.perf_counter()
            while events < expected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {events}/{expected} events within {timeout_s:.0f} s")
                decode(await consumer.getmany(timeout_ms=200, max_records=BARE_MAX_RECORDS))
            passes.append(
                {
                    "events": events,
                    "records": records,
                    "measured_events": events - first_events,
                    "measured_records": records - first_records,
                    "seconds": time.perf_counter() - started,
                }
            )
    finally:
        await consumer.stop()
    # The ceiling: the best pass (later passes may read from the broker's page cache, as
    # the pipeline and faust scenarios do anyway).
    best = max(passes, key=lambda p: p["measured_events"] / p["seconds"])
    return {**best, "passes": passes, "peak_rss_kb": read_vm_hwm_kb()}


# --------------------------------------------------------------------------- plain faust agent
def run_faust(settings: Settings, topic_name: str, partitions: int, port: int) -> None:
    """Run the plain faust agent until SIGTERM/SIGINT."""
    import faust  # slow import: the bare mode and `expmon bench` skip it

    registry = CollectorRegistry()
    counter = Counter(
        "expmon_events", "Events processed by the plain faust agent", ["topic"], registry=registry
    ).labels(topic_name)
    start_http_server(port, addr="127.0.0.1", registry=registry)

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    datadir = Path(tempfile.mkdtemp(prefix="expmon-bench-faust-", dir=settings.state_dir))
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        topic_replication_factor=1,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        datadir=str(datadir),
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    stage = PageLoadStage(settings, topic_name, partitions, live=True)

    async def plain(stream: Any) -> None:
        # One event at a time: the same decode, validate and windowing, no batching.
        async for event in stream.events():
            message = event.message
            out = stage.process(
                [RawRecord(message.partition, message.offset, message.key, message.value)]
            )
            counter.inc(out.received)

    app.agent(topic, name="plain", concurrency=1)(plain)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        override_logging=False,
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


# --------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m expmon.bench.baseline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--mode", choices=["faust", "bare"], default="faust")
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--app-id", default="expmon-bench-faust", help="faust mode: app id")
    parser.add_argument("--port", type=int, default=0, help="faust mode: /metrics port")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument("--events", type=int, default=0, help="bare mode: events to consume")
    parser.add_argument("--timeout", type=float, default=180.0, help="bare mode: give up after")
    parser.add_argument("--repeat", type=int, default=3, help="bare mode: passes, best reported")
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, args.log_level)))
    settings = Settings.from_env(
        kafka_bootstrap=args.bootstrap,
        app_id=args.app_id,
        topic_page_loads=args.topic,
        log_level=args.log_level,
    )
    if args.mode == "bare":
        if args.events <= 0:
            log.error("--events must be positive in bare mode")
            return 2
        try:
            with throughput_gc():  # as in the worker and the replay: like with like
                result = asyncio.run(
                    run_bare(
                        settings,
                        args.topic,
                        args.partitions,
                        args.events,
                        args.timeout,
                        max(1, args.repeat),
                    )
                )
        except TimeoutError as exc:
            log.error("bare consumer: %s", exc)
            return 1
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return 0
    with throughput_gc():
        run_faust(settings, args.topic, args.partitions, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
