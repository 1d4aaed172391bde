"""Checkout ground truth: the definitions on hand-made tables, views, closing, shapes."""

from collections import Counter
from typing import Any

import pytest

from expmon.sim.truth.checkout import Lifecycle, checkout_truth, index_rows, lifecycles
from schemas.eventtime import format_ms
from tests.unit.families.test_checkout import ABANDON_S, CASES, T0, cev, expected_counts

ONE_MINUTE = (("1m", 1),)


def case_events(steps: list[tuple[int, str]]) -> list[dict[str, Any]]:
    return [cev(i, "c1", step, T0 + s * 1000) for i, (s, step) in enumerate(steps)]


def funnel_counts(rows: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    """(counter, window start in seconds after T0) from 1m rows of the mobile group."""
    out: Counter[tuple[str, int]] = Counter()
    for row in rows:
        if row["view"] != "1m" or row.get("device") != "mobile":
            continue
        start = (row["start_ms"] - T0) // 1000
        if row["kind"] == "dropoff":
            # each step's count appears as a from_count, and order_placed as the last to_count
            if row["from_count"]:
                out[(f"step:{row['from_step']}", start)] += row["from_count"]
            if row["to_step"] == "order_placed" and row["to_count"]:
                out[("step:order_placed", start)] += row["to_count"]
        elif row["kind"] == "conversion":
            for step, n in row["abandoned"].items():
                out[(f"abandoned:{step}", start)] += n
    return out


def funnel_only(expected: Counter[tuple[str, int]]) -> Counter[tuple[str, int]]:
    """Drop the steps outside the main funnel (rows show only the main funnel's steps)."""
    hidden = ("step:payment_succeeded", "step:payment_failed")
    return Counter({k: n for k, n in expected.items() if k[0] not in hidden})


@pytest.mark.parametrize("case", list(CASES))
def test_definitions_on_the_stage_tables(case: str) -> None:
    steps, expected = CASES[case]
    rows = checkout_truth(case_events(steps), views=ONE_MINUTE, abandon_ms=ABANDON_S * 1000)
    assert funnel_counts(rows) == funnel_only(expected_counts(expected))


@pytest.mark.parametrize(
    ("steps", "want"),
    [
        (
            [(10, "checkout_started"), (5, "cart_viewed"), (25, "shipping_selected")],
            [(5, 25, "shipping_selected", False)],
        ),
        (
            [(30, "payment_succeeded"), (30, "payment_submitted")],
            [(30, 30, "payment_succeeded", False)],
        ),
        (
            [(0, "cart_viewed"), (ABANDON_S, "cart_viewed"), (ABANDON_S + 1, "order_placed")],
            [(0, 0, "cart_viewed", False), (ABANDON_S, ABANDON_S + 1, "order_placed", True)],
        ),
        (
            [(33, "order_placed"), (32, "payment_succeeded")],
            [(32, 33, "order_placed", True)],
        ),
    ],
)
def test_lifecycles(steps: list[tuple[int, str]], want: list[tuple[int, int, str, bool]]) -> None:
    got = lifecycles(case_events(steps), abandon_ms=ABANDON_S * 1000)
    assert got == [
        Lifecycle("c1", T0 + a * 1000, T0 + b * 1000, step, ordered, T0 + (b + ABANDON_S) * 1000)
        for a, b, step, ordered in want
    ]
    assert [lc.abandoned for lc in got] == [not w[3] for w in want]


def test_rows_shapes_ratios_and_order() -> None:
    events = [
        cev(1, "c1", "cart_viewed", T0),
        cev(2, "c1", "checkout_started", T0 + 1000),
        cev(3, "c1", "shipping_selected", T0 + 2000),
        cev(4, "c1", "payment_submitted", T0 + 3000),
        cev(5, "c1", "payment_failed", T0 + 4000, failure_reason="provider_timeout"),
        cev(6, "c1", "payment_succeeded", T0 + 5000),
        cev(7, "c1", "order_placed", T0 + 6000),
        cev(8, "c2", "cart_viewed", T0 + 7000, device="desktop", is_new_user=True),
        cev(9, "c3", "cart_viewed", T0 + 8000, channel=None),
        cev(9, "c3", "checkout_started", T0 + 9000),  # a repeated event_id: dropped
    ]
    end = T0 + 60_000
    # closed through the first minute: the abandonments of c2 and c3 (minute 10) are later
    rows = checkout_truth(
        events, views=ONE_MINUTE, abandon_ms=ABANDON_S * 1000, closed_through_ms=end
    )
    assert all(r["view"] == "1m" and r["end_ms"] == end for r in rows)
    groups = [(r["kind"], r["device"], r["channel"], r["user_type"]) for r in rows[:-2]]
    assert groups == (
        [("dropoff", "all", "all", "all")] * 4
        + [("dropoff", "desktop", "ads", "new")] * 4
        + [("dropoff", "mobile", "ads", "returning")] * 4
        + [("dropoff", "mobile", "other", "returning")] * 4
        + [
            ("conversion", "all", "all", "all"),
            ("conversion", "desktop", "ads", "new"),
            ("conversion", "mobile", "ads", "returning"),
            ("conversion", "mobile", "other", "returning"),
        ]
    )
    table = index_rows(rows)
    first = table[("1m", end, "dropoff", "all", "all", "all", "cart_viewed")]
    assert first == {
        "kind": "dropoff",
        "view": "1m",
        "start_ms": T0,
        "end_ms": end,
        "device": "all",
        "channel": "all",
        "user_type": "all",
        "from_step": "cart_viewed",
        "to_step": "checkout_started",
        "from_count": 3,
        "to_count": 1,
        "dropoff_ratio": pytest.approx(2 / 3),
    }
    conv = table[("1m", end, "conversion", "mobile", "ads", "returning", "")]
    assert conv["conversion_ratio"] == 1.0 and conv["abandoned"] == {}
    none = table[("1m", end, "dropoff", "desktop", "ads", "new", "checkout_started")]
    assert none["from_count"] == 0 and none["dropoff_ratio"] is None
    assert [(r["kind"], r["user_type"]) for r in rows[-2:]] == [
        ("payment", "all"),
        ("payment", "returning"),
    ]
    assert rows[-1] == {
        "kind": "payment",
        "view": "1m",
        "start_ms": T0,
        "end_ms": end,
        "provider": "stripe",
        "method": "card",
        "user_type": "returning",
        "attempts": 2,
        "failures": 1,
        "failure_ratio": 0.5,
        "failures_by_reason": {"provider_timeout": 1},
    }


def test_views_cover_k_windows_and_stop_at_closed_through() -> None:
    events = [cev(1, "c1", "cart_viewed", T0 + 1000)]  # abandoned at T0 + 601 s
    views = (("1m", 1), ("5m", 5))
    rows = checkout_truth(events, views=views, abandon_ms=ABANDON_S * 1000)
    ends = sorted({(r["view"], (r["end_ms"] - T0) // 60_000) for r in rows})
    # the step in window 0; the abandonment in window 10 (T0 + 601 s)
    assert ends == [("1m", 1), ("1m", 11)] + [("5m", e) for e in (*range(1, 6), *range(11, 16))]
    # The processor closed through minute 11 only: 5m views ending later are not there yet.
    closed = checkout_truth(
        events, views=views, abandon_ms=ABANDON_S * 1000, closed_through_ms=T0 + 11 * 60_000
    )
    assert sorted({(r["view"], (r["end_ms"] - T0) // 60_000) for r in closed}) == [
        ("1m", 1),
        ("1m", 11),
        *[("5m", e) for e in (*range(1, 6), 11)],
    ]
    # Closed before the deadline: no abandonment at all.
    early = checkout_truth(
        events, views=views, abandon_ms=ABANDON_S * 1000, closed_through_ms=T0 + 10 * 60_000
    )
    assert all(not r.get("abandoned") for r in early)
    assert max(r["end_ms"] for r in early) == T0 + 5 * 60_000


def test_rfc3339_times_and_event_time_order() -> None:
    as_text = [
        cev(1, "c1", "checkout_started", format_ms(T0 + 20_000)),
        cev(2, "c1", "cart_viewed", format_ms(T0 + 10_000)),
    ]
    as_ms = [
        cev(1, "c1", "checkout_started", T0 + 20_000),
        cev(2, "c1", "cart_viewed", T0 + 10_000),
    ]
    rows = checkout_truth(as_text, abandon_ms=ABANDON_S * 1000)
    assert rows == checkout_truth(as_ms, abandon_ms=ABANDON_S * 1000)
    assert rows == checkout_truth(list(reversed(as_ms)), abandon_ms=ABANDON_S * 1000)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        checkout_truth([], window_ms=0)
    with pytest.raises(ValueError, match="abandon_ms"):
        checkout_truth([], abandon_ms=0)
    with pytest.raises(ValueError, match="at least one"):
        checkout_truth([], views=(("0m", 0),))
    assert checkout_truth([]) == []
