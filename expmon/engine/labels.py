"""Bounded label values: the first N distinct values of a label are kept, the rest is `other`."""

from __future__ import annotations

OTHER = "other"


class LabelLimiter:
    """Admits up to `max_values` distinct values (and any given in `always`); the rest is `other`.

    Which values are admitted depends on arrival order once more than `max_values` appear;
    list the values you care about in `always` to make that independent of order.
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
