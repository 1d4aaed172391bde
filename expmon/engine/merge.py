"""Stage 2: merge per-partition window partials into final windows and rolling views.

Stage 1 sends, for each input partition, the accumulators of each window it closed and
then a progress marker (`closed_through`, and `provisional_through` when an idle partition
showed its open windows early). The merge stage sees every partition's progress, so what
it decides does not depend on which worker holds which partition:

- A window is *emitted* once every partition has reported progress past its end, real or
  provisional (an idle partition counts up to the busiest partition's real progress, or up
  to the wall clock when all are idle); its partials merge (sketches add, counts add) into
  one answer, whatever the number of partitions or workers. Rolling views (5 m, 15 m, 1 h)
  are merges of the last k emitted base windows.
- A window is *settled* once every partition's real (data-driven) progress is past its end:
  nothing can change it any more, and its partials are dropped.
- Between the two it is *correctable*: a partition that was shown early may send the
  window again (data arrived after all); the window is re-merged and every view holding it
  is emitted again with `revision` + 1. The last revision equals a replay of the same
  records. A window still unsettled `correction_horizon` of event time after the emission
  frontier is sealed: later partials for it are ignored and counted.

Redelivery after a crash is harmless: partials are stored under (window, partition, part)
and overwrite themselves; a repeat with the same entries changes nothing, and anything for
a settled window is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic

from expmon.engine.windows import STATE_PARTS, A, Key, part_of
from expmon.settings import parse_duration_seconds

# Rolling views merge aligned runs of this many base windows from a cache.
VIEW_BLOCK = 5

# summarize(view, start_ms, end_ms, per-key accumulators) -> JSON-able rows
Summarizer = Callable[[str, int, int, dict[Key, Any]], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ViewResult:
    family: str
    view: str
    start_ms: int
    end_ms: int
    rows: list[dict[str, Any]]
    revision: int = 0  # 0 when first emitted; +1 each time a correction re-emits it

    @property
    def record_key(self) -> str:
        return f"{self.family}/{self.view}/{self.end_ms}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "view": self.view,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "revision": self.revision,
            "rows": self.rows,
        }


@dataclass
class MergeOutput:
    results: list[ViewResult] = field(default_factory=list)
    writes: dict[str, Any] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    ignored_partials: int = 0
    revisions: int = 0  # views emitted again because a correctable window changed
    sealed_unsettled: int = 0  # windows sealed by the horizon before data settled them
    expired_partials: int = 0  # partials that came after their window's horizon


def view_windows(window_seconds: int, rolling_views: Iterable[str]) -> list[tuple[str, int]]:
    """("1m", 1) plus each rolling view as (name, number of base windows)."""
    return [("1m", 1)] + [
        (name, parse_duration_seconds(name) // window_seconds) for name in rolling_views
    ]


class WindowMerger(Generic[A]):
    def __init__(
        self,
        family: str,
        window_ms: int,
        views: Iterable[tuple[str, int]],
        new_accumulator: Callable[[], A],
        decode_accumulator: Callable[[Any], A],
        summarize: Summarizer,
        correction_horizon_ms: int = 3_600_000,
    ) -> None:
        self.family = family
        self.window_ms = window_ms
        self.views = tuple(views)  # (name, number of base windows), e.g. ("5m", 5)
        self.retain = max(k for _, k in self.views)
        self._new = new_accumulator
        self._decode = decode_accumulator
        self._summarize = summarize
        self.correction_horizon_ms = correction_horizon_ms
        self.partitions: int | None = None
        self.progress: dict[int, int] = {}  # real (data-driven) closed_through
        self.provisional: dict[int, int] = {}  # provisional_through of idle partitions
        # partials of windows not emitted yet, and of emitted but correctable ones
        self.pending: dict[int, dict[tuple[int, int], list[Any]]] = {}
        self.final_through: int | None = None  # the emission frontier
        self.correctable: set[int] = set()
        self.view_revisions: dict[tuple[str, int], int] = {}
        self.history: dict[int, dict[Key, A]] = {}
        # slots holding what a partition showed provisionally, not what it really closed
        self.shown: set[tuple[int, int, int]] = set()  # (start, partition, part)
        self._revised: set[int] = set()
        # start -> merge of the VIEW_BLOCK final windows from there (memory only)
        self._blocks: dict[int, dict[Key, A] | None] = {}

    # ------------------------------------------------------------ state keys
    def _k(self, *parts: object) -> str:
        return "/".join([self.family, *map(str, parts)])

    # ------------------------------------------------------------ input
    def apply(self, messages: Iterable[dict[str, Any]]) -> MergeOutput:
        out = MergeOutput()
        for msg in messages:
            if msg.get("family") != self.family:
                continue
            if msg["kind"] == "partial":
                self._add_partial(msg, out)
            elif msg["kind"] == "progress":
                self._add_progress(msg, out)
        self._finalize(out)
        return out

    def _add_partial(self, msg: dict[str, Any], out: MergeOutput) -> None:
        start = int(msg["start"])
        end = start + self.window_ms
        emitted = self.final_through is not None and end <= self.final_through
        if emitted and start not in self.correctable:
            # Emitted while some partition was only shown (perhaps with nothing to show
            # yet): correctable until every partition's own data passed it, or the horizon.
            settled = self.settled_through()
            if settled is not None and end <= settled:
                out.ignored_partials += 1  # a redelivery: it has all its data already
                return
            if end <= (self.final_through or 0) - self.correction_horizon_ms:
                out.ignored_partials += 1
                out.expired_partials += 1
                return
            self.correctable.add(start)
        slot = (int(msg["partition"]), int(msg["part"]))
        slots = self.pending.setdefault(start, {})
        self._mark_shown(start, slot, bool(msg.get("provisional")), out)
        if emitted and slots.get(slot, []) == msg["entries"]:
            return  # a redelivery, or a window shown early that came out the same
        slots[slot] = msg["entries"]
        out.writes[self._k("pending", start, *slot)] = msg["entries"]
        if emitted:
            self._revised.add(start)

    def _mark_shown(
        self, start: int, slot: tuple[int, int], provisional: bool, out: MergeOutput
    ) -> None:
        key = (start, *slot)
        if provisional and key not in self.shown:
            self.shown.add(key)
            out.writes[self._k("shown", *key)] = 1
        elif not provisional and key in self.shown:
            self.shown.discard(key)
            out.deletes.append(self._k("shown", *key))

    def _drop_stale_shown(self, partition: int, through: int, out: MergeOutput) -> None:
        """The partition's own data passed these windows and it sent nothing real for some
        slots it had shown: what it showed did not happen (a timer that did not fire)."""
        w = self.window_ms
        for key in sorted(k for k in self.shown if k[1] == partition and k[0] + w <= through):
            start, _p, part = key
            self.shown.discard(key)
            out.deletes.append(self._k("shown", *key))
            slots = self.pending.get(start)
            if slots is not None and slots.pop((partition, part), None) is not None:
                out.deletes.append(self._k("pending", start, partition, part))
                if self.final_through is not None and start + w <= self.final_through:
                    self._revised.add(start)

    def _add_progress(self, msg: dict[str, Any], out: MergeOutput) -> None:
        self.partitions = int(msg["partitions"])
        partition = int(msg["partition"])
        through = msg["closed_through"]
        provisional = msg.get("provisional_through")
        changed = False
        if through is not None and through > self.progress.get(partition, -1):
            self.progress[partition] = int(through)
            changed = True
            self._drop_stale_shown(partition, int(through), out)
        if provisional != self.provisional.get(partition):
            if provisional is None:
                self.provisional.pop(partition, None)
            else:
                self.provisional[partition] = int(provisional)
            changed = True
        if changed:
            out.writes[self._k("progress", partition)] = [
                self.progress.get(partition),
                self.partitions,
                self.provisional.get(partition),
            ]

    # ------------------------------------------------------------ finalizing
    def ready_through(self) -> int | None:
        """Every window ending at or before this may be emitted.

        A partition counts with its real progress, or, shown as idle, with its provisional
        progress capped at the furthest real progress of any partition: an idle partition
        follows the busiest one, wherever each is held. Only when every partition is idle
        does the wall clock (their provisional progress) lead, so that a quiet topic still
        books its deadlines; and with no data anywhere yet, nothing is emitted.
        """
        if self.partitions is None:
            return None
        real = [self.progress[p] for p in range(self.partitions) if p in self.progress]
        if not real:
            return None
        all_idle = all(p in self.provisional for p in range(self.partitions))
        cap = None if all_idle else max(real)
        marks = []
        for p in range(self.partitions):
            shown = self.provisional.get(p)
            if shown is not None and cap is not None:
                shown = min(shown, cap)
            known = [m for m in (self.progress.get(p), shown) if m is not None]
            if not known:
                return None
            marks.append(max(known))
        return min(marks)

    def settled_through(self) -> int | None:
        """Every window ending at or before this has all its data: no partition can change it."""
        if self.partitions is None or any(p not in self.progress for p in range(self.partitions)):
            return None
        return min(self.progress[p] for p in range(self.partitions))

    def _merge_slots(self, start: int) -> dict[Key, A]:
        merged: dict[Key, A] = {}
        for _slot, entries in sorted(self.pending.get(start, {}).items()):
            for key_list, acc_data in entries:
                key = tuple(key_list)
                acc = self._decode(acc_data)
                existing = merged.get(key)
                if existing is None:
                    merged[key] = acc
                else:
                    existing.merge(acc)
        return merged

    def _store_history(self, start: int, merged: dict[Key, A], out: MergeOutput) -> None:
        revised = start in self.history
        self.history[start] = merged
        by_part: dict[int, list[Any]] = {}
        for key, acc in merged.items():
            by_part.setdefault(part_of(key), []).append([list(key), acc.to_dict()])
        for part in range(STATE_PARTS):
            entries = by_part.get(part)
            if entries:
                out.writes[self._k("history", start, part)] = entries
            elif revised:  # a correction may leave a part empty that was not
                out.deletes.append(self._k("history", start, part))
        span = VIEW_BLOCK * self.window_ms
        self._blocks.pop(start - start % span, None)

    def _drop_slots(self, start: int, out: MergeOutput) -> None:
        for slot in sorted(self.pending.pop(start, {})):
            out.deletes.append(self._k("pending", start, *slot))
            if (start, *slot) in self.shown:
                self.shown.discard((start, *slot))
                out.deletes.append(self._k("shown", start, *slot))
        self.correctable.discard(start)

    def _finalize(self, out: MergeOutput) -> None:
        previous = self.final_through
        self._apply_corrections(out)
        through = self.ready_through()
        if through is not None and (previous is None or through > previous):
            settled = self.settled_through()
            for start in sorted(s for s in self.pending if s + self.window_ms <= through):
                if start in self.correctable:
                    continue
                self._store_history(start, self._merge_slots(start), out)
                if settled is not None and start + self.window_ms <= settled:
                    self._drop_slots(start, out)
                else:
                    self.correctable.add(start)
            self.final_through = through
            out.writes[self._k("final_through")] = through
            self._emit_views(previous, through, out)
        self._settle(out)
        if self.final_through is not None:
            self._trim_history(self.final_through, out)

    def _apply_corrections(self, out: MergeOutput) -> None:
        """Re-merge the correctable windows that changed; emit their views again."""
        revised, self._revised = sorted(self._revised), set()
        if not revised or self.final_through is None:
            return
        w = self.window_ms
        ends: set[int] = set()
        for start in revised:
            self._store_history(start, self._merge_slots(start), out)
            ends.update(range(start + w, start + self.retain * w + 1, w))
        for end in sorted(e for e in ends if e <= self.final_through):
            for view, k in self.views:
                low = end - k * w
                if not any(low <= start < end for start in revised):
                    continue
                merged = self._merged_range(low, end)
                if merged is None:
                    merged = {}
                revision = self.view_revisions.get((view, end), 0) + 1
                self.view_revisions[(view, end)] = revision
                out.writes[self._k("revision", view, end)] = revision
                rows = self._summarize(view, low, end, merged)
                out.results.append(ViewResult(self.family, view, low, end, rows, revision))
                out.revisions += 1

    def _settle(self, out: MergeOutput) -> None:
        if not self.correctable or self.final_through is None:
            return
        settled = self.settled_through()
        horizon = self.final_through - self.correction_horizon_ms
        for start in sorted(self.correctable):
            end = start + self.window_ms
            if settled is not None and end <= settled:
                self._drop_slots(start, out)
            elif end <= horizon:
                self._drop_slots(start, out)
                out.sealed_unsettled += 1

    def _emit_views(self, previous: int | None, through: int, out: MergeOutput) -> None:
        if not self.history:
            return
        first_data = min(self.history)
        last_data = max(self.history)
        w = self.window_ms
        low = previous if previous is not None else first_data
        # Only ends whose widest view still reaches data: bounded however far `through` jumped.
        high = min(through, last_data + self.retain * w)
        end = max(low, first_data) - max(low, first_data) % w + w
        while end <= high:
            for view, k in self.views:
                merged = self._merged_range(end - k * w, end)
                if merged is None:
                    continue
                rows = self._summarize(view, end - k * w, end, merged)
                out.results.append(ViewResult(self.family, view, end - k * w, end, rows))
            end += w

    def _merged_range(self, low: int, high: int) -> dict[Key, A] | None:
        """Every final base window in [low, high) merged per key; None when none has data.

        Aligned runs of VIEW_BLOCK windows come from a cache of merged blocks, so a 1 h
        view costs about a quarter of the merges. The order of merges depends on `low`
        and `high` only (not on what is cached), so a view is the same to the last bit
        after a restart or in a replay.
        """
        w = self.window_ms
        span = VIEW_BLOCK * w
        merged: dict[Key, A] = {}
        found = False
        start = low
        while start < high:
            if start % span == 0 and start + span <= high:
                piece = self._block(start)
                start += span
            else:
                piece = self.history.get(start)
                start += w
            if piece is None:
                continue
            found = True
            self._merge_into(merged, piece)
        return merged if found else None

    def _block(self, start: int) -> dict[Key, A] | None:
        """The merge of the VIEW_BLOCK final windows from `start` (all must be final)."""
        if start in self._blocks:
            return self._blocks[start]
        block: dict[Key, A] | None = None
        for s in range(start, start + VIEW_BLOCK * self.window_ms, self.window_ms):
            window = self.history.get(s)
            if window is not None:
                if block is None:
                    block = {}
                self._merge_into(block, window)
        self._blocks[start] = block
        return block

    def _merge_into(self, target: dict[Key, A], source: dict[Key, A]) -> None:
        for key, acc in source.items():
            into = target.get(key)
            if into is None:
                into = target[key] = self._new()
            into.merge(acc)

    def _trim_history(self, through: int, out: MergeOutput) -> None:
        oldest_kept = through - self.retain * self.window_ms
        if self.correctable:  # a correction re-emits every view holding its window
            oldest_kept = min(oldest_kept, min(self.correctable) - self.retain * self.window_ms)
        for start in [s for s in self.history if s < oldest_kept]:
            del self.history[start]
            out.deletes.extend(self._k("history", start, part) for part in range(STATE_PARTS))
        for start in [s for s in self._blocks if s < oldest_kept]:
            del self._blocks[start]
        for view, end in [ve for ve in self.view_revisions if ve[1] < oldest_kept]:
            del self.view_revisions[(view, end)]
            out.deletes.append(self._k("revision", view, end))

    # ------------------------------------------------------------ restore
    def restore(self, items: Iterable[tuple[str, Any]]) -> None:
        self._blocks.clear()  # rebuilt from the restored history on demand
        prefix = self.family + "/"
        for key, value in items:
            if not key.startswith(prefix):
                continue
            parts = key.split("/")[1:]
            kind = parts[0]
            if kind == "pending":
                start, partition, part = map(int, parts[1:])
                self.pending.setdefault(start, {})[(partition, part)] = value
            elif kind == "progress":
                # [closed_through, partitions] (0.5.0) or [.., provisional_through]
                partition = int(parts[1])
                if value[0] is not None:
                    self.progress[partition] = int(value[0])
                self.partitions = int(value[1])
                if len(value) > 2 and value[2] is not None:
                    self.provisional[partition] = int(value[2])
            elif kind == "shown":
                start, partition, part = map(int, parts[1:])
                self.shown.add((start, partition, part))
            elif kind == "revision":
                self.view_revisions[(parts[1], int(parts[2]))] = int(value)
            elif kind == "final_through":
                self.final_through = int(value)
            elif kind == "history":
                window = self.history.setdefault(int(parts[1]), {})
                window.update((tuple(k), self._decode(a)) for k, a in value)
        if self.final_through is not None:
            # Emitted windows whose partials are still stored were correctable.
            self.correctable = {s for s in self.pending if s + self.window_ms <= self.final_through}
