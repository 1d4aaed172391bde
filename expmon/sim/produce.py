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
from aiokafka.errors import KafkaError

from expmon.errors import ProduceError
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
        # every replica in sync holds what we count as sent; idempotence: the producer's
        # own retries never write a record twice
        acks="all",
        enable_idempotence=True,
        # a delivery not confirmed within this comes back failed and is re-sent by
        # `produce` until EXPMON_SIM_DELIVERY_TIMEOUT_SECONDS
        request_timeout_ms=int(min(30.0, settings.sim_delivery_timeout_seconds) * 1000),
    )


RETRY_BACKOFF_S = 1.0


@dataclass(slots=True)
class Pending:
    """A record handed to the producer, not yet acknowledged."""

    record: Record
    topic: str
    first_try: float  # loop time of its first send: the delivery timeout counts from it
    future: asyncio.Future[Any]

    def key(self) -> tuple[Record, str, float]:
        return self.record, self.topic, self.first_try


async def settle_done(pending: list[Pending], acknowledged: Callable[[Record, str], None]) -> None:
    """After an interruption: count the deliveries that did complete, and only those."""
    for item in pending:
        if item.future.done() and not item.future.cancelled() and item.future.exception() is None:
            acknowledged(item.record, item.topic)


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
    `on_record` sees every record once the broker acknowledged it (never one that did not
    reach Kafka). A broker outage is ridden out: failed deliveries are re-sent until
    `settings.sim_delivery_timeout_seconds` after each record's first try, then
    ProduceError. On cancellation the producer is flushed and stopped, and CancelledError
    propagates.
    """
    start_ms = now_ms() if realtime else generator.start_ms
    max_request = max(1_048_576, generator.oversize_bytes + 64 * 1024)
    factory = producer_factory or _default_producer
    producer = factory(settings, max_request)
    stats = ProduceStats()
    loop = asyncio.get_running_loop()
    wall_start = loop.time()
    last_log = wall_start
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
    deadline_s = settings.sim_delivery_timeout_seconds
    acked = 0

    def acknowledged(record: Record, topic: str) -> None:
        stats.records[topic] = stats.records.get(topic, 0) + 1
        stats.events[topic] = stats.events.get(topic, 0) + record.event_count
        if record.bad is not None:
            stats.bad_records[topic] = stats.bad_records.get(topic, 0) + 1
        if record.duplicates:
            stats.duplicates[topic] = stats.duplicates.get(topic, 0) + record.duplicates
        if on_record is not None:
            on_record(record)

    async def send(record: Record, topic: str, first_try: float) -> asyncio.Future[Any]:
        """Hand the record to the producer, retrying while the broker is away."""
        while True:
            try:
                fut: asyncio.Future[Any] = await producer.send(
                    topic, value=record.value, key=record.key.encode()
                )
                return fut
            except KafkaError as exc:
                await _retry_or_fail(exc, first_try)

    def check_deadline(exc: BaseException, first_try: float) -> None:
        waited = loop.time() - first_try
        if waited >= deadline_s:
            raise ProduceError(
                f"the broker did not acknowledge a record for {waited:.0f} s "
                f"(EXPMON_SIM_DELIVERY_TIMEOUT_SECONDS={deadline_s:g}): {exc!r}; "
                f"{acked} records were acknowledged (ground truth holds those)"
            ) from None

    async def _retry_or_fail(exc: BaseException, first_try: float) -> None:
        check_deadline(exc, first_try)
        await asyncio.sleep(RETRY_BACKOFF_S)

    async def settle(batch: list[Pending]) -> None:
        """Wait for every delivery of `batch` (in place: what is left in it is what was
        not acknowledged); re-send the failed ones until acknowledged or the delivery
        timeout (counted from each record's first try) has passed."""
        nonlocal acked
        while batch:
            outcomes = await asyncio.gather(*(p.future for p in batch), return_exceptions=True)
            failed: list[Pending] = []
            fatal: BaseException | None = None
            for item, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failed.append(item)
                    if not isinstance(outcome, KafkaError):
                        fatal = outcome
                else:
                    acked += 1
                    acknowledged(item.record, item.topic)
            batch[:] = failed
            if fatal is not None:
                raise fatal
            if not failed:
                return
            logger.warning(
                "broker did not acknowledge %d records (%r); re-sending for up to %g s",
                len(failed),
                next(o for o in outcomes if isinstance(o, BaseException)),
                deadline_s,
            )
            for item in failed:
                check_deadline(KafkaError("not acknowledged"), item.first_try)
            await asyncio.sleep(RETRY_BACKOFF_S)
            resent = [
                Pending(item.record, item.topic, item.first_try, await send(*item.key()))
                for item in failed
            ]
            batch[:] = resent

    pending: list[Pending] = []
    try:
        for record in records:
            if realtime:
                delay = (record.time_ms - start_ms) / 1000.0 - (loop.time() - wall_start)
                if delay > 0.002:
                    await asyncio.sleep(delay)
            topic = topics[record.family]
            now = loop.time()
            pending.append(Pending(record, topic, now, await send(record, topic, now)))
            if len(pending) >= 5000:
                await settle(pending)
            now = loop.time()
            if now - last_log >= progress_every_s:
                last_log = now
                elapsed = now - wall_start
                logger.info(
                    "handed %d records to the producer; %d events in %d records acknowledged"
                    " (%.0f events/s)",
                    acked + len(pending),
                    stats.total_events,
                    stats.total_records,
                    stats.total_events / elapsed if elapsed > 0 else 0.0,
                )
            elif not realtime and len(pending) % 1000 == 0:
                await asyncio.sleep(0)  # let the producer's sender task run
        await settle(pending)
    except asyncio.CancelledError:
        stats.cancelled = True
        logger.info("simulation cancelled; flushing what was produced")
        raise
    finally:
        try:
            await asyncio.wait_for(producer.flush(), timeout=min(10.0, deadline_s))
            await settle_done(pending, acknowledged)
        except (TimeoutError, KafkaError, ProduceError):
            logger.warning("%d records not acknowledged at the end: not counted", len(pending))
        finally:
            await producer.stop()
        stats.elapsed_s = loop.time() - wall_start
        logger.info(
            "acknowledged %d events in %d records in %.1f s: %s",
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
