"""Offset bookkeeping of the bulk input path (streams.bulk)."""

from dataclasses import dataclass

import pytest

from streams.bulk import BulkOffsets, unread


@dataclass(frozen=True)
class Rec:
    offset: int


@pytest.mark.parametrize(
    ("offsets", "read_offset", "expected"),
    [
        ([5, 6, 7], None, [5, 6, 7]),  # nothing read yet
        ([5, 6, 7], 5, [5, 6, 7]),  # a seek to 5: 5 is read again
        ([5, 6, 7], 6, [6, 7]),  # fetched before a seek: below it dropped
        ([5, 6, 7], 8, []),  # all below
        ([], 3, []),
    ],
)
def test_unread_keeps_records_at_or_after_the_read_offset(
    offsets: list[int], read_offset: int | None, expected: list[int]
) -> None:
    assert [r.offset for r in unread([Rec(o) for o in offsets], read_offset)] == expected


@pytest.mark.parametrize(
    ("batches", "expected"),
    [
        ([], None),  # nothing applied: faust's own logic (nothing to commit)
        ([9], 10),  # commit the offset after the last applied record
        ([9, 19, 29], 30),
        ([29, 19], 30),  # a redelivered older batch never moves the commit back
    ],
)
def test_next_offset_is_one_past_the_highest_applied(
    batches: list[int], expected: int | None
) -> None:
    offsets = BulkOffsets()
    for last in batches:
        offsets.applied(("pl", 0), last)
    assert offsets.next_offset(("pl", 0)) == expected


def test_partitions_are_independent_and_forgotten_on_revocation() -> None:
    offsets = BulkOffsets()
    offsets.applied(("pl", 0), 9)
    offsets.applied(("pl", 1), 99)
    offsets.forget([("pl", 0)])
    assert offsets.next_offset(("pl", 0)) is None
    assert offsets.next_offset(("pl", 1)) == 100
