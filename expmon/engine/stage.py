"""Stage 1 of every stream processor: records of one input topic -> windows per partition.

Decode and validate each record, drop repeats of an `event_id`, set late events aside,
add the rest to event-time windows, and report what to send: dead letters, closed
windows (as per-partition partials for the merge stage), watermark progress and the
state checkpoint. Pure logic; the faust agent in `streams/` does the I/O.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic

from expmon.engine.entities import Entity, EntityTable, is_entity_key
from expmon.engine.windows import (
    ACCEPTED,
    DUPLICATE,
    A,
    Checkpoint,
    ClosedWindow,
    Key,
    PartitionWindows,
    part_of,
    window_end,
)
from expmon.settings import Settings
from schemas import codec
from schemas.events import Event, EventFamily
from schemas.records import RecordDecoder, Rejected

OUTCOMES = ("accepted", "invalid", "late", "duplicate")
LATE_REASON = "late"


@dataclass(frozen=True, slots=True)
class RawRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record (or one event of a batch record) for the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    reason: str


@dataclass
class StageOutput:
    """Everything one batch (or tick) asks the caller to send, in this order."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    dead_letters: list[DeadLetter] = field(default_factory=list)
    partials: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    skipped_replayed: int = 0

    @property
    def received(self) -> int:
        return sum(self.counts.values())


def dead_letter_headers(
    topic: str, rec: RawRecord, reason: str, detail: str, index: int | None
) -> list[tuple[str, bytes]]:
    headers = [
        ("expmon-reason", reason.encode()),
        ("expmon-source-topic", topic.encode()),
        ("expmon-source-partition", str(rec.partition).encode()),
        ("expmon-source-offset", str(rec.offset).encode()),
    ]
    if detail:
        headers.append(("expmon-detail", detail.encode()[:1000]))
    if index is not None:
        headers.append(("expmon-batch-index", str(index).encode()))
    return headers


def record_decoder(settings: Settings, family: EventFamily) -> RecordDecoder:
    """A family's decoder with the settings' limits: what stage 1 validates with, and what
    `expmon collect` validates with at its edge (the same rules, one implementation)."""
    return RecordDecoder(
        family,
        max_record_bytes=settings.max_record_bytes,
        max_events_per_record=settings.max_events_per_record,
        max_future_ms=int(settings.max_future_seconds * 1000),
    )


