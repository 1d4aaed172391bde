"""Offset bookkeeping of the bulk input path (pure: no Kafka, no faust).

faust commits what its per-message acks make consecutive; the bulk path acks nothing and
instead remembers, per input partition, the offset after the last record a stage applied
(its checkpoint is in the changelogged table by then), which is what faust commits.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Protocol, TypeVar


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=HasOffset)


def unread(records: Sequence[R], read_offset: int | None) -> Sequence[R]:
    """The records at or after the read offset (faust's rule: a seek moves it back, and
    records fetched before a seek below it are dropped)."""
    if read_offset is None or not records or records[0].offset >= read_offset:
        return records
    return [r for r in records if r.offset >= read_offset]


class BulkOffsets:
    """Next offset to commit per partition, for the partitions the bulk path applied."""

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}

    def applied(self, tp: Hashable, last_offset: int) -> None:
        self._next[tp] = max(self._next.get(tp, 0), last_offset + 1)

    def next_offset(self, tp: Hashable) -> int | None:
        return self._next.get(tp)

    def forget(self, tps: Iterable[Hashable]) -> None:
        """A revoked partition's next owner starts from the committed offset."""
        for tp in tps:
            self._next.pop(tp, None)
