"""Per-partition entity state (checkouts, sessions, orders) with event-time timers.

Each entity is a small JSON-able dict keyed by its id (checkout_id, session_id,
order_id); the key of the input topic, so an entity lives in exactly one partition. An
entity may carry one deadline under `DUE`; it fires once the partition's watermark
reaches it: abandonment, the 48 h ship deadline, tracking staleness, session end.

Timers are attributed to their deadline's event time, never to when they fire, so the
effect is the same whether the watermark got there by events, in a provisional fork of an
idle partition (`fork`), or at the end of a replay. An entity that receives an event
after its deadline has passed fires its timer first (see `WindowedStage.entity`), so
batch boundaries cannot reorder a timer and an event.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from expmon.engine.windows import Checkpoint

Entity = dict[str, Any]
DUE = "due"


# Deadlines stay exact; buckets only group them. 10 s keeps a session in the same bucket
# across most of its page views, so moving its deadline is usually free.
TIMER_BUCKET_MS = 10_000
ENTITIES_PER_RECORD = 2000  # a few hundred kB per changelog record at most
SNAPSHOT_EVERY = 64  # deltas between full snapshots: bounds recovery reading and memory


class EntityTable:
    """Entities of one partition and their deadlines.

    Deadlines sit in time buckets with one entry per entity, filed lazily: a session's
    deadline moves on every page view, and a heap would keep one stale entry per event
    while eager re-filing would cost a set move per event.
    """

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.items: dict[str, Entity] = {}
        self._buckets: dict[int, set[str]] = {}
        self._bucket_heap: list[int] = []
        self._scheduled: dict[str, int] = {}  # entity id -> bucket it sits in
        # id -> the entity as changed (None: deleted); a checkpoint writes these as they
        # are, without looking each one up again
        self._dirty: dict[str, Entity | None] = {}
        self._seq = 0
        self._deltas_since_snapshot = 0
        self._live_keys: list[str] = []
        self._pending_deletes: list[str] = []
        self._orphans: list[str] = []  # a cut-short checkpoint's records (see Checkpoint)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, entity_id: str) -> Entity | None:
        return self.items.get(entity_id)

    def _own(self, entity_id: str) -> Entity | None:
        """The entity, ready to be changed in place (a fork copies it first)."""
        return self.items.get(entity_id)

    def fork(self) -> EntityTable:
        """A throw-away copy for a provisional look-ahead; this table is left as it was.

        Entities are copied when first read or fired, not up front: a look-ahead fires a
        few timers of a table that may hold many entities.
        """
        twin = _ForkedTable(self.partition)
        twin.items = dict(self.items)
        twin._buckets = {bucket: set(members) for bucket, members in self._buckets.items()}
        twin._bucket_heap = list(self._bucket_heap)
        twin._scheduled = dict(self._scheduled)
        return twin

    def put(self, entity_id: str, entity: Entity) -> None:
        """Store (or mark changed) an entity; (re)schedules its timer from its `due`."""
        self.items[entity_id] = entity
        self._dirty[entity_id] = entity
        due = entity.get(DUE)
        if due is not None:
            current = self._scheduled.get(entity_id)
            # Lazy: a deadline that moved later stays in its earlier bucket and is re-filed
            # when that bucket comes up; only a first or an earlier deadline moves it.
            if current is None or due // TIMER_BUCKET_MS < current:
                self._move(entity_id, current, due // TIMER_BUCKET_MS)

    def touch(self, entity_id: str, entity: Entity) -> None:
        """A stored entity (`entity`, as `get` gave it) changed in place with its deadline
        unchanged or later.

        The cheap form of `put` for the common case (a session's next page view): a
        later deadline needs no re-filing (see `put`).
        """
        self._dirty[entity_id] = entity

    def delete(self, entity_id: str) -> None:
        # Its bucket entry is dropped when the bucket comes up.
        if self.items.pop(entity_id, None) is not None:
            self._dirty[entity_id] = None

    def _move(self, entity_id: str, current: int | None, bucket: int) -> None:
        if current is not None:
            members = self._buckets.get(current)
            if members is not None:
                members.discard(entity_id)
        members = self._buckets.get(bucket)
        if members is None:
            members = self._buckets[bucket] = set()
            heapq.heappush(self._bucket_heap, bucket)
        members.add(entity_id)
        self._scheduled[entity_id] = bucket

    def due(self, watermark: int) -> Iterator[tuple[int, str, Entity]]:
        """Entities whose deadline the watermark reached, by (deadline, id); each fires once.

        The caller must `put` a new deadline or `delete` the entity.
        """
        last_bucket = watermark // TIMER_BUCKET_MS
        heap = self._bucket_heap
        ready: list[tuple[int, str]] = []
        refile: list[tuple[str, int]] = []
        while heap and heap[0] <= last_bucket:
            bucket = heapq.heappop(heap)
            for entity_id in self._buckets.pop(bucket, ()):
                del self._scheduled[entity_id]
                entity = self.items.get(entity_id)
                due = None if entity is None else entity.get(DUE)
                if due is None:
                    continue  # deleted, or its timer was cancelled
                if due <= watermark:
                    ready.append((due, entity_id))
                else:
                    refile.append((entity_id, due // TIMER_BUCKET_MS))
        # After the loop, so a bucket re-filed into is not popped again in this call.
        for entity_id, bucket in refile:
            self._move(entity_id, None, bucket)
        for due, entity_id in sorted(ready):
            entity = self._own(entity_id)
            # an earlier timer of this batch may have changed or removed this entity
            if entity is not None and entity.get(DUE) == due:
                entity[DUE] = None
                self._dirty[entity_id] = entity
                yield due, entity_id, entity

    # ------------------------------------------------------------------ checkpoint
    # Log-structured: each checkpoint writes the changed entities as one delta record
    # (chunked), `ent/<p>/d/<seq>`; every SNAPSHOT_EVERY deltas a full snapshot
    # `ent/<p>/s/<seq>/<chunk>` plus a marker `ent/<p>/s/<seq>/done` replaces them.
    # Recovery: newest complete snapshot, then the deltas after it, in order.

    def _delta_key(self, seq: int) -> str:
        return f"ent/{self.partition}/d/{seq:012d}"

    def _snapshot_key(self, seq: int, chunk: str) -> str:
        return f"ent/{self.partition}/s/{seq:012d}/{chunk}"

    def checkpoint(self, into: Checkpoint) -> None:
        if not self._dirty:
            return
        changed = sorted(self._dirty.items())  # by id: ids are unique, entities never compared
        self._dirty = {}
        for i in range(0, len(changed), ENTITIES_PER_RECORD):
            self._seq += 1
            key = self._delta_key(self._seq)
            into.writes[key] = dict(changed[i : i + ENTITIES_PER_RECORD])
            self._live_keys.append(key)
        self._deltas_since_snapshot += 1
        if self._deltas_since_snapshot >= SNAPSHOT_EVERY:
            self._snapshot(into)

    def discard_changes(self) -> None:
        """Forget change tracking (state that is never checkpointed must not grow with it)."""
        self._dirty = {}
        self._pending_deletes = []
        self._orphans = []

    def _snapshot(self, into: Checkpoint) -> None:
        self._seq += 1
        ids = sorted(self.items)
        chunks = 0
        for i in range(0, len(ids), ENTITIES_PER_RECORD):
            key = self._snapshot_key(self._seq, f"{chunks:06d}")
            into.writes[key] = {eid: self.items[eid] for eid in ids[i : i + ENTITIES_PER_RECORD]}
            chunks += 1
        done = self._snapshot_key(self._seq, "done")
        into.writes[done] = {"chunks": chunks}
        # Older records go only after the new snapshot is complete in the log.
        into.deletes.extend(self._live_keys)
        self._live_keys = [self._snapshot_key(self._seq, f"{c:06d}") for c in range(chunks)]
        self._live_keys.append(done)
        self._deltas_since_snapshot = 0

    def restore(self, items: Iterable[tuple[str, Any]], max_seq: int | None = None) -> None:
        """Rebuild from stored records; those past `max_seq` (the sequence the partition's
        meta vouches for) come from a checkpoint a crash cut short and are dropped."""
        prefix = f"ent/{self.partition}/"
        deltas: dict[int, dict[str, Any]] = {}
        snapshots: dict[int, dict[str, Any]] = {}
        orphans: list[str] = []
        newest = 0
        for key, value in items:
            if not key.startswith(prefix):
                continue
            kind, seq_text, *rest = key[len(prefix) :].split("/")
            seq = int(seq_text)
            newest = max(newest, seq)
            if max_seq is not None and seq > max_seq:
                orphans.append(key)
            elif kind == "d":
                deltas[seq] = value
            elif kind == "s":
                snapshots.setdefault(seq, {})[rest[0]] = value
        base = max(
            (seq for seq, parts in snapshots.items()
             if "done" in parts and len(parts) - 1 == parts["done"]["chunks"]),
            default=0,
        )  # fmt: skip
        stale = [
            self._snapshot_key(seq, name)
            for seq, parts in snapshots.items()
            if seq != base
            for name in parts
        ]
        stale += [self._delta_key(seq) for seq in deltas if seq < base]
        if base:
            for name, chunk in sorted(snapshots[base].items()):
                if name != "done":
                    self.items.update(chunk)
            self._live_keys = [self._snapshot_key(base, name) for name in snapshots[base]]
        for seq in sorted(s for s in deltas if s > base):
            for entity_id, entity in deltas[seq].items():
                if entity is None:
                    self.items.pop(entity_id, None)
                else:
                    self.items[entity_id] = entity
            self._live_keys.append(self._delta_key(seq))
            self._deltas_since_snapshot += 1
        # New records must not reuse a number a cut-short checkpoint left on the log.
        self._seq = max([newest, base, *deltas], default=0)
        self._pending_deletes = stale
        self._orphans = orphans
        for entity_id, entity in self.items.items():
            if entity.get(DUE) is not None:
                self._move(entity_id, None, entity[DUE] // TIMER_BUCKET_MS)

    @property
    def seq(self) -> int:
        return self._seq

    def take_pending_deletes(self) -> list[str]:
        """Records a restore found superseded (older snapshots, deltas before the base)."""
        deletes, self._pending_deletes = self._pending_deletes, []
        return deletes

    def take_orphans(self) -> list[str]:
        """Records past the meta's sequence a restore found: `Checkpoint.purges`, which go
        before the next meta, as that meta's sequence will be higher than theirs."""
        orphans, self._orphans = self._orphans, []
        return orphans


# A timer only has to fire before the window of its exact time closes (window ends are
# whole seconds), and its effect is booked at the exact time anyway: stages that apply
# events in event-time order fire on whole seconds.
FIRE_GRAIN_MS = 1000


def fire_after(exact_ms: int) -> int:
    """The timer for something at `exact_ms`: the first whole second after it, when it is
    final once the watermark passes it."""
    after = exact_ms + 1
    return -(-after // FIRE_GRAIN_MS) * FIRE_GRAIN_MS


def is_entity_key(key: str) -> bool:
    return key.startswith("ent/")


class _ForkedTable(EntityTable):
    """An `EntityTable.fork`: copy-on-touch, never checkpointed."""

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self._copied: set[str] = set()

    def _own(self, entity_id: str) -> Entity | None:
        entity = self.items.get(entity_id)
        if entity is not None and entity_id not in self._copied:
            entity = self.items[entity_id] = copy.deepcopy(entity)
            self._copied.add(entity_id)
        return entity

    def get(self, entity_id: str) -> Entity | None:
        return self._own(entity_id)

    def put(self, entity_id: str, entity: Entity) -> None:
        self._copied.add(entity_id)
        super().put(entity_id, entity)
