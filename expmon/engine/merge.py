"""Stage 2: merge per-partition window partials into final windows and rolling views.

Stage 1 sends, for each input partition, the accumulators of each window it closed and
then a progress marker (`closed_through`). A window is final once every partition of the
input topic has reported progress past its end; then its partials merge (sketches add,
counts add) into one answer, whatever the number of partitions or workers. Rolling views
(5 m, 15 m, 1 h) are merges of the last k final base windows.

Redelivery after a crash is harmless: partials are stored under (window, partition, part)
and overwrite themselves, and anything for an already-final window is ignored.
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

    @property
    def record_key(self) -> str:
        return f"{self.family}/{self.view}/{self.end_ms}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "view": self.view,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "rows": self.rows,
        }


@dataclass
class MergeOutput:
    results: list[ViewResult] = field(default_factory=list)
    writes: dict[str, Any] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    ignored_partials: int = 0


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
    ) -> None:
        self.family = family
        self.window_ms = window_ms
        self.views = tuple(views)  # (name, number of base windows), e.g. ("5m", 5)
        self.retain = max(k for _, k in self.views)
        self._new = new_accumulator
        self._decode = decode_accumulator
        self._summarize = summarize
        self.partitions: int | None = None
        self.progress: dict[int, int] = {}
        self.pending: dict[int, dict[tuple[int, int], list[Any]]] = {}
        self.final_through: int | None = None
        self.history: dict[int, dict[Key, A]] = {}
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
        if self.final_through is not None and start + self.window_ms <= self.final_through:
            out.ignored_partials += 1
            return
        slot = (int(msg["partition"]), int(msg["part"]))
        self.pending.setdefault(start, {})[slot] = msg["entries"]
        out.writes[self._k("pending", start, *slot)] = msg["entries"]

    def _add_progress(self, msg: dict[str, Any], out: MergeOutput) -> None:
        self.partitions = int(msg["partitions"])
        through = msg["closed_through"]
        if through is None:
            return
        partition = int(msg["partition"])
        if through > self.progress.get(partition, -1):
            self.progress[partition] = int(through)
            out.writes[self._k("progress", partition)] = [int(through), self.partitions]

    # ------------------------------------------------------------ finalizing
    def ready_through(self) -> int | None:
        """Every window ending at or before this has all its partials."""
        if self.partitions is None:
            return None
        if any(p not in self.progress for p in range(self.partitions)):
            return None
        return min(self.progress[p] for p in range(self.partitions))

    def _finalize(self, out: MergeOutput) -> None:
        through = self.ready_through()
        if through is None or (self.final_through is not None and through <= self.final_through):
            return
        previous = self.final_through
        for start in sorted(s for s in self.pending if s + self.window_ms <= through):
            merged: dict[Key, A] = {}
            for slot, entries in sorted(self.pending.pop(start).items()):
                out.deletes.append(self._k("pending", start, *slot))
                for key_list, acc_data in entries:
                    key = tuple(key_list)
                    acc = self._decode(acc_data)
                    existing = merged.get(key)
                    if existing is None:
                        merged[key] = acc
                    else:
                        existing.merge(acc)
            self.history[start] = merged
            by_part: dict[int, list[Any]] = {}
            for key, acc in merged.items():
                by_part.setdefault(part_of(key), []).append([list(key), acc.to_dict()])
            for part, entries in by_part.items():
                out.writes[self._k("history", start, part)] = entries
        self.final_through = through
        out.writes[self._k("final_through")] = through
        self._emit_views(previous, through, out)
        self._trim_history(through, out)

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
        for start in [s for s in self.history if s < oldest_kept]:
            del self.history[start]
            out.deletes.extend(self._k("history", start, part) for part in range(STATE_PARTS))
        for start in [s for s in self._blocks if s < oldest_kept]:
            del self._blocks[start]

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
                self.progress[int(parts[1])] = int(value[0])
                self.partitions = int(value[1])
            elif kind == "final_through":
                self.final_through = int(value)
            elif kind == "history":
                window = self.history.setdefault(int(parts[1]), {})
                window.update((tuple(k), self._decode(a)) for k, a in value)
        if self.final_through is not None:
            for start in [s for s in self.pending if s + self.window_ms <= self.final_through]:
                del self.pending[start]
