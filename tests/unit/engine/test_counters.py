"""Counter accumulators: the label bound of counter names and its per-view fold."""

import pytest

from expmon.engine.counters import CounterAccumulator, capped_name, fold_counter_names

P = "reason:"


@pytest.mark.parametrize(
    ("counts", "value", "cap", "want"),
    [
        ({}, "x", 2, "reason:x"),
        ({"reason:a": 1, "attempts": 5}, "x", 2, "reason:x"),  # other counters do not count
        ({"reason:a": 1, "reason:b": 1}, "x", 2, "reason:other"),
        ({"reason:a": 1, "reason:b": 1}, "b", 2, "reason:b"),  # already there
    ],
)
def test_capped_name(counts: dict[str, int], value: str, cap: int, want: str) -> None:
    assert capped_name(CounterAccumulator(dict(counts)), P, value, cap) == want


@pytest.mark.parametrize(
    ("accs", "limit", "want"),
    [
        (  # view-wide weights: b (2 + 2) and a (3) stay, c folds
            {
                ("k1",): {"reason:a": 3, "reason:b": 2, "failures": 5},
                ("k2",): {"reason:b": 2, "reason:c": 1, "failures": 3},
            },
            2,
            {
                ("k1",): {"reason:a": 3, "reason:b": 2, "failures": 5},
                ("k2",): {"reason:b": 2, "reason:other": 1, "failures": 3},
            },
        ),
        (  # ties by name; an existing `other` counter takes the folded ones
            {("k",): {"reason:b": 1, "reason:a": 1, "reason:other": 4}},
            2,
            {("k",): {"reason:a": 1, "reason:other": 5}},
        ),
        ({("k",): {"reason:a": 1}}, 1, {("k",): {"reason:a": 1}}),
    ],
)
def test_fold_counter_names(
    accs: dict[tuple[str, ...], dict[str, int]],
    limit: int,
    want: dict[tuple[str, ...], dict[str, int]],
) -> None:
    given = {key: CounterAccumulator(dict(counts), ["e1"]) for key, counts in accs.items()}
    folded = fold_counter_names(given, P, limit)
    assert {key: acc.counts for key, acc in folded.items()} == want
    assert all(acc.samples == ["e1"] for acc in folded.values())  # evidence kept
    assert {key: acc.counts for key, acc in given.items()} == accs  # input unchanged