class WindowedStage(ABC, Generic[A]):
    """Shared ingestion pipeline; a family supplies its key and accumulator update."""

    family: EventFamily

    def __init__(
        self, settings: Settings, topic: str, source_partitions: int, live: bool = True
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.source_partitions = source_partitions
        self.live = live
        # False for a replay: state lives in memory only, so no checkpoints are built.
        self.persist = True
        self.decoder = record_decoder(settings, self.family)
        self.partitions: dict[int, PartitionWindows[A]] = {}
        self.entities: dict[int, EntityTable] = {}
        self._last_record_wall: dict[int, float] = {}
        self._last_progress: dict[int, int | None] = {}

    # ---------------------------------------------------------------- family hooks
    @abstractmethod
    def new_accumulator(self) -> A: ...

    @abstractmethod
    def decode_accumulator(self, data: Any) -> A: ...

    @abstractmethod
    def add_event(self, windows: PartitionWindows[A], event: Event, event_ms: int) -> None:
        """Add one accepted event to its window (via `windows.accumulator`)."""

    def on_timer(
        self, windows: PartitionWindows[A], entity_id: str, entity: Entity, deadline: int
    ) -> None:
        """An entity's deadline was reached: count its effect at `deadline`, then put/delete it."""
        raise NotImplementedError(f"{type(self).__name__} schedules timers without handling them")

    # ---------------------------------------------------------------- entities
    def entity(self, windows: PartitionWindows[A], entity_id: str) -> Entity | None:
        """The entity as of now: a deadline the watermark already passed fires first."""
        table = self.entities[windows.partition]
        entity = table.get(entity_id)
        if entity is not None:
            due = entity.get("due")
            watermark = windows.watermark_ms
            if due is not None and watermark is not None and due <= watermark:
                entity["due"] = None
                self.on_timer(windows, entity_id, entity, due)
                entity = table.get(entity_id)
        return entity

    def _fire_due(self, windows: PartitionWindows[A]) -> None:
        if windows.watermark_ms is None:
            return
        table = self.entities[windows.partition]
        # A timer may schedule a next deadline that is already due (an order past both
        # its ship-by and its staleness): fire until nothing is due.
        while fired := list(table.due(windows.watermark_ms)):
            for deadline, entity_id, entity in fired:
                self.on_timer(windows, entity_id, entity, deadline)

    # ---------------------------------------------------------------- partitions
    def partition(self, partition: int) -> PartitionWindows[A]:
        windows = self.partitions.get(partition)
        if windows is None:
            windows = self.partitions[partition] = PartitionWindows(
                partition,
                self.settings.window_ms,
                self.settings.lateness_ms,
                self.new_accumulator,
                self.decode_accumulator,
            )
            self.entities[partition] = EntityTable(partition)
            self._last_record_wall[partition] = time.monotonic()
        return windows

    def assign(self, partition: int, stored: Iterable[tuple[str, Any]]) -> None:
        """Take over a partition, restoring its state from the table entries given."""
        self.partitions.pop(partition, None)
        self._last_progress.pop(partition, None)
        windows_items: list[tuple[str, Any]] = []
        entity_items: list[tuple[str, Any]] = []
        for key, value in stored:
            (entity_items if is_entity_key(key) else windows_items).append((key, value))
        entity_seq = self.partition(partition).restore(windows_items)
        self.entities[partition].restore(entity_items, max_seq=entity_seq)

    def revoke(self, partition: int) -> None:
        self.partitions.pop(partition, None)
        self.entities.pop(partition, None)
        self._last_record_wall.pop(partition, None)
        self._last_progress.pop(partition, None)

    # ---------------------------------------------------------------- processing
    def process(self, records: Iterable[RawRecord], now_ms: int | None = None) -> StageOutput:
        out = StageOutput()
        counts = out.counts
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        wall = time.monotonic()
        touched: set[int] = set()
        valid: list[Event] = []
        rejected: list[Rejected] = []
        add_event = self.add_event
        accepted = 0
        for rec in records:
            windows = self.partition(rec.partition)
            if rec.offset <= windows.offset:
                # Already applied before a restart: the checkpoint ran ahead of the commit.
                out.skipped_replayed += 1
                continue
            touched.add(rec.partition)
            self._last_record_wall[rec.partition] = wall
            admit = windows.admit
            valid.clear()
            rejected.clear()
            self.decoder.decode(rec.value, now_ms, valid, rejected)
            for rej in rejected:
                counts["invalid"] += 1
                out.dead_letters.append(
                    DeadLetter(
                        rec.key,
                        rej.payload,
                        dead_letter_headers(self.topic, rec, rej.reason, rej.detail, rej.index),
                        rej.reason,
                    )
                )
            for event in valid:
                event_ms: int = event["_t"]
                admitted = admit(event["event_id"], event_ms)
                if admitted == ACCEPTED:
                    add_event(windows, event, event_ms)
                    accepted += 1
                elif admitted == DUPLICATE:
                    counts["duplicate"] += 1
                else:
                    counts["late"] += 1
                    out.dead_letters.append(self._late_letter(rec, event, windows.watermark_ms))
            windows.applied(rec.offset)
        counts["accepted"] += accepted
        for partition in sorted(touched):
            self._close_and_checkpoint(partition, out)
        return out

    def _late_letter(self, rec: RawRecord, event: Event, watermark: int | None) -> DeadLetter:
        event.pop("_t", None)
        detail = f"event time before watermark {watermark}"
        return DeadLetter(
            rec.key,
            codec.dumps(event),
            dead_letter_headers(self.topic, rec, LATE_REASON, detail, None),
            LATE_REASON,
        )

    def tick(self, backlogged: frozenset[int] = frozenset()) -> StageOutput:
        """Live mode: let partitions silent past the idle timeout stop holding windows open.

        A partition is idle when it received nothing for the idle timeout and has no
        backlog (`backlogged`: records waiting on the broker), so a slow consumer or a
        restart never passes for a quiet topic.
        """
        out = StageOutput()
        if not self.live or not self.partitions:
            return out
        wall = time.monotonic()
        idle_after = self.settings.idle_partition_timeout_seconds

        def idle(partition: int) -> bool:
            quiet = wall - self._last_record_wall.get(partition, wall) >= idle_after
            return quiet and partition not in backlogged

        if all(w.watermark_ms is None for w in self.partitions.values()):
            return out  # no data yet: nothing to close, and no event time to anchor to
        active = [
            w.watermark_ms
            for p, w in self.partitions.items()
            if w.watermark_ms is not None and not idle(p)
        ]
        # Every partition quiet: only the wall clock can still move event time, so that
        # deadlines (ship-by, staleness, abandonment) fire even without traffic.
        wall_clock = int(time.time() * 1000) - self.settings.lateness_ms
        target = max(active) if active else wall_clock
        for partition, windows in sorted(self.partitions.items()):
            if idle(partition):
                windows.advance_watermark(target)
                self._close_and_checkpoint(partition, out)
        return out

    def finish(self, through_ms: int | None = None) -> StageOutput:
        """End of a bounded range (replay): close every window.

        With `through_ms`, every partition (an empty one too) moves to that one final
        watermark, so the timers that fire do not depend on how events were partitioned.
        """
        out = StageOutput()
        for partition in range(self.source_partitions):
            self.partition(partition)  # an empty partition must report progress as well
        for partition, windows in sorted(self.partitions.items()):
            if through_ms is not None:
                windows.advance_watermark(through_ms)
            elif windows.max_event_ms is not None:
                windows.advance_watermark(window_end(windows.max_event_ms, windows.window_ms))
            self._close_and_checkpoint(partition, out)
        return out

    def max_event_ms(self) -> int | None:
        """Largest event time seen in any partition."""
        seen = [w.max_event_ms for w in self.partitions.values() if w.max_event_ms is not None]
        return max(seen) if seen else None

    def _close_and_checkpoint(self, partition: int, out: StageOutput) -> None:
        windows = self.partitions[partition]
        # Timers before closing: a deadline's effect lands in the window of the deadline.
        self._fire_due(windows)
        for closed in windows.close_ready():
            out.partials.extend(self._partials(closed))
        if windows.closed_through_ms != self._last_progress.get(partition, None):
            self._last_progress[partition] = windows.closed_through_ms
            out.partials.append(
                {
                    "kind": "progress",
                    "family": str(self.family),
                    "partition": partition,
                    "partitions": self.source_partitions,
                    "closed_through": windows.closed_through_ms,
                }
            )
        table = self.entities[partition]
        if not self.persist:
            table.discard_changes()
            windows.discard_changes()
            return
        checkpoint = Checkpoint(deletes=table.take_pending_deletes(), purges=table.take_orphans())
        table.checkpoint(checkpoint)
        windows.checkpoint(into=checkpoint, entity_seq=table.seq)  # its meta: the last write
        if checkpoint:
            out.checkpoints[partition] = checkpoint

    def _partials(self, closed: ClosedWindow[A]) -> list[dict[str, Any]]:
        by_part: dict[int, list[Any]] = {}
        for key, acc in closed.accumulators.items():
            by_part.setdefault(part_of(key), []).append([list(key), acc.to_dict()])
        return [
            {
                "kind": "partial",
                "family": str(self.family),
                "partition": closed.partition,
                "start": closed.start_ms,
                "end": closed.end_ms,
                "part": part,
                "entries": entries,
            }
            for part, entries in sorted(by_part.items())
        ]

    def watermarks(self) -> dict[int, int | None]:
        return {p: w.watermark_ms for p, w in self.partitions.items()}


def key_of(entry: list[Any]) -> Key:
    return tuple(entry[0])
