"""Ground truth: hand-computed windows, quantile ranks, slow ratio, apdex, rolling views."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from expmon.sim.truth.base import dedupe, read_truth, write_truth
from expmon.sim.truth.page_load import index_rows, page_load_truth, window_stats
from schemas.eventtime import format_ms

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z, a multiple of 60 000
MIN = 60_000
_ids = itertools.count()


def load(
    t_ms: int,
    load_ms: float,
    *,
    page: str = "/",
    device: str = "mobile",
    region: str = "eu-west",
    event_id: str | None = None,
    as_string: bool = False,
) -> dict[str, Any]:
    return {
        "event_id": event_id or f"e{next(_ids)}",
        "occurred_at": format_ms(t_ms) if as_string else t_ms,
        "schema_version": 1,
        "session_id": "s1",
        "device": device,
        "platform": "web",
        "region": region,
        "page": page,
        "load_ms": load_ms,
    }


@pytest.mark.parametrize(
    ("values", "p50", "p75", "p95", "p99"),
    [
        ([42], 42, 42, 42, 42),
        ([20, 10], 10, 10, 10, 10),  # ranks floor(q * 1) = 0 for every q < 1
        ([100 * i for i in range(1, 11)], 500, 700, 900, 900),  # ranks 4, 6, 8, 8 of 10
        (list(range(1, 101)), 50, 75, 95, 99),  # ranks 49, 74, 94, 98 of 100
        ([300, 100, 200, 400], 200, 300, 300, 300),  # ranks 1, 2, 2, 2 of 4
        ([0, 0, 0, 5000], 0, 0, 0, 0),  # ranks 1, 2, 2, 2: zeros are legal durations
    ],
)
def test_quantile_ranks(
    values: list[float], p50: float, p75: float, p95: float, p99: float
) -> None:
    rows = page_load_truth([load(T0 + i, v) for i, v in enumerate(values)], views=(("1m", 1),))
    row = index_rows(rows)[("1m", T0 + MIN, "/", "mobile", "eu-west")]
    assert (row["p50"], row["p75"], row["p95"], row["p99"]) == (p50, p75, p95, p99)
    assert row["count"] == len(values)


@pytest.mark.parametrize(
    ("values", "slow_ratio"),
    [
        ([3000, 3001, 100, 5000], 0.5),  # exactly 3000 is not slow
        ([100, 200], 0.0),
        ([3000.5], 1.0),
        ([2999, 3000, 3000, 3001, 9000], 0.4),
    ],
)
def test_slow_ratio(values: list[float], slow_ratio: float) -> None:
    (row,) = page_load_truth([load(T0, v) for v in values], views=(("1m", 1),))[:1]
    assert row["slow_ratio"] == pytest.approx(slow_ratio)


@pytest.mark.parametrize(
    ("values", "apdex"),
    [
        ([2500, 2501, 10000, 10001], 0.5),  # satisfied, tolerating, tolerating (= 4T), frustrated
        ([1, 2, 3], 1.0),
        ([20000, 30000], 0.0),
        ([2600, 2600], 0.5),
        ([100, 100, 100, 5000, 50000], 0.7),  # (3 + 1/2) / 5
    ],
)
def test_apdex(values: list[float], apdex: float) -> None:
    rows = page_load_truth([load(T0, v) for v in values], views=(("1m", 1),), apdex_t_ms=2500)
    assert rows[0]["apdex"] == pytest.approx(apdex)


def test_apdex_and_slow_threshold_are_parameters() -> None:
    rows = page_load_truth(
        [load(T0, v) for v in (500, 1000, 1500, 5000)],
        views=(("1m", 1),),
        slow_threshold_ms=1000,
        apdex_t_ms=1000,
    )
    assert rows[0]["slow_ratio"] == 0.5
    assert rows[0]["apdex"] == pytest.approx((2 + 1 / 2) / 4)


# Loads at minutes 0, 1, 4, 5 -> the 5 m view at each end minute E covers [E - 5, E).
ROLLING_5M = [
    # end minute, count, p50, values it covers
    (1, 1, 100),
    (2, 2, 100),
    (3, 2, 100),
    (4, 2, 100),
    (5, 3, 200),
    (6, 3, 400),
    (7, 2, 400),
    (8, 2, 400),
    (9, 2, 400),
    (10, 1, 500),
]


def _rolling_events() -> list[dict[str, Any]]:
    return [
        load(T0 + 10_000, 100),
        load(T0 + MIN + 59_999, 200, as_string=True),
        load(T0 + 4 * MIN, 400),
        load(T0 + 5 * MIN + 30_000, 500, as_string=True),
    ]


@pytest.mark.parametrize(("end_minute", "count", "p50"), ROLLING_5M)
def test_rolling_5m_is_assembled_from_1m_windows(end_minute: int, count: int, p50: float) -> None:
    rows = page_load_truth(_rolling_events(), views=(("1m", 1), ("5m", 5)))
    row = index_rows(rows)[("5m", T0 + end_minute * MIN, "/", "mobile", "eu-west")]
    assert row["start_ms"] == T0 + (end_minute - 5) * MIN
    assert (row["count"], row["p50"]) == (count, p50)


def test_rolling_rows_exist_only_where_the_range_holds_events() -> None:
    rows = page_load_truth(_rolling_events(), views=(("1m", 1), ("5m", 5)))
    ends_5m = [r["end_ms"] for r in rows if r["view"] == "5m" and r["region"] == "eu-west"]
    assert ends_5m == [T0 + m * MIN for m, _c, _p in ROLLING_5M]
    ends_1m = [r["end_ms"] for r in rows if r["view"] == "1m" and r["region"] == "eu-west"]
    assert ends_1m == [T0 + m * MIN for m in (1, 2, 5, 6)]
    # 1 m rows come first (views order), then by end.
    assert [r["view"] for r in rows] == sorted((r["view"] for r in rows), key=["1m", "5m"].index)


def test_window_boundaries_are_half_open() -> None:
    rows = page_load_truth(
        [load(T0 + MIN - 1, 1), load(T0 + MIN, 2), load(T0 + 2 * MIN - 1, 3)], views=(("1m", 1),)
    )
    table = index_rows(rows)
    assert table[("1m", T0 + MIN, "/", "mobile", "eu-west")]["count"] == 1
    assert table[("1m", T0 + 2 * MIN, "/", "mobile", "eu-west")]["count"] == 2


def test_region_all_merges_regions_per_page_and_device() -> None:
    events = [
        load(T0, 100, region="eu-west"),
        load(T0, 300, region="eu-west"),
        load(T0, 200, region="us-east"),
        load(T0, 5000, region="us-east", device="desktop"),
        load(T0, 7000, region="us-east", page="/cart"),
    ]
    table = index_rows(page_load_truth(events, views=(("1m", 1),)))
    end = T0 + MIN
    merged = table[("1m", end, "/", "mobile", "all")]
    assert (merged["count"], merged["p50"], merged["p99"]) == (3, 200, 200)
    assert merged["mean_ms"] == 200
    assert table[("1m", end, "/", "mobile", "eu-west")]["count"] == 2
    assert table[("1m", end, "/", "mobile", "us-east")]["count"] == 1
    assert table[("1m", end, "/", "desktop", "all")]["p50"] == 5000
    assert table[("1m", end, "/cart", "mobile", "all")]["slow_ratio"] == 1.0
    assert len(table) == 3 + 2 + 2  # (/,mobile) x {eu-west, us-east, all}, desktop x2, cart x2


def test_duplicates_are_counted_once_first_wins() -> None:
    events = [load(T0, 100, event_id="dup"), load(T0, 9000, event_id="dup"), load(T0, 200)]
    assert [e["load_ms"] for e in dedupe(events)] == [100, 200]
    (row,) = [r for r in page_load_truth(events, views=(("1m", 1),)) if r["region"] == "all"]
    assert (row["count"], row["slow_ratio"]) == (2, 0.0)


def test_default_views_and_row_format() -> None:
    rows = page_load_truth([load(T0, 1000)])
    views = {r["view"] for r in rows}
    assert views == {"1m", "5m", "15m", "1h"}
    assert sum(1 for r in rows if r["view"] == "1h" and r["region"] == "all") == 60
    assert set(rows[0]) == {
        "view",
        "start_ms",
        "end_ms",
        "page",
        "device",
        "region",
        "count",
        "p50",
        "p75",
        "p95",
        "p99",
        "slow_ratio",
        "apdex",
        "mean_ms",
    }
    assert all(isinstance(rows[0][q], float) for q in ("p50", "p75", "p95", "p99"))


def test_empty_input_and_bad_arguments() -> None:
    assert page_load_truth([]) == []
    with pytest.raises(ValueError):
        window_stats([], 3000, 2500)
    with pytest.raises(ValueError):
        page_load_truth([load(T0, 1)], views=(("0m", 0),))
    with pytest.raises(ValueError):
        page_load_truth([load(T0, 1)], window_ms=0)


def test_write_read_roundtrip(tmp_path: Path) -> None:
    rows = page_load_truth(_rolling_events())
    path = tmp_path / "sub" / "truth.json"
    write_truth(path, rows)
    assert read_truth(path) == rows
    (tmp_path / "other.json").write_bytes(b'{"rows": []}')
    with pytest.raises(ValueError, match="not an expmon truth file"):
        read_truth(tmp_path / "other.json")
