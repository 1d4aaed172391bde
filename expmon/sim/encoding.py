"""Generated items -> Kafka records: single events or JSON arrays per family and
partition, duplicates re-sent, bad records alone."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from expmon.kafka.partition import partition_for
from expmon.sim.bad_records import BadRecord
from expmon.sim.journeys import GeneratedItem
from schemas import codec
from schemas.events import Event, EventFamily
from schemas.eventtime import parse_event_time_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record to send. `events` holds the good, first-time events it carries."""

    family: EventFamily
    key: str
    value: bytes
    time_ms: int  # stream time when it was closed: the largest occurred_at seen so far
    events: tuple[Event, ...] = ()
    duplicates: int = 0
    bad: BadRecord | None = None

    @property
    def event_count(self) -> int:
        return len(self.events) + self.duplicates + (1 if self.bad is not None else 0)


_Group = tuple[EventFamily, int]  # family and partition a batch is for


def encode_records(
    items: Iterable[GeneratedItem],
    batch_size: int = 1,
    *,
    duplicate_ratio: float = 0.0,
    seed: int = 0,
    max_batch_delay_ms: int = 1000,
    partitions: Mapping[EventFamily, int] | None = None,
) -> Iterator[Record]:
    """Group generated items into records.

    With `partitions` (the partition count of each family's topic), a batch only holds
    events whose keys hash (Kafka's murmur2) to the same partition, so every checkout,
    session and order stays in one partition whatever the batching, as a collector that
    batches per user would do.

    batch_size 1: one JSON object per record, keyed by the item's key. batch_size N > 1: a
    JSON array of up to N events of one family, keyed by its first event's key; a batch is
    also closed when an item arrives `max_batch_delay_ms` after the batch's first one.
    Bad records are sent alone, as their raw bytes. With `duplicate_ratio` p, each good
    event is re-sent with probability p (same event_id) as a single-event record with its
    own key, right after the next record of its family.
    Stream time (for the delay and `Record.time_ms`) is the largest occurred_at seen so far.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not 0 <= duplicate_ratio <= 1:
        raise ValueError("duplicate_ratio must be in [0, 1]")
    rng = random.Random(f"{seed}:duplicates")
    buffers: dict[_Group, list[tuple[str, Event]]] = {}
    first_time: dict[_Group, int] = {}
    pending_dups: dict[EventFamily, list[tuple[str, Event]]] = {}
    last_t = 0

    def group_of(family: EventFamily, key: str) -> _Group:
        if partitions is None or batch_size == 1:
            return (family, 0)
        return (family, partition_for(key, partitions[family]))

    def flush(group: _Group, t: int) -> Iterator[Record]:
        family = group[0]
        buf = buffers.pop(group, None)
        first_time.pop(group, None)
        if buf:
            events = tuple(ev for _k, ev in buf)
            value = codec.dumps(events[0]) if batch_size == 1 else codec.dumps(list(events))
            yield Record(family, buf[0][0], value, t, events)
        if not any(g[0] == family for g in buffers):
            for key, ev in pending_dups.pop(family, []):
                yield Record(family, key, codec.dumps(ev), t, (), duplicates=1)

    for family, key, payload in items:
        if not isinstance(payload, BadRecord):
            last_t = max(last_t, parse_event_time_ms(payload["occurred_at"]))
        t = last_t
        for grp, started in list(first_time.items()):
            if t - started >= max_batch_delay_ms:
                yield from flush(grp, t)
        if isinstance(payload, BadRecord):
            yield Record(family, key, payload.value, t, (), bad=payload)
            continue
        group = group_of(family, key)
        buffers.setdefault(group, []).append((key, payload))
        first_time.setdefault(group, t)
        if duplicate_ratio and rng.random() < duplicate_ratio:
            pending_dups.setdefault(family, []).append((key, payload))
        if len(buffers[group]) >= batch_size:
            yield from flush(group, t)
    for group in list(buffers):
        yield from flush(group, last_t)
    for family in list(pending_dups):
        for key, ev in pending_dups.pop(family):
            yield Record(family, key, codec.dumps(ev), last_t, (), duplicates=1)
