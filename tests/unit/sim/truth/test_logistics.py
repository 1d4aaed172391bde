"""Logistics ground truth on hand-made events: views, cut-off, ratios, breached orders."""

from typing import Any

import pytest

from expmon.sim.truth.logistics import logistics_truth
from schemas.eventtime import format_ms

T0 = 1_763_000_040_000  # a whole minute
MIN = 60_000
SLA = 120_000
STALE = 60_000


def lev(i: int, order: str, status: str, t: int | str, **over: Any) -> dict[str, Any]:
    event = {
        "event_id": f"e{i}",
        "occurred_at": t,
        "schema_version": 1,
        "session_id": "s",
        "device": "mobile",
        "platform": "web",
        "region": "eu-west",
        "order_id": order,
        "status": status,
        "carrier": "dhl",
        "warehouse": "ams-1",
    }
    event.update(over)
    return event


def truth(events: list[dict[str, Any]], closed: int, views: Any = (("1m", 1),)) -> Any:
    return logistics_truth(
        events, closed, views=list(views), ship_sla_ms=SLA, tracking_stale_ms=STALE
    )


def test_rows_shapes_ratios_and_order() -> None:
    events = [
        lev(1, "a", "order_placed", T0),
        lev(2, "a", "shipped", T0 + 10_000),
        lev(3, "b", "order_placed", T0 + 1000, carrier="ups"),
        lev(4, "c", "delivery_failed", T0 + 5000, carrier="ups"),
        lev(5, "d", "delivered", T0 + 6000, promised_by=format_ms(T0 + 5000)),
        lev(6, "d", "delivered", T0 + 6000, event_id="e5"),  # a repeat: counted once
    ]
    rows = truth(events, T0 + 10 * MIN).rows
    assert [r for r in rows if r["end_ms"] == T0 + MIN] == [
        {
            "kind": "sla",
            "view": "1m",
            "start_ms": T0,
            "end_ms": T0 + MIN,
            "warehouse": "ams-1",
            "carrier": "all",
            "within": 1,
            "breach": 0,
            "within_sla_ratio": 1.0,
            "breach_ratio": 0.0,
        },
        {
            "kind": "sla",
            "view": "1m",
            "start_ms": T0,
            "end_ms": T0 + MIN,
            "warehouse": "ams-1",
            "carrier": "dhl",
            "within": 1,
            "breach": 0,
            "within_sla_ratio": 1.0,
            "breach_ratio": 0.0,
        },
        {
            "kind": "delivery",
            "view": "1m",
            "start_ms": T0,
            "end_ms": T0 + MIN,
            "carrier": "dhl",
            "delivered": 1,
            "failed": 0,
            "exception_ratio": 0.0,
            "on_time": 0,
            "late": 1,
            "on_time_ratio": 0.0,
        },
        {
            "kind": "delivery",
            "view": "1m",
            "start_ms": T0,
            "end_ms": T0 + MIN,
            "carrier": "ups",
            "delivered": 0,
            "failed": 1,
            "exception_ratio": 1.0,
            "on_time": 0,
            "late": 0,
            "on_time_ratio": None,
        },
    ]
    # a goes stale at T0 + 70 s; b (ups) breaches at T0 + 121 s
    later = [r for r in rows if r["end_ms"] > T0 + MIN]
    assert [(r["kind"], r["end_ms"] - T0, r.get("warehouse"), r["carrier"]) for r in later] == [
        ("tracking", 2 * MIN, None, "dhl"),
        ("sla", 3 * MIN, "ams-1", "all"),
        ("sla", 3 * MIN, "ams-1", "ups"),
    ]
    assert later[1]["breach_ratio"] == 1.0 and later[1]["within_sla_ratio"] == 0.0


def test_views_cover_k_windows_and_stop_at_closed_through() -> None:
    events = [lev(1, "a", "delivered", T0 + 30_000), lev(2, "b", "delivered", T0 + 150_000)]
    result = truth(events, T0 + 4 * MIN, views=(("1m", 1), ("3m", 3)))
    got = [
        (r["view"], (r["start_ms"] - T0) // MIN, (r["end_ms"] - T0) // MIN, r["delivered"])
        for r in result.rows
    ]
    assert got == [
        ("1m", 0, 1, 1),
        ("1m", 2, 3, 1),
        ("3m", -2, 1, 1),
        ("3m", -1, 2, 1),
        ("3m", 0, 3, 2),
        ("3m", 1, 4, 1),  # the 3m view keeps reporting after the last event...
    ]  # ...but no end after closed_through (T0 + 4 min)


@pytest.mark.parametrize(
    ("closed_min", "expected"),
    [(2, set()), (3, {"late"}), (5, {"late"}), (6, {"late", "never"})],
)
def test_breached_orders_are_those_before_closed_through(
    closed_min: int, expected: set[str]
) -> None:
    events = [
        lev(1, "ok", "order_placed", T0),
        lev(2, "ok", "shipped", T0 + SLA),  # at the deadline: in time
        lev(3, "late", "order_placed", T0 + 30_000),
        lev(4, "late", "shipped", T0 + 30_000 + SLA + 1),
        lev(5, "never", "order_placed", T0 + 3 * MIN),
        lev(6, "lost", "packed", T0),  # no order_placed: no clock
        lev(7, "lost", "shipped", T0 + 10 * MIN),
    ]
    result = truth(events, T0 + closed_min * MIN)
    assert result.breached_orders == expected
    assert result.breach_times == {"late": [T0 + 30_000 + SLA], "never": [T0 + 3 * MIN + SLA]}


def test_rfc3339_times_and_event_time_order() -> None:
    # Listed out of event-time order: the earlier shipment counts, at its own time.
    events = [
        lev(1, "a", "order_placed", format_ms(T0)),
        lev(2, "a", "in_transit", format_ms(T0 + 61_000)),
        lev(3, "a", "shipped", format_ms(T0 + 59_000)),
    ]
    rows = truth(events, T0 + 2 * MIN).rows
    assert [(r["end_ms"] - T0, r["carrier"], r["within"]) for r in rows] == [
        (MIN, "all", 1),
        (MIN, "dhl", 1),
    ]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        logistics_truth([], T0, window_ms=0)
    with pytest.raises(ValueError, match="at least one"):
        logistics_truth([], T0, views=[("0m", 0)])
