"""A mergeable bag of named counts: the window accumulator of checkout and logistics."""

from __future__ import annotations

import sys
from typing import Any

from expmon.ingest import WindowedStage
from expmon.labels import LabelLimiter


class CounterAccumulator:
    """Named integer counts; merging adds them. Ratios are computed at summary time."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts: dict[str, int] = counts if counts is not None else {}

    def add(self, name: str, n: int = 1) -> None:
        counts = self.counts
        counts[name] = counts.get(name, 0) + n

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)

    def merge(self, other: CounterAccumulator) -> None:
        counts = self.counts
        for name, n in other.counts.items():
            counts[name] = counts.get(name, 0) + n

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CounterAccumulator:
        return cls({str(k): int(v) for k, v in data.items()})

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
