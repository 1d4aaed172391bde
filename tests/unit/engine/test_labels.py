"""Label bounds: the ranking of a view's values and the fold of the rest into `other`."""

from typing import Any

import pytest

from expmon.engine.labels import OTHER, LabelDimension, LabelLimiter, fold_labels, top_values


class Count:
    def __init__(self, n: int = 0) -> None:
        self.n = n

    def merge(self, other: "Count") -> None:
        self.n += other.n


def weight(acc: Count) -> float:
    return acc.n


@pytest.mark.parametrize(
    ("weights", "limit", "want"),
    [
        ({"a": 3, "b": 2, "c": 1}, 2, {"a", "b"}),
        ({"b": 2, "a": 2, "c": 2}, 2, {"a", "b"}),  # equal weights: by name
        ({"z": 5, "a": 1, "m": 1}, 2, {"z", "a"}),
        ({"a": 1}, 3, {"a"}),
        ({}, 2, set()),
    ],
)
def test_top_values_by_weight_then_name(
    weights: dict[str, float], limit: int, want: set[str]
) -> None:
    assert top_values(weights, limit) == want


PAGES: LabelDimension[Count] = LabelDimension({None: 0}, 2, weight)
REGIONS: LabelDimension[Count] = LabelDimension({None: 1}, 1, weight)
CARRIER: LabelDimension[Count] = LabelDimension({"sla": 2, "delivery": 1}, 1, weight)
WAREHOUSE: LabelDimension[Count] = LabelDimension({"sla": 1}, 1, weight)


@pytest.mark.parametrize(
    ("accs", "dims", "exempt", "want"),
    [
        (  # the third page is folded; the region limit folds r2
            {("/a", "r1"): 5, ("/b", "r1"): 3, ("/c", "r2"): 2, ("/a", "r2"): 1},
            [PAGES, REGIONS],
            frozenset(),
            {("/a", "r1"): 5, ("/b", "r1"): 3, (OTHER, OTHER): 2, ("/a", OTHER): 1},
        ),
        (  # weights are summed over keys: /c (2 + 2) beats /b (3)
            {("/a", "r1"): 5, ("/b", "r1"): 3, ("/c", "r1"): 2, ("/c", "r2"): 2},
            [PAGES],
            frozenset(),
            {("/a", "r1"): 5, (OTHER, "r1"): 3, ("/c", "r1"): 2, ("/c", "r2"): 2},
        ),
        (  # an exempt value (a total) is kept and does not take a place
            {("/a", "all"): 9, ("/a", "r1"): 1, ("/a", "r2"): 2},
            [REGIONS],
            frozenset({"all"}),
            {("/a", "all"): 9, ("/a", OTHER): 1, ("/a", "r2"): 2},
        ),
        (  # one carrier set across spaces: ups (4 + 1) beats dhl (3)
            {
                ("sla", "ams", "ups"): 4,
                ("sla", "ber", "dhl"): 3,
                ("delivery", "ups"): 1,
                ("delivery", "dhl"): 0,
                ("tracking", "dhl"): 7,
            },
            [CARRIER, WAREHOUSE],
            frozenset(),
            {
                ("sla", "ams", "ups"): 4,
                ("sla", OTHER, OTHER): 3,
                ("delivery", "ups"): 1,
                ("delivery", OTHER): 0,
                ("tracking", "dhl"): 7,  # not a place of the dimension
            },
        ),
        (  # values that fold into an existing `other` key merge with it
            {("/a", "r"): 1, ("/b", "r"): 1, ("/c", "r"): 1, (OTHER, "r"): 1},
            [PAGES],
            frozenset(),
            {("/a", "r"): 1, ("/b", "r"): 1, (OTHER, "r"): 2},
        ),
    ],
)
def test_fold_labels(
    accs: dict[tuple[str, ...], int],
    dims: list[LabelDimension[Count]],
    exempt: frozenset[str],
    want: dict[tuple[str, ...], int],
) -> None:
    given = {key: Count(n) for key, n in accs.items()}
    folded = fold_labels(given, dims, Count, exempt)
    assert {key: acc.n for key, acc in folded.items()} == want
    assert {key: acc.n for key, acc in given.items()} == accs  # the input is left as it was


def test_fold_labels_within_the_limits_returns_the_view_itself() -> None:
    given: dict[tuple[str, ...], Any] = {("/a", "r1"): Count(1), ("/b", "r1"): Count(2)}
    assert fold_labels(given, [PAGES, REGIONS], Count) is given


def test_fold_labels_does_not_depend_on_the_order_of_keys() -> None:
    items = [((f"/p{i % 7}", f"r{i % 3}"), i % 5) for i in range(40)]
    merged: dict[tuple[str, ...], int] = {}
    for key, n in items:
        merged[key] = merged.get(key, 0) + n
    forward = fold_labels({k: Count(n) for k, n in merged.items()}, [PAGES, REGIONS], Count)
    backward = fold_labels(
        {k: Count(n) for k, n in reversed(merged.items())}, [PAGES, REGIONS], Count
    )
    assert {k: a.n for k, a in forward.items()} == {k: a.n for k, a in backward.items()}


@pytest.mark.parametrize(
    ("always", "values", "want"),
    [
        ((), ["a", "b", "c", "a"], ["a", "b", OTHER, "a"]),
        (("c",), ["a", "b", "c", "d"], ["a", "b", "c", OTHER]),
    ],
)
def test_label_limiter_admits_the_first_values(
    always: tuple[str, ...], values: list[str], want: list[str]
) -> None:
    limiter = LabelLimiter(2, always)
    assert [limiter(v) for v in values] == want
