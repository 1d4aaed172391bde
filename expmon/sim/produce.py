"""Sending simulated traffic to Kafka (aiokafka), paced or as fast as possible, and
`run_simulate`, the `expmon simulate` entry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from expmon.families.registry import BY_NAME
from expmon.kafka.connection import aiokafka_kwargs
from expmon.settings import Settings
from expmon.sim.encoding import Record, encode_records
from expmon.sim.incidents import Incident, parse_incidents
from expmon.sim.journeys import TrafficGenerator
from expmon.sim.truth import base as truth_file
from expmon.sim.truth.page_load import settings_rows
from schemas.events import Event, EventFamily

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ProduceStats:
    """What `produce` sent, per topic."""

    records: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)  # good + duplicates + bad records
    bad_records: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    cancelled: bool = False

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": dict(self.records),
            "events": dict(self.events),
            "bad_records": dict(self.bad_records),
            "duplicates": dict(self.duplicates),
            "elapsed_s": round(self.elapsed_s, 3),
            "cancelled": self.cancelled,
        }


def topic_for(settings: Settings, family: EventFamily) -> str:
    return BY_NAME[str(family)].topic(settings)


def simulated_topics(
    settings: Settings, families: Iterable[EventFamily | str] | None = None
) -> list[str]:
    """The input topics the simulator writes for these families (default: every family)."""
    names = [str(f) for f in families] if families is not None else list(BY_NAME)
    return [BY_NAME[name].topic(settings) for name in names if name in BY_NAME]


def _default_producer(settings: Settings, max_request_size: int) -> Any:
    return AIOKafkaProducer(
        **aiokafka_kwargs(settings),
        client_id="expmon-simulator",
        linger_ms=10,
        max_batch_size=256 * 1024,
        max_request_size=max_request_size,
        acks=1,
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def produce(
    settings: Settings,
    generator: TrafficGenerator,
    batch_size: int = 1,
    realtime: bool = False,
    *,
    duplicate_ratio: float = 0.0,
    max_batch_delay_ms: int = 1000,
    on_record: Callable[[Record], None] | None = None,
    producer_factory: Callable[[Settings, int], Any] | None = None,
    progress_every_s: float = 5.0,
) -> ProduceStats:
    """Send the generator's traffic to the three input topics.

    realtime=True: event times start at the wall clock now and records are paced so that
    stream time follows the wall clock (the target rate). realtime=False: synthetic event
    times from `generator.start_ms`, sent as fast as the producer takes them.
    `on_record` sees every record after it was handed to the producer. On cancellation the
    producer is flushed and stopped, and CancelledError propagates.
    """
    start_ms = now_ms() if realtime else generator.start_ms
    max_request = max(1_048_576, generator.oversize_bytes + 64 * 1024)
    factory = producer_factory or _default_producer
    producer = factory(settings, max_request)
    stats = ProduceStats()
    loop = asyncio.get_running_loop()
    wall_start = loop.time()
    last_log = wall_start
    pending: list[asyncio.Future[Any]] = []
    topics = {f: topic_for(settings, f) for f in EventFamily}
    await producer.start()
    partitions = None
    if batch_size > 1:
        partitions = {f: len(await producer.partitions_for(topics[f])) for f in EventFamily}
    records = encode_records(
        generator.generate(start_ms),
        batch_size,
        duplicate_ratio=duplicate_ratio,
        seed=generator.seed,
        max_batch_delay_ms=max_batch_delay_ms,
        partitions=partitions,
    )
    logger.info(
        "simulating %.0f events/s for %.0f s (%s mode, batch %d, incidents: %s) -> %s",
        generator.rate,
        generator.duration_s,
        "realtime" if realtime else "as-fast-as-possible",
        batch_size,
        ", ".join(str(i) for i in generator.incidents) or "none",
        ", ".join(topics[f] for f in generator.families),
    )
    try:
        for record in records:
            if realtime:
                delay = (record.time_ms - start_ms) / 1000.0 - (loop.time() - wall_start)
                if delay > 0.002:
                    await asyncio.sleep(delay)
            topic = topics[record.family]
            fut = await producer.send(topic, value=record.value, key=record.key.encode())
            pending.append(fut)
            stats.records[topic] = stats.records.get(topic, 0) + 1
            stats.events[topic] = stats.events.get(topic, 0) + record.event_count
            if record.bad is not None:
                stats.bad_records[topic] = stats.bad_records.get(topic, 0) + 1
            if record.duplicates:
                stats.duplicates[topic] = stats.duplicates.get(topic, 0) + record.duplicates
            if on_record is not None:
                on_record(record)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            now = loop.time()
            if now - last_log >= progress_every_s:
                last_log = now
                elapsed = now - wall_start
                logger.info(
                    "produced %d events in %d records (%.0f events/s)",
                    stats.total_events,
                    stats.total_records,
                    stats.total_events / elapsed if elapsed > 0 else 0.0,
                )
            elif not realtime and stats.total_records % 1000 == 0:
                await asyncio.sleep(0)  # let the producer's sender task run
        if pending:
            await asyncio.gather(*pending)
            pending.clear()
    except asyncio.CancelledError:
        stats.cancelled = True
        logger.info("simulation cancelled; flushing what was produced")
        raise
    finally:
        try:
            await producer.flush()
        finally:
            await producer.stop()
        stats.elapsed_s = loop.time() - wall_start
        logger.info(
            "produced %d events in %d records in %.1f s: %s",
            stats.total_events,
            stats.total_records,
            stats.elapsed_s,
            stats.events,
        )
    return stats


async def run_simulate(
    settings: Settings,
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    batch_size: int = 1,
    incidents: Sequence[Incident | str] | str = (),
    realtime: bool = True,
    ground_truth_path: Path | str | None = None,
    families: Iterable[EventFamily | str] | None = None,
    start_ms: int | None = None,
    duplicate_ratio: float = 0.0,
    jitter_ms: int = 2000,
    lifecycle_compression: float = 1.0,
    mix: Mapping[EventFamily | str, float] | None = None,
    producer_factory: Callable[[Settings, int], Any] | None = None,
) -> ProduceStats:
    """The `expmon simulate` entry: build the generator, produce, optionally write truth.

    Without `start_ms`, non-realtime runs end at the current minute (start = now rounded
    down to the minute - duration), so the events are recent but never in the future.
    Ground truth (page loads; bad records excluded, duplicates counted once) is written
    even when cancelled, for what was produced.
    """
    parsed = parse_incidents(incidents)
    if start_ms is None:
        minute = now_ms() // 60_000 * 60_000
        start_ms = minute - round(duration_s * 1000)
    generator = TrafficGenerator(
        seed=seed,
        rate=rate,
        start_ms=start_ms,
        duration_s=duration_s,
        incidents=parsed,
        families=families,
        mix=mix,
        jitter_ms=jitter_ms,
        lifecycle_compression=lifecycle_compression,
        oversize_bytes=settings.max_record_bytes + 1024,
    )
    collected: list[Event] = []

    def keep(record: Record) -> None:
        if record.family is EventFamily.PAGE_LOAD:
            collected.extend(record.events)

    try:
        return await produce(
            settings,
            generator,
            batch_size,
            realtime,
            duplicate_ratio=duplicate_ratio,
            on_record=keep if ground_truth_path is not None else None,
            producer_factory=producer_factory,
        )
    finally:
        if ground_truth_path is not None:
            rows = settings_rows(collected, settings)
            truth_file.write_truth(ground_truth_path, rows)
            logger.info(
                "wrote ground truth: %d rows from %d page loads to %s",
                len(rows),
                len(collected),
                ground_truth_path,
            )
