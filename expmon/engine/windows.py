"""Event-time tumbling windows for one input partition: pure logic, no Kafka.

Semantics (the same live and in replay):
- The watermark of a partition is the largest event time seen in it minus the allowed
  lateness. Only data moves it (and the end of a replay range): never a clock, never
  idleness. It never goes back.
- An event earlier than the watermark is late: counted and set aside, never windowed.
  Whether an event is late depends only on the records before it in its partition, so
  the outcome does not depend on how partitions interleave, how many workers run, how
  events are grouped into array records, or how long the broker was away.
- A window [start, end) closes once the watermark reaches `end`. An idle partition may
  *show* its open windows early (`fork`: a provisional copy advanced to a frontier);
  the real windows stay open, so later data corrects what was shown instead of being lost.
- `event_id` de-duplication keeps the ids of accepted events for every window the
  watermark has not passed and one before (the id horizon); a repeat is a duplicate when
  its window is inside that horizon, else its event time decides (late), so the outcome
  does not depend on when ids were expired, that is, on the batching.
- Label values are capped per window (`label`): a value keeps its key while the window
  of this partition has fewer than `cap` distinct values at that place (or has it
  already), the rest is `other`. The set is read off the window's keys, so a restore
  rebuilds it exactly. It only bounds state; which values a view shows is decided at the
  merge stage (`expmon.engine.labels.fold_labels`).

State changes are tracked (dirty windows, new ids, removed keys) so the caller can write
a checkpoint of exactly what changed after each batch.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypeVar

from expmon.engine.labels import OTHER
from expmon.errors import StateError

Key = tuple[str, ...]
ACCEPTED, DUPLICATE, LATE = 0, 1, 2
STATE_PARTS = 8  # each open window is stored and emitted in this many key-hash parts
IDS_PER_CHUNK = 10_000  # keeps a changelog record well under Kafka's 1 MB default


class Accumulator(Protocol):
    def merge(self, other: Self) -> None: ...

    def to_dict(self) -> Any: ...


A = TypeVar("A", bound=Accumulator)


_PARTS: dict[Key, int] = {}


def part_of(key: Key) -> int:
    """Stable part of a key (crc32, not hash(): it must agree across processes)."""
    part = _PARTS.get(key)
    if part is None:
        if len(_PARTS) > 100_000:  # label limits keep keys few; this only bounds the cache
            _PARTS.clear()
        part = _PARTS[key] = zlib.crc32("\x1f".join(key).encode()) % STATE_PARTS
    return part


@dataclass(frozen=True, slots=True)
class ClosedWindow(Generic[A]):
    partition: int
    start_ms: int
    end_ms: int
    accumulators: dict[Key, A]


@dataclass
class Checkpoint:
    """What changed in a partition's state since the last checkpoint, as table writes.

    Applied in this order: `purges` (and wait until they are durable), `writes` (the meta
    last), `deletes`. `purges` are the leftovers of a checkpoint a crash cut short: their
    versions are past the stored meta's, and the next meta's version is higher still, so
    they must be gone from the log before that meta lands; as ordinary deletes after it, a
    crash in between would make a later restore take them for valid state.
    """

    writes: dict[str, Any] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    purges: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.writes or self.deletes or self.purges)


class PartitionWindows(Generic[A]):
    """Windows, watermark, de-duplication and applied offset of one input partition."""

    def __init__(
        self,
        partition: int,
        window_ms: int,
        lateness_ms: int,
        new_accumulator: Callable[[], A],
        decode_accumulator: Callable[[Any], A],
    ) -> None:
        self.partition = partition
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self._new = new_accumulator
        self._decode = decode_accumulator
        self.watermark_ms: int | None = None
        self.max_event_ms: int | None = None
        self.closed_through_ms: int | None = None
        self.offset = -1
        self.windows: dict[int, dict[Key, A]] = {}
        self.ids: dict[int, set[str]] = {}
        # window start -> (key space, position) -> distinct values among that window's keys
        self._labels: dict[int, dict[tuple[str, int], set[str]]] = {}
        self.label_positions: tuple[int, ...] = ()
        # True: a key's first element names its space (checkout's funnel/payment keys), and
        # values are counted per space and position; False: per position only
        self.label_spaces = False
        # checkpoint bookkeeping
        self._seq = 0
        self._dirty: dict[int, set[Key]] = {}  # window start -> keys changed
        self._new_ids: dict[int, list[str]] = {}
        self._id_chunks: dict[int, list[str]] = {}
        self._part_version: dict[tuple[int, int], int] = {}
        self._pending_deletes: list[str] = []
        self._orphans: list[str] = []  # a cut-short checkpoint's records (see Checkpoint)
        self._meta_dirty = False

    # ------------------------------------------------------------------ per event
    def admit(self, event_id: str, event_ms: int) -> int:
        """ACCEPTED (id remembered, watermark advanced), DUPLICATE or LATE, in one step."""
        window_ms = self.window_ms
        start = event_ms - event_ms % window_ms
        bucket = self.ids.get(start)
        watermark = self.watermark_ms
        if (
            bucket is not None
            and event_id in bucket
            # inside the id horizon (`_id_horizon`, inlined: this runs once per event)
            and (watermark is None or start >= watermark - watermark % window_ms - window_ms)
        ):
            return DUPLICATE
        # Not remembered, or remembered only because its window's ids were not expired yet
        # (that happens per batch): then its event time alone decides, so a repeat is late
        # or duplicate the same way whatever the grouping of events into records.
        if watermark is not None and event_ms < watermark:
            return LATE
        if self.max_event_ms is None or event_ms > self.max_event_ms:  # `observe`, inlined
            self.max_event_ms = event_ms
            candidate = event_ms - self.lateness_ms
            if watermark is None or candidate > watermark:
                self.watermark_ms = candidate
            self._meta_dirty = True
        if bucket is None:
            bucket = self.ids[start] = set()
        bucket.add(event_id)
        new_ids = self._new_ids.get(start)
        if new_ids is None:
            new_ids = self._new_ids[start] = []
        new_ids.append(event_id)
        return ACCEPTED

    def is_duplicate(self, event_id: str, event_ms: int) -> bool:
        bucket = self.ids.get(event_ms - event_ms % self.window_ms)
        return bucket is not None and event_id in bucket

    def observe(self, event_ms: int) -> bool:
        """Advance the watermark with this event; return True when the event is late."""
        watermark = self.watermark_ms
        if watermark is not None and event_ms < watermark:
            return True
        if self.max_event_ms is None or event_ms > self.max_event_ms:
            self.max_event_ms = event_ms
            candidate = event_ms - self.lateness_ms
            if watermark is None or candidate > watermark:
                self.watermark_ms = candidate
            self._meta_dirty = True
        return False

    def remember(self, event_id: str, event_ms: int) -> None:
        """Record an accepted event's id for de-duplication."""
        start = event_ms - event_ms % self.window_ms
        bucket = self.ids.get(start)
        if bucket is None:
            bucket = self.ids[start] = set()
        bucket.add(event_id)
        new_ids = self._new_ids.get(start)
        if new_ids is None:
            new_ids = self._new_ids[start] = []
        new_ids.append(event_id)

    def accumulator(self, event_ms: int, key: Key) -> A:
        """The accumulator of `key` in the window holding `event_ms` (created on first use)."""
        start = event_ms - event_ms % self.window_ms
        window = self.windows.get(start)
        if window is None:
            window = self.windows[start] = {}
        acc = window.get(key)
        if acc is None:
            acc = window[key] = self._new()
            if self.label_positions:
                self._note_labels(start, key)
        dirty = self._dirty.get(start)
        if dirty is None:
            dirty = self._dirty[start] = set()
        dirty.add(key)  # parts are worked out per checkpoint, not per event
        return acc

    def labelled_accumulator(self, event_ms: int, values: Key, caps: tuple[int, ...]) -> A:
        """`accumulator` of the key that `label` makes of `values`, in one step.

        The value at each of `label_positions` is labelled with the cap in the same place
        of `caps` (in that order, as separate `label` calls would). A key already in the
        window is its own labelled form: its values were noted when it was made or
        restored, and `label` keeps a noted value. So a key seen before in the window (the
        common case: keys are few, events many) costs one lookup; only a new one is
        labelled value by value.
        """
        start = event_ms - event_ms % self.window_ms
        window = self.windows.get(start)
        acc = None if window is None else window.get(values)
        if acc is None:
            return self.accumulator(event_ms, self.labelled_key(event_ms, values, caps))
        dirty = self._dirty.get(start)
        if dirty is None:
            dirty = self._dirty[start] = set()
        dirty.add(values)
        return acc

    def labelled_key(self, event_ms: int, values: Key, caps: tuple[int, ...]) -> Key:
        """`values` with the value at each of `label_positions` labelled (see `label`)."""
        space = values[0] if self.label_spaces and values else ""
        key = list(values)
        for position, cap in zip(self.label_positions, caps, strict=True):
            key[position] = self.label(event_ms, position, values[position], cap, space)
        return tuple(key)

    def label(self, event_ms: int, position: int, value: str, cap: int, space: str = "") -> str:
        """`value` if it is (or can become) one of the window's first `cap` values, else other.

        `position` is where the value sits in this family's keys (see `label_positions`),
        `space` the keys' first element when the family has `label_spaces`: the admitted
        set is read off the window's keys, so it survives a restore as is. Call it for the
        window the count goes into, just before `accumulator` makes the key.
        """
        start = event_ms - event_ms % self.window_ms
        per_window = self._labels.get(start)
        seen = None if per_window is None else per_window.get((space, position))
        if seen is None or value in seen or len(seen) < cap:
            return value
        return OTHER

    def _note_labels(self, start: int, key: Key) -> None:
        per_window = self._labels.get(start)
        if per_window is None:
            per_window = self._labels[start] = {}
        space = key[0] if self.label_spaces and key else ""
        for position in self.label_positions:
            if position < len(key):
                per_window.setdefault((space, position), set()).add(key[position])

    def applied(self, offset: int) -> None:
        if offset > self.offset:
            self.offset = offset
            self._meta_dirty = True

    # ------------------------------------------------------------------ closing
    def advance_watermark(self, watermark_ms: int) -> None:
        """Move the watermark forward: the end of a replay range, or a provisional fork."""
        if self.watermark_ms is None or watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
            self._meta_dirty = True

    def close_ready(self) -> list[ClosedWindow[A]]:
        """Windows whose end the watermark has reached, oldest first; each returned once."""
        watermark = self.watermark_ms
        if watermark is None:
            return []
        closed: list[ClosedWindow[A]] = []
        for start in sorted(s for s in self.windows if s + self.window_ms <= watermark):
            accumulators = self.windows.pop(start)
            self._labels.pop(start, None)
            self._dirty.pop(start, None)
            self._pending_deletes.extend(self._stored_window_keys(start))
            closed.append(ClosedWindow(self.partition, start, start + self.window_ms, accumulators))
        through = watermark - watermark % self.window_ms
        if self.closed_through_ms is None or through > self.closed_through_ms:
            self.closed_through_ms = through
            self._meta_dirty = True
        self._expire_ids(watermark)
        return closed

    def _id_horizon(self) -> int:
        """Ids of windows starting at or after this are always remembered."""
        watermark = self.watermark_ms
        if watermark is None:
            return -(2**62)
        return watermark - watermark % self.window_ms - self.window_ms

    def _expire_ids(self, watermark: int) -> None:
        horizon = watermark - watermark % self.window_ms - self.window_ms
        for start in [s for s in self.ids if s < horizon]:
            del self.ids[start]
            self._new_ids.pop(start, None)
            self._pending_deletes.extend(self._id_chunks.pop(start, []))

    def fork(self, copy_accumulator: Callable[[A], A]) -> PartitionWindows[A]:
        """A throw-away copy to advance provisionally; this object is left as it was.

        Only what closing touches is copied (open windows, watermark); ids and checkpoint
        bookkeeping are not needed by a fork, which is never checkpointed.
        """
        twin: PartitionWindows[A] = PartitionWindows(
            self.partition, self.window_ms, self.lateness_ms, self._new, self._decode
        )
        twin.watermark_ms = self.watermark_ms
        twin.max_event_ms = self.max_event_ms
        twin.closed_through_ms = self.closed_through_ms
        twin.offset = self.offset
        twin.label_positions = self.label_positions
        twin.label_spaces = self.label_spaces
        twin.windows = {
            start: {key: copy_accumulator(acc) for key, acc in window.items()}
            for start, window in self.windows.items()
        }
        twin._labels = {
            start: {pos: set(values) for pos, values in per.items()}
            for start, per in self._labels.items()
        }
        return twin

    # ------------------------------------------------------------------ checkpoint
    # A checkpoint is several changelog records; a crash can cut it anywhere. Every
    # record carries the checkpoint's version, the meta (applied offset, version) is
    # written last and deletes go after it, so on restore whatever is newer than the
    # meta's version is ignored: a checkpoint counts whole or not at all. Those ignored
    # records are purged before the next checkpoint's writes (see `Checkpoint`).

    def _meta_key(self) -> str:
        return f"meta/{self.partition}"

    def _window_key(self, start: int, part: int, version: int) -> str:
        return f"win/{self.partition}/{start}/{part}/{version}"

    def _stored_window_keys(self, start: int) -> list[str]:
        keys = []
        for part in range(STATE_PARTS):
            version = self._part_version.pop((start, part), None)
            if version is not None:
                keys.append(self._window_key(start, part, version))
        return keys

    def checkpoint(self, into: Checkpoint | None = None, entity_seq: int = 0) -> Checkpoint:
        """Table writes that bring the stored state up to this object's; resets tracking."""
        cp = into if into is not None else Checkpoint()
        version = self._seq + 1
        superseded: list[str] = []
        for start, keys in self._dirty.items():
            window = self.windows.get(start)
            if window is None:
                continue
            by_part: dict[int, list[Any]] = {part_of(key): [] for key in keys}
            for key, acc in window.items():
                entries = by_part.get(part_of(key))
                if entries is not None:
                    entries.append([list(key), acc.to_dict()])
            for part, entries in by_part.items():
                cp.writes[self._window_key(start, part, version)] = entries
                previous = self._part_version.get((start, part))
                if previous is not None:
                    superseded.append(self._window_key(start, part, previous))
                self._part_version[(start, part)] = version
        self._dirty = {}
        for start, new_ids in self._new_ids.items():
            for n, i in enumerate(range(0, len(new_ids), IDS_PER_CHUNK)):
                chunk_key = f"ids/{self.partition}/{start}/{version}.{n}"
                self._id_chunks.setdefault(start, []).append(chunk_key)
                cp.writes[chunk_key] = new_ids[i : i + IDS_PER_CHUNK]
        self._new_ids = {}
        if self._meta_dirty or cp.writes or self._pending_deletes:
            self._seq = version
            cp.writes[self._meta_key()] = {
                "watermark": self.watermark_ms,
                "max_event": self.max_event_ms,
                "closed_through": self.closed_through_ms,
                "offset": self.offset,
                "seq": version,
                "entity_seq": entity_seq,
            }
            self._meta_dirty = False
        cp.purges.extend(self._orphans)
        cp.deletes.extend(self._pending_deletes)
        cp.deletes.extend(superseded)
        self._orphans = []
        self._pending_deletes = []
        return cp

    def discard_changes(self) -> None:
        """Forget change tracking (state that is never checkpointed must not grow with it)."""
        self._dirty = {}
        self._new_ids = {}
        self._pending_deletes = []
        self._orphans = []
        self._meta_dirty = False

    def restore(self, items: Iterable[tuple[str, Any]]) -> int:
        """Rebuild from stored (key, value) pairs of this partition (as `checkpoint` wrote them).

        Returns the entity sequence the meta vouches for (0 without a meta).
        """
        stored = list(items)
        meta = next((value for key, value in stored if key == self._meta_key()), None)
        limit = 0 if meta is None else int(meta["seq"])
        newest = limit
        parts: dict[tuple[int, int], tuple[int, Any, str]] = {}
        try:
            if meta is not None:
                self.watermark_ms = meta["watermark"]
                self.max_event_ms = meta["max_event"]
                self.closed_through_ms = meta["closed_through"]
                self.offset = meta["offset"]
            for key, value in stored:
                if key == self._meta_key():
                    continue
                kind, _, start_text, *rest = key.split("/")
                start = int(start_text)
                if kind == "win":
                    part, version = int(rest[0]), int(rest[1])
                elif kind == "ids":
                    part, version = -1, int(rest[0].split(".")[0])
                else:
                    continue
                newest = max(newest, version)
                if version > limit:  # written by a checkpoint the crash cut short
                    self._orphans.append(key)
                elif kind == "ids":
                    self.ids.setdefault(start, set()).update(value)
                    self._id_chunks.setdefault(start, []).append(key)
                else:
                    held = parts.get((start, part))
                    if held is None or held[0] < version:
                        if held is not None:
                            self._pending_deletes.append(held[2])
                        parts[(start, part)] = (version, value, key)
                    else:
                        self._pending_deletes.append(key)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise StateError(f"partition {self.partition}: unreadable state entry: {exc}") from exc
        for (start, part), (version, value, _key) in parts.items():
            window = self.windows.setdefault(start, {})
            for key_list, acc in value:
                window_key = tuple(key_list)
                window[window_key] = self._decode(acc)
                if self.label_positions:
                    self._note_labels(start, window_key)
            self._part_version[(start, part)] = version
        # New versions must not reuse a number a cut-short checkpoint left on the log.
        self._seq = newest
        # A window that closed before the crash may still have parts on the changelog if
        # the crash fell between emitting and deleting; it was emitted, so drop it.
        if self.closed_through_ms is not None:
            for start in [s for s in self.windows if s + self.window_ms <= self.closed_through_ms]:
                del self.windows[start]
                self._labels.pop(start, None)
                self._pending_deletes.extend(self._stored_window_keys(start))
        return 0 if meta is None else int(meta.get("entity_seq", 0))


def window_end(event_ms: int, window_ms: int) -> int:
    """End of the tumbling window holding `event_ms`."""
    return event_ms - event_ms % window_ms + window_ms


def partition_of_state_key(key: str) -> int:
    """The input partition a state key belongs to (`meta/3`, `win/3/...`, `ids/3/...`)."""
    return int(key.split("/", 2)[1])
