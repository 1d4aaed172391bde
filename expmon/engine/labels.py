"""Bounded label values.

Window figures (every family's rows and the gauges built from them) are bounded in two
deterministic steps, so every worker layout, a restart and a replay label a view alike:

1. At the stage, per window and per partition (`PartitionWindows.label`): a value keeps
   its own key while the window has fewer than `LABEL_HEADROOM` x N distinct values at
   that place, or already has it; the rest goes to `other`. This only bounds state: below
   the cap (the usual case) nothing is folded here.
2. At the merge stage, per view (`fold_labels`): the N values of largest weight (ties by
   name) keep their label, the rest are merged into `other`. A function of the view's
   merged figures only.

`LabelLimiter` (first come, per process, in memory) is left for what is not windowed and
never merged: the process-wide cumulative counters and the load-time histogram, which
Prometheus sums over workers and which a restart starts from zero anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

OTHER = "other"
LABEL_HEADROOM = 4  # a partition keeps up to 4 N values per window; a view shows the top N


class LabelLimiter:
    """Admits up to `max_values` distinct values (and any given in `always`); the rest is `other`.

    Which values are admitted depends on arrival order once more than `max_values` appear,
    per process: use it only for process-wide figures (see the module docstring).
    """

    def __init__(self, max_values: int, always: tuple[str, ...] = ()) -> None:
        self.max_values = max_values
        self._admitted: set[str] = set(always)
        self._free = max_values

    def __call__(self, value: str) -> str:
        if value in self._admitted:
            return value
        if self._free > 0:
            self._free -= 1
            self._admitted.add(value)
            return value
        return OTHER

    @property
    def admitted(self) -> frozenset[str]:
        return frozenset(self._admitted)


def top_values(weights: Mapping[str, float], limit: int) -> set[str]:
    """The `limit` values of largest weight; equal weights by name (the smaller first)."""
    ranked = sorted(weights, key=lambda value: (-weights[value], value))
    return set(ranked[:limit])


class Mergeable(Protocol):
    def merge(self, other: Self) -> None: ...


M = TypeVar("M", bound=Mergeable)


@dataclass(frozen=True, slots=True)
class LabelDimension(Generic[M]):
    """One bounded label of a family's window keys.

    `positions` maps a key's space (its first element) to where the value sits in keys
    of that space; `None` stands for every key (families without spaces). One dimension
    may span several spaces (a carrier in SLA, delivery and tracking keys): the view then
    keeps one set of carriers for all of them.
    """

    positions: Mapping[str | None, int]
    limit: int
    weight: Callable[[M], float]

    def position(self, key: tuple[str, ...]) -> int | None:
        positions = self.positions
        found = positions.get(key[0]) if key else None
        return positions.get(None) if found is None else found


def _weights(
    accumulators: Mapping[tuple[str, ...], M], dimension: LabelDimension[M], exempt: frozenset[str]
) -> dict[str, float]:
    weights: dict[str, float] = {}
    for key, acc in accumulators.items():
        position = dimension.position(key)
        if position is None or position >= len(key) or key[position] in exempt:
            continue
        value = key[position]
        weights[value] = weights.get(value, 0) + dimension.weight(acc)
    return weights


def fold_labels(
    accumulators: dict[tuple[str, ...], M],
    dimensions: Iterable[LabelDimension[M]],
    new_accumulator: Callable[[], M],
    exempt: frozenset[str] = frozenset(),
) -> dict[tuple[str, ...], M]:
    """Values beyond each dimension's top `limit` in this view merged into `other`.

    `exempt` values (a family's `all` totals) are neither ranked nor folded. The input is
    not changed; keys that fold together are merged into new accumulators.
    """
    kept: list[tuple[LabelDimension[M], set[str]]] = [
        (dim, top_values(_weights(accumulators, dim, exempt), dim.limit) | exempt)
        for dim in dimensions
    ]

    def folded_key(key: tuple[str, ...]) -> tuple[str, ...]:
        out = list(key)
        for dim, values in kept:
            position = dim.position(key)
            if position is not None and position < len(key) and key[position] not in values:
                out[position] = OTHER
        return tuple(out)

    new_keys = {key: folded_key(key) for key in accumulators}
    if all(key == new for key, new in new_keys.items()):
        return accumulators
    folded: dict[tuple[str, ...], M] = {}
    for key, acc in accumulators.items():
        new = new_keys[key]
        into = folded.get(new)
        if into is None:
            into = folded[new] = new_accumulator()
        into.merge(acc)
    return folded
