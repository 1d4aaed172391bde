"""A mergeable quantile sketch with bounded relative error (DDSketch, log-spaced buckets).

Every value v > 0 lands in bucket i = ceil(log_gamma(v)); the bucket's representative
2*gamma^i/(gamma+1) is within `relative_accuracy` of every value in it. Merging adds
bucket counts, so a window's sketch is the same whether built in one place or merged from
per-partition or per-worker parts, in any order.

Quantile definition (shared with ground truth): the value at rank floor(q * (n - 1)) of
the sorted values, 0-based.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_RELATIVE_ACCURACY = 0.01
# Values at or below this count as zero (durations of 0 ms are legal).
_MIN_POSITIVE = 1e-9


class DDSketch:
    __slots__ = ("_inv_log_gamma", "_log_gamma", "bins", "count", "relative_accuracy", "zero_count")

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.relative_accuracy = relative_accuracy
        gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(gamma)
        self._inv_log_gamma = 1.0 / self._log_gamma
        self.bins: dict[int, int] = {}
        self.zero_count = 0
        self.count = 0

    def add(self, value: float) -> None:
        if value <= _MIN_POSITIVE:
            self.zero_count += 1
        else:
            key = math.ceil(math.log(value) * self._inv_log_gamma)
            bins = self.bins
            bins[key] = bins.get(key, 0) + 1
        self.count += 1

    def add_many(self, values: Iterable[float]) -> None:
        bins = self.bins
        inv = self._inv_log_gamma
        log = math.log
        ceil = math.ceil
        n = 0
        zeros = 0
        for value in values:
            n += 1
            if value <= _MIN_POSITIVE:
                zeros += 1
            else:
                key = ceil(log(value) * inv)
                bins[key] = bins.get(key, 0) + 1
        self.zero_count += zeros
        self.count += n

    def merge(self, other: DDSketch) -> None:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        bins = self.bins
        for key, n in other.bins.items():
            bins[key] = bins.get(key, 0) + n
        self.zero_count += other.zero_count
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """Value at rank floor(q*(n-1)); None when empty."""
        if not 0 <= q <= 1:
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        if rank < self.zero_count:
            return 0.0
        seen = self.zero_count
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                return self._value_of(key)
        raise AssertionError("bin counts disagree with count")  # pragma: no cover

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        return [self.quantile(q) for q in qs]

    def _value_of(self, key: int) -> float:
        gamma = math.exp(self._log_gamma)
        return 2.0 * math.exp(key * self._log_gamma) / (gamma + 1.0)

    def copy(self) -> DDSketch:
        clone = DDSketch(self.relative_accuracy)
        clone.bins = dict(self.bins)
        clone.zero_count = self.zero_count
        clone.count = self.count
        return clone

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.relative_accuracy,
            "z": self.zero_count,
            "b": list(self.bins.items()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DDSketch:
        sketch = cls(float(data["a"]))
        sketch.bins = {int(k): int(n) for k, n in data["b"]}
        sketch.zero_count = int(data["z"])
        sketch.count = sketch.zero_count + sum(sketch.bins.values())
        return sketch

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DDSketch)
            and self.relative_accuracy == other.relative_accuracy
            and self.zero_count == other.zero_count
            and self.bins == other.bins
        )

    __hash__ = None  # type: ignore[assignment]


def exact_quantile(sorted_values: Sequence[float], q: float) -> float:
    """The exact counterpart of DDSketch.quantile, for ground truth and tests."""
    if not sorted_values:
        raise ValueError("no values")
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]
