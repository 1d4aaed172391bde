"""Stage 1 of every stream processor: records of one input topic -> windows per partition.

Decode and validate each record, drop repeats of an `event_id`, set late events aside,
add the rest to event-time windows, and report what to send: dead letters, closed
windows (as per-partition partials for the merge stage), watermark progress and the
state checkpoint. Pure logic; the faust agent in `streams/` does the I/O.

Validation's "now" is the record's broker timestamp when it has one (live and replay then
judge an event alike), and an event further ahead of that timestamp than
`max_clock_skew_seconds` is dead-lettered as `clock_skew`: one phone with a wrong clock
must not move its partition's watermark and make everyone else late.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol

from expmon.engine.entities import Entity, EntityTable, is_entity_key
from expmon.engine.windows import (
    ACCEPTED,
    DUPLICATE,
    STATE_PARTS,
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
from schemas.records import BATCH_INDEX, RecordDecoder, Rejected, strip_annotations

OUTCOMES = ("accepted", "invalid", "late", "duplicate")
LATE_REASON = "late"
SKEW_REASON = "clock_skew"


class RawRecord(NamedTuple):
    """One input record as the worker hands it to `process` (a NamedTuple: the worker
    builds one per record it fetched, and a frozen dataclass paid a setattr per field)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None  # the broker's (or producer's) record timestamp


