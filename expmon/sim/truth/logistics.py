"""Exact ground truth for logistics windows, computed from the events themselves.

Pure functions, no Kafka, no watermark: the reference `expmon.families.logistics` is
checked against, importing nothing from it. It applies the product's definitions (see
the `expmon.families.logistics` docstring) in a direct form: each order's events sorted
by event time (ties: list order, which for one order is its partition's arrival order),
and before each event every deadline strictly earlier than it fires.

The caller passes valid logistics events (duplicates are dropped here by event_id, the
first occurrence wins) and `closed_through_ms`: the end of the last window the
processor closed everywhere (every input partition's watermark reached it). Rows cover
base window ends <= closed_through_ms only, and `breached_orders` holds the orders whose
breach falls before it (ship_by < closed_through_ms). Label limits are not applied: the
caller keeps carriers and warehouses within `max_label_values`.

Views as in `expmon.sim.truth.base`: a k-window view ending at E covers [E - k * window_ms, E); a
row is emitted for every window end E and group with at least one count in that range.

Row formats (one dict per view, window end and group):
    {"kind": "sla", "view", "start_ms", "end_ms", "warehouse", "carrier" (or "all" for
     the warehouse over every carrier), "within", "breach", "within_sla_ratio",
     "breach_ratio"}
    {"kind": "delivery", "view", "start_ms", "end_ms", "carrier", "delivered", "failed",
     "exception_ratio", "on_time", "late", "on_time_ratio"}
    {"kind": "tracking", "view", "start_ms", "end_ms", "carrier", "became_stale"}
Ratios are None when their denominator is 0; no sample event ids (truth is about
figures). Rows are sorted by the order of `views`,
then end_ms, kind (sla, delivery, tracking), warehouse, carrier.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from expmon.settings import Settings
from expmon.sim.truth.base import DEFAULT_VIEWS, FamilyTruth, TruthRow, dedupe, views_of
from schemas.eventtime import parse_event_time_ms

_Group = tuple[str, ...]  # ("sla", warehouse, carrier) | ("delivery", carrier) | ...

# The product's definitions, written out here on purpose (not imported from
# expmon.families.logistics): a mistake in the processor's formulas must show as a
# difference from this module, not be copied into it.
ALL = "all"
ORDER_PLACED = "order_placed"
DELIVERED = "delivered"
DELIVERY_FAILED = "delivery_failed"
SHIPMENT_STATUSES = frozenset({"shipped", "in_transit", "out_for_delivery", DELIVERED,
                               DELIVERY_FAILED})  # fmt: skip
TRACKED_STATUSES = frozenset({"shipped", "in_transit", "out_for_delivery"})
TERMINAL_STATUSES = frozenset({DELIVERED, "returned"})
KINDS = ("sla", "delivery", "tracking")


def _share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def row_sort_key(row: Mapping[str, Any]) -> tuple[int, str, str]:
    return (KINDS.index(row["kind"]), row.get("warehouse", ""), row["carrier"])


def sla_row(
    view: str, start_ms: int, end_ms: int, warehouse: str, carrier: str, within: int, breach: int
) -> TruthRow:
    return {
        "kind": "sla", "view": view, "start_ms": start_ms, "end_ms": end_ms,
        "warehouse": warehouse, "carrier": carrier, "within": within, "breach": breach,
        "within_sla_ratio": _share(within, within + breach),
        "breach_ratio": _share(breach, within + breach),
    }  # fmt: skip


def delivery_row(
    view: str, start_ms: int, end_ms: int, carrier: str, counts: Mapping[str, int]
) -> TruthRow:
    delivered, failed = counts.get("delivered", 0), counts.get("failed", 0)
    on_time, late = counts.get("on_time", 0), counts.get("late", 0)
    return {
        "kind": "delivery", "view": view, "start_ms": start_ms, "end_ms": end_ms,
        "carrier": carrier, "delivered": delivered, "failed": failed,
        "exception_ratio": _share(failed, delivered + failed),
        "on_time": on_time, "late": late, "on_time_ratio": _share(on_time, on_time + late),
    }  # fmt: skip


def tracking_row(view: str, start_ms: int, end_ms: int, carrier: str, stale: int) -> TruthRow:
    return {"kind": "tracking", "view": view, "start_ms": start_ms, "end_ms": end_ms,
            "carrier": carrier, "became_stale": stale}  # fmt: skip


@dataclass
class LogisticsTruth:
    rows: list[TruthRow]
    breached_orders: frozenset[str]
    # every breach: order_id -> ship_by (also those at or after closed_through_ms)
    breach_times: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class _Lifecycle:
    status: str
    carrier: str
    warehouse: str
    last: int
    ship_by: int | None
    stale: bool = False


class _Counts:
    """group -> base window index -> counter name -> n."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.base: dict[_Group, dict[int, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )

    def add(self, group: _Group, at_ms: int, name: str) -> None:
        self.base[group][at_ms // self.window_ms][name] += 1


def _walk_order(
    order_id: str,
    events: list[tuple[int, int, str, str, str]],
    counts: _Counts,
    breaches: dict[str, list[int]],
    ship_sla_ms: int,
    tracking_stale_ms: int,
) -> None:
    """One order's events, sorted by (time, list position): lifecycles, deadlines, counts."""
    life: _Lifecycle | None = None

    def fire_deadlines_before(limit: int | None) -> None:
        # Deadlines strictly before `limit` (None: all of them), earliest first; the SLA
        # deadline first at a tie (the two never affect each other anyway).
        nonlocal life
        while life is not None:
            ship_by = life.ship_by
            stale_at = (
                life.last + tracking_stale_ms
                if life.status in TRACKED_STATUSES and not life.stale
                else None
            )
            candidates = [d for d in (ship_by, stale_at) if d is not None]
            if not candidates:
                return
            first = min(candidates)
            if limit is not None and first >= limit:
                return
            if ship_by == first:
                counts.add(("sla", life.warehouse, life.carrier), ship_by, "breach")
                breaches.setdefault(order_id, []).append(ship_by)
                life.ship_by = None
            else:
                counts.add(("tracking", life.carrier), first, "became_stale")
                life.stale = True
            if life.status in TERMINAL_STATUSES and life.ship_by is None:
                life = None

    for t, _pos, status, carrier, warehouse in events:
        fire_deadlines_before(t)
        if life is None:
            ship_by = t + ship_sla_ms if status == ORDER_PLACED else None
            life = _Lifecycle(status, carrier, warehouse, t, ship_by)
        else:
            life.status, life.carrier, life.warehouse, life.last = status, carrier, warehouse, t
            life.stale = False
        if status in SHIPMENT_STATUSES and life.ship_by is not None:
            counts.add(("sla", warehouse, carrier), t, "within")
            life.ship_by = None
        if status in TERMINAL_STATUSES and life.ship_by is None:
            life = None
    fire_deadlines_before(None)


def logistics_truth(
    events: Iterable[Mapping[str, Any]],
    closed_through_ms: int,
    *,
    window_ms: int = 60_000,
    views: Sequence[tuple[str, int]] = DEFAULT_VIEWS,
    ship_sla_ms: int = 172_800_000,
    tracking_stale_ms: int = 86_400_000,
) -> LogisticsTruth:
    """Rows for every view and window end <= closed_through_ms, and the breached orders."""
    if window_ms <= 0:
        raise ValueError("window_ms must be > 0")
    for name, k in views:
        if k < 1:
            raise ValueError(f"view {name!r} must span at least one base window")
    counts = _Counts(window_ms)
    orders: dict[str, list[tuple[int, int, str, str, str]]] = defaultdict(list)
    for pos, event in enumerate(dedupe(events)):
        t = parse_event_time_ms(event["occurred_at"])
        status, carrier = event["status"], event["carrier"]
        orders[event["order_id"]].append((t, pos, status, carrier, event["warehouse"]))
        if status == DELIVERED:
            counts.add(("delivery", carrier), t, "delivered")
            promised = event.get("promised_by")
            if promised is not None:
                on_time = t <= parse_event_time_ms(promised)
                counts.add(("delivery", carrier), t, "on_time" if on_time else "late")
        elif status == DELIVERY_FAILED:
            counts.add(("delivery", carrier), t, "failed")
    breaches: dict[str, list[int]] = {}
    for order_id, order_events in orders.items():
        order_events.sort()
        _walk_order(order_id, order_events, counts, breaches, ship_sla_ms, tracking_stale_ms)

    last_end = closed_through_ms // window_ms  # in base windows
    rows: list[TruthRow] = []
    for view_order, (view, k) in enumerate(views):
        for group, windows in counts.base.items():
            ends: set[int] = set()
            for index in windows:
                ends.update(e for e in range(index + 1, index + k + 1) if e <= last_end)
            for end in ends:
                total: dict[str, int] = defaultdict(int)
                for i in range(end - k, end):
                    for name, n in windows.get(i, {}).items():
                        total[name] += n
                start_ms, end_ms = (end - k) * window_ms, end * window_ms
                row = _row(view, start_ms, end_ms, group, total)
                row["_order"] = view_order
                rows.append(row)
        # warehouse-level SLA rows over every carrier
        for warehouse in sorted({g[1] for g in counts.base if g[0] == "sla"}):
            merged: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for group, windows in counts.base.items():
                if group[0] == "sla" and group[1] == warehouse:
                    for index, named in windows.items():
                        for name, n in named.items():
                            merged[index][name] += n
            ends = set()
            for index in merged:
                ends.update(e for e in range(index + 1, index + k + 1) if e <= last_end)
            for end in ends:
                within = sum(merged[i]["within"] for i in range(end - k, end) if i in merged)
                breach = sum(merged[i]["breach"] for i in range(end - k, end) if i in merged)
                row = sla_row(
                    view, (end - k) * window_ms, end * window_ms, warehouse, ALL, within, breach
                )
                row["_order"] = view_order
                rows.append(row)
    rows.sort(key=lambda r: (r["_order"], r["end_ms"], *row_sort_key(r)))
    for row in rows:
        del row["_order"]
    breached = frozenset(
        order_id
        for order_id, times in breaches.items()
        if any(t < closed_through_ms for t in times)
    )
    return LogisticsTruth(rows, breached, breaches)


def _row(
    view: str, start_ms: int, end_ms: int, group: _Group, total: Mapping[str, int]
) -> TruthRow:
    if group[0] == "sla":
        return sla_row(view, start_ms, end_ms, group[1], group[2], total["within"], total["breach"])
    if group[0] == "delivery":
        return delivery_row(view, start_ms, end_ms, group[1], total)
    return tracking_row(view, start_ms, end_ms, group[1], total["became_stale"])


def family_rows(
    events: Sequence[Mapping[str, Any]], settings: Settings, closed_through_ms: int
) -> list[TruthRow]:
    return logistics_truth(
        events,
        closed_through_ms,
        window_ms=settings.window_ms,
        views=views_of(settings),
        ship_sla_ms=round(settings.ship_sla_seconds * 1000),
        tracking_stale_ms=round(settings.tracking_stale_seconds * 1000),
    ).rows


def row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["view"], row["end_ms"], row["kind"], row.get("warehouse", ""), row["carrier"])


TRUTH = FamilyTruth(rows=family_rows, key=row_key)
