"""The reference consumers `expmon bench` compares the pipeline with, each its own process.

`--mode bare`: the ceiling. An aiokafka consumer (partitions assigned, no group) that only
decodes each record with orjson and walks the events of a batch record; it times itself
from its first record to the last expected event and prints one JSON line.

`--mode confluent`: the same ceiling with confluent-kafka (librdkafka, the client Bytewax
and Quix Streams use), its prefetch tuned (`expmon.bench.peers.common.CONSUMER_TUNING`),
same JSON line. Needs the `bench` extra (`make bench`).

`--mode faust` (default): a plain faust agent doing the pipeline's per-record work one
event at a time (`stream.events()`): decode and validate with `RecordDecoder` and window
with `PageLoadStage.process([record])`, no batching. It serves the processed-event count
as `expmon_events_total{topic=...}` on a tiny /metrics so the bench times it like the worker.

    python -m expmon.bench.baseline --bootstrap HOST:PORT --topic T --app-id A --port P
    python -m expmon.bench.baseline --mode bare --bootstrap HOST:PORT --topic T --events N
    python -m expmon.bench.baseline --mode confluent --bootstrap HOST:PORT --topic T --events N
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

from expmon.bench.peers.common import (
    CONSUMER_TUNING,
    FETCH_MAX_BYTES,
    PARTITION_FETCH_BYTES,
    serve_event_count,
)
from expmon.engine.stage import RawRecord
from expmon.families.page_load import PageLoadStage
from expmon.gctune import throughput_gc
from expmon.kafka.connection import aiokafka_kwargs, librdkafka_config
from expmon.memory import read_vm_hwm_kb
from expmon.settings import Settings

log = logging.getLogger(__name__)

BARE_MAX_RECORDS = 10_000
CONFLUENT_POLL_SECONDS = 0.005


def count_events(values: Sequence[bytes | None]) -> int:
    """Decode each record value; the events it holds (a JSON array: its items)."""
    loads = orjson.loads
    events = 0
    for raw in values:
        value = loads(raw) if raw is not None else None
        if type(value) is list:
            for _event in value:
                events += 1
        else:
            events += 1
    return events


def best_pass(passes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ceiling: the best pass (later passes may read from the broker's page cache, as
    the pipeline and faust scenarios do anyway)."""
    return max(passes, key=lambda p: p["measured_events"] / p["seconds"])


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
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        events = records = 0

        def decode(batches: dict[Any, list[Any]]) -> None:
            nonlocal events, records
            for messages in batches.values():
                records += len(messages)
                events += count_events([m.value for m in messages])

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
    return {**best_pass(passes), "passes": passes, "peak_rss_kb": read_vm_hwm_kb()}


# --------------------------------------------------------------------------- confluent ceiling
def run_confluent(
    settings: Settings,
    topic: str,
    partitions: int,
    expected: int,
    timeout_s: float,
    repeat: int = 1,
) -> dict[str, Any]:
    """`run_bare` with confluent-kafka: partitions assigned from the beginning, decode only."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException
    from confluent_kafka import TopicPartition as RdTopicPartition

    consumer = Consumer(
        {
            **librdkafka_config(settings),
            **CONSUMER_TUNING,
            # librdkafka wants a group even for assigned partitions; nothing is committed
            "group.id": f"expmon-bench-confluent-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    deadline = time.monotonic() + timeout_s

    def consume(limit: int, timeout_s: float) -> tuple[int, int]:
        # consume() waits for `limit` messages or the timeout: a short one, or each call
        # that finds the prefetched queue short of `limit` idles until it expires
        messages = consumer.consume(num_messages=limit, timeout=timeout_s)
        for message in messages:
            error = message.error()
            if error is not None:
                raise KafkaException(error)
        return len(messages), count_events([m.value() for m in messages])

    passes: list[dict[str, Any]] = []
    try:
        for _ in range(repeat):
            consumer.assign(
                [RdTopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
            )
            events = records = 0
            while records == 0:  # warm-up, untimed, as in run_bare
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no record within {timeout_s:.0f} s")
                records, events = consume(1, 0.2)
            first_events, first_records = events, records
            started = time.perf_counter()
            while events < expected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {events}/{expected} events within {timeout_s:.0f} s")
                got_records, got_events = consume(BARE_MAX_RECORDS, CONFLUENT_POLL_SECONDS)
                records += got_records
                events += got_events
            passes.append(
                {
                    "events": events,
                    "records": records,
                    "measured_events": events - first_events,
                    "measured_records": records - first_records,
                    "seconds": time.perf_counter() - started,
                }
            )
            consumer.unassign()
    finally:
        consumer.close()
    return {**best_pass(passes), "passes": passes, "peak_rss_kb": read_vm_hwm_kb()}


# --------------------------------------------------------------------------- plain faust agent
def run_faust(settings: Settings, topic_name: str, partitions: int, port: int) -> None:
    """Run the plain faust agent until SIGTERM/SIGINT."""
    import faust  # slow import: the bare mode and `expmon bench` skip it

    counter = serve_event_count(port, topic_name)

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
            counter.events += out.received

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
    parser.add_argument("--mode", choices=["faust", "bare", "confluent"], default="faust")
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
    if args.mode in ("bare", "confluent"):
        if args.events <= 0:
            log.error("--events must be positive in %s mode", args.mode)
            return 2
        ceiling_args = (
            settings,
            args.topic,
            args.partitions,
            args.events,
            args.timeout,
            max(1, args.repeat),
        )
        try:
            with throughput_gc():  # as in the worker and the replay: like with like
                if args.mode == "bare":
                    result = asyncio.run(run_bare(*ceiling_args))
                else:
                    result = run_confluent(*ceiling_args)
        except TimeoutError as exc:
            log.error("%s consumer: %s", args.mode, exc)
            return 1
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return 0
    with throughput_gc():
        run_faust(settings, args.topic, args.partitions, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