class StageRecord(Protocol):
    """What `process` reads of a record: a `RawRecord`, or any record with these attributes
    (a replay's records go in as they were read, without a copy each)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp_ms(self) -> int | None: ...


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
    topic: str, rec: StageRecord, reason: str, detail: str, index: int | None
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
        self.max_skew_ms = int(settings.max_clock_skew_seconds * 1000)
        self._last_progress: dict[int, tuple[int | None, int | None]] = {}
        # partition -> (window-aligned frontier, applied offset) of its last look-ahead
        self._provisional: dict[int, tuple[int, int]] = {}
        # True while a provisional look-ahead runs: families must not count cumulative
        # totals then (the real timers count them when the watermark gets there).
        self.provisional = False

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
            windows.label_positions = self.label_positions
            windows.label_spaces = self.label_spaces
            self.entities[partition] = EntityTable(partition)
        return windows

    # positions of label values in this family's window keys (see PartitionWindows.label),
    # and whether a key's first element names its space (values counted per space)
    label_positions: tuple[int, ...] = ()
    label_spaces = False

    def assign(self, partition: int, stored: Iterable[tuple[str, Any]]) -> None:
        """Take over a partition, restoring its state from the table entries given."""
        self.partitions.pop(partition, None)
        self._last_progress.pop(partition, None)
        self._provisional.pop(partition, None)
        windows_items: list[tuple[str, Any]] = []
        entity_items: list[tuple[str, Any]] = []
        for key, value in stored:
            (entity_items if is_entity_key(key) else windows_items).append((key, value))
        entity_seq = self.partition(partition).restore(windows_items)
        self.entities[partition].restore(entity_items, max_seq=entity_seq)

    def revoke(self, partition: int) -> None:
        self.partitions.pop(partition, None)
        self.entities.pop(partition, None)
        self._last_progress.pop(partition, None)
        self._provisional.pop(partition, None)

    # ---------------------------------------------------------------- processing
    def process(self, records: Iterable[StageRecord], now_ms: int | None = None) -> StageOutput:
        out = StageOutput()
        counts = out.counts
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        max_skew_ms = self.max_skew_ms
        touched: set[int] = set()
        valid: list[Event] = []
        rejected: list[Rejected] = []
        add_event = self.add_event
        decode = self.decoder.decode
        partitions = self.partitions
        accepted = 0
        # Per record: what a single-event record pays besides its event, kept to lookups.
        for rec in records:
            partition = rec.partition
            windows = partitions.get(partition) or self.partition(partition)
            if rec.offset <= windows.offset:
                # Already applied before a restart: the checkpoint ran ahead of the commit.
                out.skipped_replayed += 1
                continue
            touched.add(partition)
            valid.clear()
            stamp = rec.timestamp_ms
            decode(rec.value, now_ms if stamp is None else stamp, valid, rejected)
            if rejected:
                self._reject(rec, rejected, out)
                rejected.clear()
            admit = windows.admit
            for event in valid:
                event_ms: int = event["_t"]
                if stamp is not None and event_ms - stamp > max_skew_ms:
                    counts["invalid"] += 1
                    out.dead_letters.append(self._skew_letter(rec, event, stamp))
                    continue
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

    def _reject(self, rec: StageRecord, rejected: list[Rejected], out: StageOutput) -> None:
        for rej in rejected:
            out.counts["invalid"] += 1
            out.dead_letters.append(
                DeadLetter(
                    rec.key,
                    rej.payload,
                    dead_letter_headers(self.topic, rec, rej.reason, rej.detail, rej.index),
                    rej.reason,
                )
            )

    def _late_letter(self, rec: StageRecord, event: Event, watermark: int | None) -> DeadLetter:
        return self._event_letter(
            rec, event, LATE_REASON, f"event time before watermark {watermark}"
        )

    def _skew_letter(self, rec: StageRecord, event: Event, stamp: int) -> DeadLetter:
        ahead_s = (event["_t"] - stamp) / 1000
        detail = (
            f"event time {ahead_s:.0f} s ahead of the record timestamp "
            f"(max {self.max_skew_ms / 1000:.0f} s)"
        )
        return self._event_letter(rec, event, SKEW_REASON, detail)

    def _event_letter(self, rec: StageRecord, event: Event, reason: str, detail: str) -> DeadLetter:
        """A valid event set aside (late, clock skew), as it was sent."""
        index = event.get(BATCH_INDEX)
        strip_annotations(event)
        return DeadLetter(
            rec.key,
            codec.dumps(event),
            dead_letter_headers(self.topic, rec, reason, detail, index),
            reason,
        )

    def tick(self, idle: Mapping[int, int]) -> StageOutput:
        """Live mode: show the open windows of idle partitions up to a frontier, provisionally.

        `idle` maps each partition the caller verified as idle (consumed to the broker's
        high-water mark, nothing new on the broker for the idle timeout, broker reachable)
        to the frontier to show it at (wall clock minus the allowed lateness). A fork of the
        partition is advanced there: its timers fire and its windows up to the frontier are
        sent as partials, with progress `provisional_through`. The partition itself keeps
        its data-driven watermark, so an event that arrives later is not late: it lands in
        its window, which is sent again when it really closes, and the merge stage corrects
        the views it showed.
        """
        out = StageOutput()
        if not self.live:
            return out
        w = self.settings.window_ms
        for partition, frontier in sorted(idle.items()):
            windows = self.partition(partition)
            through = frontier - frontier % w
            if windows.watermark_ms is not None and windows.watermark_ms >= through:
                continue  # its own data got there: it reports real progress
            if windows.closed_through_ms is not None and through <= windows.closed_through_ms:
                continue
            memo = (through, windows.offset)
            if self._provisional.get(partition) == memo:
                continue
            self._provisional[partition] = memo
            self._look_ahead(partition, through, out)
        return out

    def _look_ahead(self, partition: int, through: int, out: StageOutput) -> None:
        real_windows = self.partitions[partition]
        real_entities = self.entities[partition]

        def copy_accumulator(acc: A) -> A:
            return self.decode_accumulator(acc.to_dict())

        fork = real_windows.fork(copy_accumulator)
        self.partitions[partition] = fork
        self.entities[partition] = real_entities.fork()
        self.provisional = True
        try:
            fork.advance_watermark(through)
            self._fire_due(fork)
            for closed in fork.close_ready():
                for partial in self._partials(closed):
                    partial["provisional"] = True
                    out.partials.append(partial)
        finally:
            self.provisional = False
            self.partitions[partition] = real_windows
            self.entities[partition] = real_entities
        progress = (real_windows.closed_through_ms, through)
        self._last_progress[partition] = progress
        out.partials.append(self._progress(partition, *progress))

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
        provisional = self._provisional.get(partition)
        if provisional is not None and windows.offset != provisional[1]:
            # It got data since it was shown: until its own watermark gets past what was
            # shown, the merge stage must wait for it again.
            del self._provisional[partition]
            provisional = None
        progress = (windows.closed_through_ms, None if provisional is None else provisional[0])
        if progress != self._last_progress.get(partition, (None, None)):
            self._last_progress[partition] = progress
            out.partials.append(self._progress(partition, *progress))
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

    def _progress(
        self, partition: int, closed_through: int | None, provisional_through: int | None
    ) -> dict[str, Any]:
        return {
            "kind": "progress",
            "family": str(self.family),
            "partition": partition,
            "partitions": self.source_partitions,
            "closed_through": closed_through,
            "provisional_through": provisional_through,
        }

    def _partials(self, closed: ClosedWindow[A]) -> list[dict[str, Any]]:
        # Every part, the empty ones too: a window shown provisionally may be sent again
        # with keys in other parts, and each part's slot must be overwritten.
        by_part: dict[int, list[Any]] = {part: [] for part in range(STATE_PARTS)}
        for key, acc in closed.accumulators.items():
            by_part[part_of(key)].append([list(key), acc.to_dict()])
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
