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
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate
from operator import add
from typing import Any

DEFAULT_RELATIVE_ACCURACY = 0.01
# Values at or below this count as zero (durations of 0 ms are legal).
_MIN_POSITIVE = 1e-9
# Values outside this range count in its edge buckets (collapsed, as DDSketch's bounded
# stores do), so that one absurd value (1e300 is a finite, valid duration) cannot make a
# dense list of tens of thousands of buckets: at 1 % accuracy, at most ~1,500 buckets.
# In milliseconds: 1 microsecond to about 115 days.
TRACKED_RANGE = (1e-3, 1e10)
_log, _ceil = math.log, math.ceil  # DDSketch.add runs once per value: no attribute lookups
_KEY_LIMITS: dict[float, tuple[int, int]] = {}


def _key_limits(relative_accuracy: float) -> tuple[int, int]:
    limits = _KEY_LIMITS.get(relative_accuracy)
    if limits is None:
        gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        low, high = (math.ceil(math.log(v) / math.log(gamma)) for v in TRACKED_RANGE)
        limits = _KEY_LIMITS[relative_accuracy] = (low, high)
    return limits


class DDSketch:
    """Counts per bucket in a dense list from bucket `offset` on (empty: no list).

    Dense rather than a dict: merging is one C-level `map(add, ...)` over a slice, the
    serialized form is a flat list of ints (cheap to encode and decode in every window
    partial and checkpoint), and quantiles need no sort. Load times span a few hundred
    buckets at 1 % accuracy, so the list stays short.
    """

    __slots__ = (
        "_inv_log_gamma",
        "_log_gamma",
        "count",
        "counts",
        "offset",
        "relative_accuracy",
        "zero_count",
    )

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.relative_accuracy = relative_accuracy
        gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(gamma)
        self._inv_log_gamma = 1.0 / self._log_gamma
        self.counts: list[int] = []  # counts[i] is bucket offset + i; no zero at either end
        self.offset = 0
        self.zero_count = 0
        self.count = 0

    @property
    def bins(self) -> dict[int, int]:
        """Non-empty buckets: bucket -> count."""
        return {self.offset + i: n for i, n in enumerate(self.counts) if n}

    def add(self, value: float) -> None:
        self.count += 1
        if value <= _MIN_POSITIVE:
            self.zero_count += 1
            return
        key = _ceil(_log(value) * self._inv_log_gamma)
        i = key - self.offset
        counts = self.counts
        if 0 <= i < len(counts):
            counts[i] += 1
        else:
            self._add_outside(key, 1)

    def _add_outside(self, key: int, n: int) -> None:
        """Count `n` in bucket `key` (clamped to the tracked range), growing the list."""
        low, high = _key_limits(self.relative_accuracy)
        key = min(max(key, low), high)
        self._cover(key, key)
        self.counts[key - self.offset] += n

    def add_many(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def _cover(self, low: int, high: int) -> None:
        """Extend the list (with zeros) so that buckets low..high have a slot."""
        counts = self.counts
        if not counts:
            self.offset = low
            self.counts = [0] * (high - low + 1)
            return
        if low < self.offset:
            counts[:0] = [0] * (self.offset - low)
            self.offset = low
        top = self.offset + len(counts) - 1
        if high > top:
            counts.extend([0] * (high - top))

    def merge(self, other: DDSketch) -> None:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        self.zero_count += other.zero_count
        self.count += other.count
        theirs = other.counts
        if not theirs:
            return
        if not self.counts:
            self.counts = theirs.copy()
            self.offset = other.offset
            return
        self._cover(other.offset, other.offset + len(theirs) - 1)
        i = other.offset - self.offset
        j = i + len(theirs)
        self.counts[i:j] = map(add, self.counts[i:j], theirs)

    def quantile(self, q: float) -> float | None:
        """Value at rank floor(q*(n-1)); None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """`quantile` of each q, in one pass over the buckets (qs in any order)."""
        if any(not 0 <= q <= 1 for q in qs):
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return [None] * len(qs)
        cumulative = list(accumulate(self.counts, initial=self.zero_count))
        out: list[float | None] = []
        for q in qs:
            rank = math.floor(q * (self.count - 1))
            # cumulative[k] = values below bucket offset + k (zeros included)
            k = bisect_right(cumulative, rank)
            out.append(0.0 if k == 0 else self._value_of(self.offset + k - 1))
        return out

    def _value_of(self, key: int) -> float:
        gamma = math.exp(self._log_gamma)
        return 2.0 * math.exp(key * self._log_gamma) / (gamma + 1.0)

    def copy(self) -> DDSketch:
        clone = DDSketch(self.relative_accuracy)
        clone.counts = self.counts.copy()
        clone.offset = self.offset
        clone.zero_count = self.zero_count
        clone.count = self.count
        return clone

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.relative_accuracy,
            "z": self.zero_count,
            "o": self.offset,
            "c": self.counts.copy(),  # a snapshot: the sketch may go on counting
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DDSketch:
        sketch = cls(float(data["a"]))
        sketch.zero_count = int(data["z"])
        if "c" in data:
            sketch.counts = [int(n) for n in data["c"]]
            sketch.offset = int(data["o"])
        else:  # the sparse form of 0.4.0: [[bucket, count], ...]
            for key, n in sorted((int(k), int(n)) for k, n in data["b"]):
                sketch._add_outside(key, n)
        sketch.count = sketch.zero_count + sum(sketch.counts)
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
