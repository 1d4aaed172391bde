"""A mergeable bag of named counts: the window accumulator of checkout and logistics."""

from __future__ import annotations

import sys
from typing import Any

from expmon.engine.labels import LABEL_HEADROOM, OTHER, top_values
from expmon.engine.merge import Summarizer, WindowMerger, view_windows
from expmon.engine.stage import WindowedStage
from expmon.engine.windows import Key, PartitionWindows
from expmon.settings import Settings

MAX_SAMPLES = 3
SAMPLES_KEY = "~ids"


def keep_samples(kept: list[str], new: list[str] | tuple[str, ...]) -> list[str]:
    """The MAX_SAMPLES smallest ids of both: the same whatever the order of adds and
    merges, so N workers, restarts and replays pick the same evidence."""
    if not new:
        return kept
    return sorted(set(kept).union(new))[:MAX_SAMPLES]


class CounterAccumulator:
    """Named integer counts; merging adds them. Ratios are computed at summary time.

    `samples` keeps a few event ids of what the window is about (failed payments), the
    evidence an alert carries (see `keep_samples`); equality compares the counts only.
    """

    __slots__ = ("counts", "samples")

    def __init__(
        self, counts: dict[str, int] | None = None, samples: list[str] | None = None
    ) -> None:
        self.counts: dict[str, int] = counts if counts is not None else {}
        self.samples: list[str] = samples if samples is not None else []

    def sample(self, event_id: str) -> None:
        samples = self.samples
        if len(samples) < MAX_SAMPLES or event_id < samples[-1]:
            self.samples = keep_samples(samples, (event_id,))

    def add(self, name: str, n: int = 1) -> None:
        counts = self.counts
        counts[name] = counts.get(name, 0) + n

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)

    def merge(self, other: CounterAccumulator) -> None:
        counts = self.counts
        for name, n in other.counts.items():
            counts[name] = counts.get(name, 0) + n
        self.samples = keep_samples(self.samples, other.samples)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(sorted(self.counts.items()))
        if self.samples:
            data[SAMPLES_KEY] = list(self.samples)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CounterAccumulator:
        samples = [str(s) for s in data.get(SAMPLES_KEY, ())]
        counts = {str(k): int(v) for k, v in data.items() if k != SAMPLES_KEY}
        return cls(counts, samples)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CounterAccumulator) and self.counts == other.counts

    __hash__ = None  # type: ignore[assignment]


def ratio(numerator: int, denominator: int) -> float | None:
    """None when there is nothing to divide: a missing ratio, not a zero one."""
    return numerator / denominator if denominator else None


class CounterStage(WindowedStage[CounterAccumulator]):
    """A stage whose windows hold named counts (checkout, logistics)."""

    def new_accumulator(self) -> CounterAccumulator:
        return CounterAccumulator()

    def decode_accumulator(self, data: Any) -> CounterAccumulator:
        return CounterAccumulator.from_dict(data)

    def __init__(
        self, settings: Settings, topic: str, source_partitions: int, live: bool = True
    ) -> None:
        super().__init__(settings, topic, source_partitions, live)
        self.label_cap = LABEL_HEADROOM * settings.max_label_values

    def _label(
        self,
        windows: PartitionWindows[CounterAccumulator],
        event_ms: int,
        space: str,
        position: int,
        value: str,
    ) -> str:
        """The label of `value` in the key (`space`, ...) of the window holding `event_ms`.

        Decided where the count goes, when it is made (see PartitionWindows.label); the
        view's top N is chosen at the merge stage (`fold_labels`).
        """
        # Interned: one string per label value, not one per key or entity.
        return sys.intern(windows.label(event_ms, position, value, self.label_cap, space))


def capped_name(acc: CounterAccumulator, prefix: str, value: str, cap: int) -> str:
    """`prefix + value` if `acc` has it or fewer than `cap` counters with `prefix`, else
    `prefix + other`: the per-window bound of a label kept in counter names (a payment's
    failure reasons). A function of the accumulator, so a restore rebuilds it."""
    name = prefix + value
    counts = acc.counts
    if name in counts or sum(1 for n in counts if n.startswith(prefix)) < cap:
        return name
    return prefix + OTHER


def fold_counter_names(
    accumulators: dict[Key, CounterAccumulator], prefix: str, limit: int
) -> dict[Key, CounterAccumulator]:
    """Counters `prefix + value` beyond the view's top `limit` values (by count, ties by
    name) merged into `prefix + other`; the input is not changed."""
    weights: dict[str, float] = {}
    for acc in accumulators.values():
        for name, n in acc.counts.items():
            if name.startswith(prefix):
                value = name[len(prefix) :]
                weights[value] = weights.get(value, 0) + n
    if len(weights) <= limit:
        return accumulators
    kept = top_values(weights, limit)
    folded: dict[Key, CounterAccumulator] = {}
    for key, acc in accumulators.items():
        counts: dict[str, int] = {}
        for name, n in acc.counts.items():
            folded_name = name
            if name.startswith(prefix) and name[len(prefix) :] not in kept:
                folded_name = prefix + OTHER
            counts[folded_name] = counts.get(folded_name, 0) + n
        folded[key] = CounterAccumulator(counts, list(acc.samples))
    return folded


def new_counter_merger(
    family: str, settings: Settings, summarize: Summarizer
) -> WindowMerger[CounterAccumulator]:
    """The merge stage of a family whose windows are named counts (checkout, logistics)."""
    return WindowMerger(
        family,
        settings.window_ms,
        view_windows(settings.window_seconds, settings.rolling_views),
        CounterAccumulator,
        CounterAccumulator.from_dict,
        summarize,
        correction_horizon_ms=int(settings.correction_horizon_seconds * 1000),
    )
