"""Ranges of topics on Kafka: parse `--from/--to`, resolve them to offsets, read them.

Offsets are looked up with kafka-python (`offsets_for_times`, beginning/end offsets);
the records are read with aiokafka (manual assignment, no consumer group, nothing
committed), which decodes several times faster. A time range selects records by their
Kafka timestamp: the moment the broker (or the producer) stamped them, close to the
event time for live traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from expmon.errors import ExpmonError
from expmon.kafka.connection import aiokafka_kwargs, kafka_python_kwargs
from expmon.replay.session import ReplayRecord
from expmon.settings import Settings, parse_duration_seconds
from schemas.eventtime import format_ms, parse_event_time_ms

TopicPartition = tuple[str, int]


class RangeError(ExpmonError):
    """A `--from/--to` range is malformed, inverted, empty or names an unknown topic."""


@dataclass(frozen=True)
class Point:
    """One end of a range: `earliest`, `latest`, a time, or per-partition offsets.

    `offsets` maps partition -> offset; partition -1 stands for every partition.
    """

    kind: str  # "earliest" | "latest" | "time" | "offsets"
    time_ms: int | None = None
    offsets: Mapping[int, int] | None = None

    def describe(self) -> str:
        if self.kind == "time" and self.time_ms is not None:
            return format_ms(self.time_ms)
        if self.kind == "offsets" and self.offsets is not None:
            return ",".join(
                f"@{o}" if p < 0 else f"{p}:{o}" for p, o in sorted(self.offsets.items())
            )
        return self.kind


POINT_HELP = (
    "RFC 3339 time (2026-11-23T10:00:00Z), relative to now (-2h, -30m, -90s, -1d), "
    "'earliest', 'latest'/'now', an offset for every partition (@1500) or per partition "
    "(0:1500,1:1480)"
)


def parse_point(text: str, now_ms: int | None = None) -> Point:
    text = text.strip()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if text in ("earliest", "beginning"):
        return Point("earliest")
    if text in ("latest", "now", "end"):
        return Point("latest")
    try:
        if text.startswith("-"):
            return Point("time", time_ms=now - parse_duration_seconds(text[1:]) * 1000)
        if text.startswith("@"):
            return Point("offsets", offsets={-1: _offset(text[1:])})
        if ":" in text and "T" not in text and "-" not in text:
            offsets = {}
            for part in text.split(","):
                partition, offset = part.split(":")
                offsets[int(partition)] = _offset(offset)
            return Point("offsets", offsets=offsets)
        return Point("time", time_ms=parse_event_time_ms(text))
    except ValueError as exc:
        raise RangeError(f"cannot read {text!r} as a range point: {POINT_HELP}") from exc


def _offset(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("negative offset")
    return value


@dataclass(frozen=True)
class ResolvedRange:
    """Offsets [start, end) per topic partition, and each topic's partition count."""

    offsets: dict[TopicPartition, tuple[int, int]]
    partitions: dict[str, int]

    @property
    def total(self) -> int:
        return sum(max(0, end - start) for start, end in self.offsets.values())


def check_order(start: Point, end: Point) -> None:
    if (
        start.kind == "time"
        and end.kind == "time"
        and start.time_ms is not None
        and end.time_ms is not None
        and start.time_ms > end.time_ms
    ):
        raise RangeError(
            f"--from {start.describe()} is after --to {end.describe()}: nothing to read"
        )
    if start.kind == "latest":
        raise RangeError("--from latest leaves nothing to read: give a time or an offset")


def resolve_range(
    settings: Settings, topics: Iterable[str], start: Point, end: Point
) -> ResolvedRange:
    """Offsets of the range on the broker; a clear RangeError for what cannot be read."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition as KafkaTP

    check_order(start, end)
    consumer = KafkaConsumer(**kafka_python_kwargs(settings), enable_auto_commit=False)
    try:
        known = consumer.topics()
        partitions: dict[str, int] = {}
        tps = []
        for topic in topics:
            if topic not in known:
                raise RangeError(f"unknown topic {topic!r} on {settings.kafka_bootstrap}")
            ids = sorted(consumer.partitions_for_topic(topic) or ())
            partitions[topic] = len(ids)
            tps += [KafkaTP(topic, p) for p in ids]
        first = consumer.beginning_offsets(tps)
        last = consumer.end_offsets(tps)
        lo = _resolve(consumer, start, tps, first, last)
        hi = _resolve(consumer, end, tps, first, last)
    finally:
        consumer.close()
    offsets = {(tp.topic, tp.partition): (lo[tp], max(lo[tp], hi[tp])) for tp in tps}
    resolved = ResolvedRange(offsets, partitions)
    if start.kind == "offsets" and end.kind == "offsets":
        for tp in tps:
            if lo[tp] > hi[tp]:
                raise RangeError(
                    f"{tp.topic}[{tp.partition}]: --from offset {lo[tp]} is after --to {hi[tp]}"
                )
    if resolved.total == 0:
        raise RangeError(
            f"the range {start.describe()} .. {end.describe()} holds no records in "
            f"{', '.join(partitions)}"
        )
    return resolved


def _resolve(
    consumer: Any, point: Point, tps: list[Any], first: Mapping[Any, int], last: Mapping[Any, int]
) -> dict[Any, int]:
    """A point as an offset per partition, clamped to what the log holds."""
    if point.kind == "earliest":
        return {tp: first[tp] for tp in tps}
    if point.kind == "latest":
        return {tp: last[tp] for tp in tps}
    if point.kind == "offsets" and point.offsets is not None:
        every = point.offsets.get(-1)
        resolved = {}
        for tp in tps:
            wanted = point.offsets.get(tp.partition, every)
            offset = last[tp] if wanted is None else wanted
            resolved[tp] = min(max(offset, first[tp]), last[tp])
        return resolved
    assert point.time_ms is not None
    found = consumer.offsets_for_times({tp: point.time_ms for tp in tps})
    # No record at or after that time: the point lies past the end of the partition.
    return {tp: last[tp] if found.get(tp) is None else found[tp].offset for tp in tps}


async def read_range(
    settings: Settings, resolved: ResolvedRange, max_records: int = 500
) -> AsyncIterator[list[ReplayRecord]]:
    """Batches of records of the range, in offset order per partition.

    500 records a batch: a few MB when each holds a hundred events, so memory stays flat.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AioTP

    wanted = {tp: span for tp, span in resolved.offsets.items() if span[1] > span[0]}
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign([AioTP(t, p) for t, p in wanted])
        for (topic, partition), (start, _end) in wanted.items():
            consumer.seek(AioTP(topic, partition), start)
        remaining = dict(wanted)
        while remaining:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            batch: list[ReplayRecord] = []
            for tp, messages in fetched.items():
                span = remaining.get((tp.topic, tp.partition))
                if span is None:
                    continue
                end = span[1]
                for m in messages:
                    if m.offset >= end:
                        break
                    batch.append(
                        ReplayRecord(
                            tp.topic, tp.partition, m.offset, m.timestamp, m.key, m.value,
                            tuple((k, bytes(v)) for k, v in m.headers or ()),
                        )
                    )  # fmt: skip
            if batch:
                yield batch
            # By position, not by the last offset seen: a log may have gaps (compaction,
            # transaction markers) right before the end.
            for (topic, partition), (_start, end) in list(remaining.items()):
                tp = AioTP(topic, partition)
                if await consumer.position(tp) >= end:
                    del remaining[(topic, partition)]
                    consumer.pause(tp)
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
