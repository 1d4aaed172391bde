"""A mergeable bag of named counts: the window accumulator of checkout and logistics."""

from __future__ import annotations

import sys
from typing import Any

from expmon.engine.labels import LabelLimiter
from expmon.engine.merge import Summarizer, WindowMerger, view_windows
from expmon.engine.stage import WindowedStage
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

    def _label(self, limiter: LabelLimiter, value: str) -> str:
        # Interned: one string per label value, not one per waiting event or entity.
        return sys.intern(limiter(value))


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
