import random

import pytest

from expmon.engine.sketch import TRACKED_RANGE, DDSketch, exact_quantile

QS = (0.0, 0.5, 0.75, 0.95, 0.99, 1.0)


def _values(kind: str, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    if kind == "lognormal":
        return [rng.lognormvariate(7, 0.8) for _ in range(n)]
    if kind == "uniform":
        return [rng.uniform(1, 30_000) for _ in range(n)]
    if kind == "bimodal":
        return [
            rng.gauss(300, 30) if rng.random() < 0.7 else rng.gauss(6000, 500) for _ in range(n)
        ]
    if kind == "with_zeros":
        return [0.0 if rng.random() < 0.2 else rng.expovariate(1 / 800) for _ in range(n)]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["lognormal", "uniform", "bimodal", "with_zeros"])
@pytest.mark.parametrize("n", [1, 7, 1000, 50_000])
def test_quantiles_within_one_percent_of_exact(kind: str, n: int) -> None:
    values = [abs(v) for v in _values(kind, n, seed=n)]
    sketch = DDSketch()
    sketch.add_many(values)
    ordered = sorted(values)
    for q in QS:
        exact = exact_quantile(ordered, q)
        got = sketch.quantile(q)
        assert got is not None
        if exact == 0:
            assert got == 0
        else:
            assert abs(got - exact) / exact <= 0.01, (q, got, exact)


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_merge_in_any_split_equals_one_sketch(parts: int) -> None:
    values = _values("lognormal", 10_000, seed=3)
    whole = DDSketch()
    whole.add_many(values)
    pieces = [DDSketch() for _ in range(parts)]
    for i, v in enumerate(values):
        pieces[i % parts].add(v)
    merged = DDSketch()
    for piece in reversed(pieces):
        merged.merge(piece)
    assert merged == whole
    assert merged.quantiles([0.5, 0.99]) == whole.quantiles([0.5, 0.99])


def test_round_trip_and_empty() -> None:
    sketch = DDSketch()
    assert sketch.quantile(0.5) is None
    sketch.add_many([0, 5, 10, 2000])
    clone = DDSketch.from_dict(sketch.to_dict())
    assert clone == sketch and clone.count == 4


@pytest.mark.parametrize("bad", [-0.1, 1.1])
def test_quantile_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError):
        DDSketch().quantile(bad)


def test_different_accuracy_does_not_merge() -> None:
    with pytest.raises(ValueError):
        DDSketch(0.01).merge(DDSketch(0.02))


@pytest.mark.parametrize("kind", ["lognormal", "bimodal", "with_zeros"])
@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_quantiles_in_one_pass_equal_quantile_each(kind: str, n: int) -> None:
    sketch = DDSketch()
    sketch.add_many(abs(v) for v in _values(kind, n, seed=11))
    qs = [0.99, 0.0, 0.5, 1.0, 0.5, 0.2, 0.95]  # unsorted, with a repeat
    assert sketch.quantiles(qs) == [sketch.quantile(q) for q in qs]


def test_quantiles_reject_out_of_range() -> None:
    with pytest.raises(ValueError):
        DDSketch().quantiles([0.5, 1.5])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ([5.0, 6.0], [5000.0, 9000.0]),  # the other lies above
        ([5000.0, 9000.0], [5.0, 6.0]),  # below
        ([50.0, 60_000.0], [700.0]),  # inside
        ([], [3.0, 0.0]),  # into an empty sketch
        ([3.0, 0.0], []),  # an empty one in
    ],
)
def test_merge_covers_either_range_and_keeps_no_empty_ends(
    first: list[float], second: list[float]
) -> None:
    a, b, whole = DDSketch(), DDSketch(), DDSketch()
    a.add_many(first)
    b.add_many(second)
    whole.add_many(first + second)
    a.merge(b)
    assert a == whole and a.count == whole.count
    assert a.counts == whole.counts and a.offset == whole.offset
    if a.counts:
        assert a.counts[0] and a.counts[-1]


def test_serialized_form_is_a_snapshot_and_reads_the_sparse_form() -> None:
    sketch = DDSketch()
    sketch.add_many([0.0, 12.5, 12.6, 800.0])
    data = sketch.to_dict()
    sketch.add(900.0)
    assert DDSketch.from_dict(data).count == 4
    sparse = {"a": 0.01, "z": 1, "b": [[k, n] for k, n in DDSketch.from_dict(data).bins.items()]}
    assert DDSketch.from_dict(sparse) == DDSketch.from_dict(data)


def test_absurd_values_collapse_into_the_edge_buckets() -> None:
    sketch = DDSketch()
    sketch.add_many([1e-7, 250.0, 1e300, 1e300])
    assert len(sketch.counts) < 1600 and sketch.count == 4
    low, high = TRACKED_RANGE
    assert sketch.quantile(0.0) == pytest.approx(low, rel=0.01)
    assert sketch.quantile(1.0) == pytest.approx(high, rel=0.01)
    assert sketch.quantiles([0.34, 0.5]) == [pytest.approx(250.0, rel=0.01)] * 2
