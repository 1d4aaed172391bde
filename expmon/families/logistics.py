"""Logistics: ship-within-SLA, tracking staleness and delivery outcomes per order.

Stage 1 keeps one entity per `order_id` (the key of the logistics topic, so an order
lives in one partition) and counts into 1-minute windows with `CounterAccumulator`s.

Definitions (the product's; `expmon.sim.truth.logistics` computes them independently):

- Event order. An order's events are applied in event-time order (ties: arrival order),
  each once the partition's watermark has passed it (`t < watermark`). Until then the
  event waits on the entity (`p`, usually empty or one entry): an event that arrives out
  of order but within the allowed lateness is applied in its place, so the outcome
  depends on event times only, never on how records interleave. This costs no latency
  on windowed figures: a window only closes once the watermark passes its end anyway.
- Lifecycle. An order's lifecycle starts with its first event (by event time). If that
  is `order_placed` at T, the SLA clock runs with ship_by = T + ship_sla. If the first
  event is anything else (order_placed lost), the order is tracked without a clock.
  A later order_placed in the same lifecycle does not restart the clock.
- Ship within SLA. The first shipment event (status shipped, in_transit,
  out_for_delivery, delivered or delivery_failed) at t <= ship_by counts `within` at t
  under the shipment's (warehouse, carrier). If none comes by ship_by, the order counts
  `breach` at ship_by (event time) under its latest (warehouse, carrier) as soon as the
  watermark passes ship_by (timers fire on whole seconds of event time), whether or not
  the order gets another event: idle advance moves the watermark of a quiet partition.
  An event at exactly ship_by is in time. A
  shipment after a breach does not count again. Window key ("sla", warehouse, carrier);
  the stage also keeps cumulative `sla_breaches_total` (and per warehouse).
- Tracking staleness. An order whose latest event (by event time) at U has status
  shipped, in_transit or out_for_delivery becomes stale at U + tracking_stale unless an
  event comes at t <= U + tracking_stale; it counts `became_stale` at that time under
  ("tracking", carrier). A later event makes it fresh again (and restarts the clock when
  its status is again a tracked one). `tracking_gauges()` gives, per carrier, the orders
  in a tracked status and how many of them are stale now.
- Delivery, counted per event as it is accepted under ("delivery", carrier): `delivered`,
  `failed` (delivery_failed), and for delivered events with a promised_by: `on_time`
  (t <= promised_by) or `late`. delivery_failed is not terminal (a retry may follow).
  delivered and returned are terminal: once applied, the lifecycle ends and the entity
  is freed, unless its SLA clock still runs (returned before any shipment): then it
  stays until ship_by, breaches, and is freed. A later event starts a new lifecycle.
- `shipments_total[(status, carrier)]` counts every accepted event (cumulative).

Labels. An order's events carry carrier and warehouse, and a count made later (an SLA
breach at ship_by, staleness 24 h on) uses the order's latest applied event's values.
Entities keep those values raw; the label is decided where and when the count is made,
from the window it goes into (`PartitionWindows.label`, 4 x max_label_values values per
window and partition, in the order counts are made, the rest `other`): so it is a
function of the order's events and the window's keys, the same for every worker layout,
restart and replay. Each view then keeps its top max_label_values carriers (one set for
SLA, delivery and tracking rows, by the counts they carry) and warehouses (by orders
decided), the rest merged into `other` (`fold_labels`). The tracking gauges (a snapshot
of open orders) keep, per partition, its 4 x max_label_values carriers with the most
tracked orders; the cumulative counters are process-wide and keep a first-come
`LabelLimiter`.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from expmon.alerting.signals import Signal, field, field_sum
from expmon.engine.counters import (
    CounterAccumulator,
    CounterStage,
    keep_samples,
    new_counter_merger,
    ratio,
)
from expmon.engine.entities import Entity, fire_after
from expmon.engine.labels import OTHER, LabelDimension, LabelLimiter, fold_labels, top_values
from expmon.engine.merge import WindowMerger
from expmon.engine.windows import Key, PartitionWindows
from expmon.families.base import Family, Rows, counter, gauge
from expmon.settings import Settings
from expmon.sim.truth import logistics as truth
from schemas.events import LOGISTICS_STATUSES, Event, EventFamily

ALL = "all"  # carrier label of SLA figures merged over every carrier of a warehouse
ORDER_PLACED = "order_placed"
DELIVERED = "delivered"
DELIVERY_FAILED = "delivery_failed"
RETURNED = "returned"
# Statuses that prove the order left the warehouse (returned does not: the contract lists
# it apart, and a return without any shipment event says nothing about when it shipped).
SHIPMENT_STATUSES = frozenset(
    {"shipped", "in_transit", "out_for_delivery", DELIVERED, DELIVERY_FAILED}
)
TRACKED_STATUSES = frozenset({"shipped", "in_transit", "out_for_delivery"})
TERMINAL_STATUSES = frozenset({DELIVERED, RETURNED})
# The event's own status string would be kept once per waiting event; the module's copy
# is shared by all of them.
_STATUS = {status: status for status in LOGISTICS_STATUSES}

# Row kinds, in the order rows are sorted.
KIND_ORDER = {"sla": 0, "delivery": 1, "tracking": 2}

# Entity fields (short names: they are held per open order and written to the changelog).
# events not applied yet: [t, status, carrier, warehouse] (+ event id for order_placed),
# by (t, arrival)
_PENDING = "p"
_STATUS_F = "s"  # status of the latest applied event; absent: no lifecycle running
_CARRIER = "c"
_WAREHOUSE = "w"
_LAST = "u"  # event time of the latest applied event
_SHIP_BY = "sb"  # present while the SLA clock runs
_STALE = "stale"  # present (True) only while stale: one key less per fresh order
_PLACED_ID = "pid"  # event id of order_placed while the SLA clock runs: a breach's evidence
_LIFECYCLE_FIELDS = (_STATUS_F, _CARRIER, _WAREHOUSE, _LAST, _STALE, _PLACED_ID)


class LogisticsStage(CounterStage):
    """Orders: SLA, staleness and delivery windows, cumulative shipment counters, gauges."""

    family = EventFamily.LOGISTICS
    # carrier in ("delivery" | "tracking", carrier) and ("sla", warehouse, carrier)
    label_positions = (1, 2)
    label_spaces = True

    def __init__(
        self,
        settings: Settings,
        topic: str,
        source_partitions: int,
        live: bool = True,
        *,
        breach_sample_size: int = 100,
    ) -> None:
        super().__init__(settings, topic, source_partitions, live)
        # process-wide cumulative counters only (see expmon.engine.labels)
        self.total_carriers = LabelLimiter(settings.max_label_values)
        self.total_warehouses = LabelLimiter(settings.max_label_values)
        self.ship_sla_ms = round(settings.ship_sla_seconds * 1000)
        self.tracking_stale_ms = round(settings.tracking_stale_seconds * 1000)
        # Expiry must come after every other deadline of an order, or it would cut them.
        self.expiry_ms = max(
            round(settings.order_expiry_seconds * 1000), self.ship_sla_ms, self.tracking_stale_ms
        )
        self.expired_total = 0
        self.shipments_total: dict[tuple[str, str], int] = {}
        self.sla_breaches_total = 0
        self.sla_breaches_by_warehouse: dict[str, int] = {}
        # Latest breaches (order_id, ship_by, warehouse, carrier): evidence for alerts.
        # Not checkpointed; it is a sample, like the cumulative counters.
        self.breaches: deque[tuple[str, int, str, str]] = deque(maxlen=breach_sample_size)

    # ------------------------------------------------------------------ events
    def add_event(
        self, windows: PartitionWindows[CounterAccumulator], event: Event, event_ms: int
    ) -> None:
        status = _STATUS[event["status"]]
        # Raw (interned: one string per value, not one per waiting event): labelled where
        # each count is made.
        carrier = sys.intern(event["carrier"])
        warehouse = sys.intern(event["warehouse"])
        key = (status, self.total_carriers(carrier))
        self.shipments_total[key] = self.shipments_total.get(key, 0) + 1
        # Delivery outcomes depend on the event alone: counted now, in the event's window.
        if status == DELIVERED:
            label = self._label(windows, event_ms, "delivery", 1, carrier)
            acc = windows.accumulator(event_ms, ("delivery", label))
            acc.add("delivered")
            promised = event.get("_promised_ms")
            if promised is not None:
                acc.add("on_time" if event_ms <= promised else "late")
        elif status == DELIVERY_FAILED:
            label = self._label(windows, event_ms, "delivery", 1, carrier)
            acc = windows.accumulator(event_ms, ("delivery", label))
            acc.add("failed")
            acc.sample(event["event_id"])

        order_id: str = event["order_id"]
        entity = self.entity(windows, order_id)
        if entity is None:
            entity = {"due": None}
        pending: list[list[Any]] | None = entity.get(_PENDING)
        if pending is None:
            pending = entity[_PENDING] = []
        # After every waiting event with the same or an earlier time: ties keep arrival order.
        i = len(pending)
        while i > 0 and pending[i - 1][0] > event_ms:
            i -= 1
        waiting: list[Any] = [event_ms, status, carrier, warehouse]
        if status == ORDER_PLACED:
            waiting.append(event["event_id"])
        pending.insert(i, waiting)
        # An accepted event is never before the watermark, so nothing can be applied yet.
        self._store(windows, order_id, entity)

    def on_timer(
        self,
        windows: PartitionWindows[CounterAccumulator],
        entity_id: str,
        entity: Entity,
        deadline: int,
    ) -> None:
        # `deadline` is only the aligned firing time; apply everything the watermark passed.
        watermark = windows.watermark_ms
        if watermark is not None:
            self._advance(windows, entity_id, entity, watermark)
        self._store(windows, entity_id, entity)

    # ------------------------------------------------------------------ state machine
    def _stale_at(self, entity: Entity) -> int | None:
        if entity.get(_STATUS_F) in TRACKED_STATUSES and not entity.get(_STALE):
            last: int = entity[_LAST]
            return last + self.tracking_stale_ms
        return None

    def _advance(
        self,
        windows: PartitionWindows[CounterAccumulator],
        order_id: str,
        entity: Entity,
        watermark: int,
    ) -> None:
        """Apply waiting events and deadlines before `watermark`, in event-time order.

        At equal times an event goes before a deadline (an event at the deadline is in
        time), and the SLA deadline before the staleness one (they touch different counts).
        """
        pending: list[list[Any]] = entity.get(_PENDING) or []
        while True:
            event_t: int | None = pending[0][0] if pending else None
            ship_by: int | None = entity.get(_SHIP_BY)
            stale_at = self._stale_at(entity)
            if (
                event_t is not None
                and event_t < watermark
                and (
                    (ship_by is None or event_t <= ship_by)
                    and (stale_at is None or event_t <= stale_at)
                )
            ):
                t, status, carrier, warehouse, *placed_id = pending.pop(0)
                self._apply(windows, entity, t, status, carrier, warehouse, *placed_id)
            elif (
                ship_by is not None
                and ship_by < watermark
                and (stale_at is None or ship_by <= stale_at)
            ):
                self._breach(windows, order_id, entity, ship_by)
            elif stale_at is not None and stale_at < watermark:
                entity[_STALE] = True
                label = self._label(windows, stale_at, "tracking", 1, entity[_CARRIER])
                windows.accumulator(stale_at, ("tracking", label)).add("became_stale")
            else:
                break
            if entity.get(_STATUS_F) in TERMINAL_STATUSES and _SHIP_BY not in entity:
                for name in _LIFECYCLE_FIELDS:
                    entity.pop(name, None)
        if not pending:
            entity.pop(_PENDING, None)

    def _apply(
        self,
        windows: PartitionWindows[CounterAccumulator],
        entity: Entity,
        t: int,
        status: str,
        carrier: str,
        warehouse: str,
        event_id: str | None = None,
    ) -> None:
        if _STATUS_F not in entity and status == ORDER_PLACED:
            entity[_SHIP_BY] = t + self.ship_sla_ms
            if event_id is not None:
                entity[_PLACED_ID] = event_id
        entity[_STATUS_F] = status
        entity[_CARRIER] = carrier
        entity[_WAREHOUSE] = warehouse
        entity[_LAST] = t
        entity.pop(_STALE, None)
        if status in SHIPMENT_STATUSES and _SHIP_BY in entity:
            # _advance applies events after deadlines before them: t <= ship_by here.
            del entity[_SHIP_BY]
            entity.pop(_PLACED_ID, None)
            windows.accumulator(t, self._sla_key(windows, t, warehouse, carrier)).add("within")

    def _breach(
        self,
        windows: PartitionWindows[CounterAccumulator],
        order_id: str,
        entity: Entity,
        ship_by: int,
    ) -> None:
        del entity[_SHIP_BY]
        warehouse: str = entity[_WAREHOUSE]
        carrier: str = entity[_CARRIER]
        acc = windows.accumulator(ship_by, self._sla_key(windows, ship_by, warehouse, carrier))
        acc.add("breach")
        placed_id = entity.pop(_PLACED_ID, None)
        if placed_id is not None:
            acc.sample(placed_id)
        if self.provisional:  # a look-ahead's timers are counted when real
            return
        self.sla_breaches_total += 1
        by_wh = self.sla_breaches_by_warehouse
        total_warehouse = self.total_warehouses(warehouse)
        by_wh[total_warehouse] = by_wh.get(total_warehouse, 0) + 1
        self.breaches.append((order_id, ship_by, warehouse, carrier))

    def _sla_key(
        self, windows: PartitionWindows[CounterAccumulator], t: int, warehouse: str, carrier: str
    ) -> Key:
        return (
            "sla",
            self._label(windows, t, "sla", 1, warehouse),
            self._label(windows, t, "sla", 2, carrier),
        )

    def _store(
        self, windows: PartitionWindows[CounterAccumulator], order_id: str, entity: Entity
    ) -> None:
        """Put the entity with its next deadline, or delete it when nothing is left to do."""
        table = self.entities[windows.partition]
        pending: list[list[Any]] | None = entity.get(_PENDING)
        if _STATUS_F not in entity and not pending:
            table.delete(order_id)
            return
        last: int | None = entity.get(_LAST)
        watermark = windows.watermark_ms
        if (
            last is not None
            and not pending
            and watermark is not None
            and last + self.expiry_ms <= watermark
        ):
            # Never reached a terminal status (a lost `delivered`): state must not grow
            # forever. Its SLA and staleness deadlines, earlier, were applied already.
            table.delete(order_id)
            if not self.provisional:
                self.expired_total += 1
            return
        nexts = [pending[0][0]] if pending else []
        if last is not None:
            nexts.append(last + self.expiry_ms)
        ship_by: int | None = entity.get(_SHIP_BY)
        if ship_by is not None:
            nexts.append(ship_by)
        stale_at = self._stale_at(entity)
        if stale_at is not None:
            nexts.append(stale_at)
        entity["due"] = fire_after(min(nexts)) if nexts else None
        table.put(order_id, entity)

    # ------------------------------------------------------------------ gauges
    def tracking_gauges(self) -> dict[str, tuple[int, int]]:
        """carrier -> (orders in shipped/in_transit/out_for_delivery, of which stale now).

        A scan of this stage's open orders (O(open orders)), read at scrape time.
        """
        totals: dict[str, tuple[int, int]] = {}
        for per_carrier in self.tracking_by_partition().values():
            for carrier, (n, stale) in per_carrier.items():
                before = totals.get(carrier, (0, 0))
                totals[carrier] = (before[0] + n, before[1] + stale)
        return dict(sorted(totals.items()))

    def tracking_by_partition(self) -> dict[int, dict[str, tuple[int, int]]]:
        """partition -> carrier -> (tracked orders, of which stale now).

        Per partition, its `label_cap` carriers with the most tracked orders (ties by
        name) and `other`: a function of the partition's state, so the same whichever
        worker holds it and after a restart.
        """
        out: dict[int, dict[str, tuple[int, int]]] = {}
        for partition, table in self.entities.items():
            totals: dict[str, list[int]] = {}
            for entity in table.items.values():
                if entity.get(_STATUS_F) in TRACKED_STATUSES:
                    pair = totals.get(entity[_CARRIER])
                    if pair is None:
                        pair = totals[entity[_CARRIER]] = [0, 0]
                    pair[0] += 1
                    if entity.get(_STALE):
                        pair[1] += 1
            out[partition] = self._fold_carriers(totals)
        return out

    def _fold_carriers(self, totals: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
        kept = top_values({carrier: n for carrier, (n, _s) in totals.items()}, self.label_cap)
        folded: dict[str, tuple[int, int]] = {}
        for carrier, (n, stale) in totals.items():
            label = carrier if carrier in kept else OTHER
            before = folded.get(label, (0, 0))
            folded[label] = (before[0] + n, before[1] + stale)
        return folded

    def open_orders(self) -> int:
        """Orders this stage holds state for (lifecycle running or events waiting)."""
        return sum(len(table) for table in self.entities.values())


# ---------------------------------------------------------------------- merge side


def row_sort_key(row: dict[str, Any]) -> tuple[int, str, str]:
    return (KIND_ORDER[row["kind"]], row.get("warehouse", ""), row["carrier"])


def sla_row(
    view: str,
    start_ms: int,
    end_ms: int,
    warehouse: str,
    carrier: str,
    within: int,
    breach: int,
    samples: Sequence[str] = (),
) -> dict[str, Any]:
    decided = within + breach
    return {
        "kind": "sla",
        "view": view,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "warehouse": warehouse,
        "carrier": carrier,
        "within": within,
        "breach": breach,
        "within_sla_ratio": ratio(within, decided),
        "breach_ratio": ratio(breach, decided),
        "sample_event_ids": list(samples),  # order_placed events of breached orders
    }


def delivery_row(
    view: str,
    start_ms: int,
    end_ms: int,
    carrier: str,
    delivered: int,
    failed: int,
    on_time: int,
    late: int,
    samples: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "kind": "delivery",
        "view": view,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "carrier": carrier,
        "delivered": delivered,
        "failed": failed,
        "exception_ratio": ratio(failed, delivered + failed),
        "on_time": on_time,
        "late": late,
        "on_time_ratio": ratio(on_time, on_time + late),
        "sample_event_ids": list(samples),  # failed deliveries
    }


def tracking_row(
    view: str, start_ms: int, end_ms: int, carrier: str, became_stale: int
) -> dict[str, Any]:
    return {
        "kind": "tracking",
        "view": view,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "carrier": carrier,
        "became_stale": became_stale,
    }


_COUNTED = ("within", "breach", "delivered", "failed", "became_stale")


def _counted(acc: CounterAccumulator) -> float:
    """Orders decided (SLA), deliveries attempted, orders gone stale: what a key counts."""
    return sum(acc.get(name) for name in _COUNTED)


def label_dimensions(limit: int) -> tuple[LabelDimension[CounterAccumulator], ...]:
    """Carrier (one set across SLA, delivery and tracking keys) and warehouse."""
    return (
        LabelDimension({"sla": 2, "delivery": 1, "tracking": 1}, limit, _counted),
        LabelDimension({"sla": 1}, limit, _counted),
    )


def summarize_rows(
    view: str,
    start_ms: int,
    end_ms: int,
    accumulators: dict[Key, Any],
    max_label_values: int = 50,
) -> list[dict[str, Any]]:
    """Merger summarizer: sla rows per (warehouse, carrier) and (warehouse, "all"),
    delivery and tracking rows per carrier, after the view's label fold (top
    `max_label_values` carriers and warehouses); sorted by kind, warehouse, carrier."""
    accumulators = fold_labels(accumulators, label_dimensions(max_label_values), CounterAccumulator)
    rows: list[dict[str, Any]] = []
    by_warehouse: dict[str, list[int]] = {}
    warehouse_samples: dict[str, list[str]] = {}
    for key, acc in accumulators.items():
        kind = key[0]
        if kind == "sla":
            _, warehouse, carrier = key
            within, breach = acc.get("within"), acc.get("breach")
            rows.append(
                sla_row(view, start_ms, end_ms, warehouse, carrier, within, breach, acc.samples)
            )
            total = by_warehouse.setdefault(warehouse, [0, 0])
            total[0] += within
            total[1] += breach
            warehouse_samples[warehouse] = keep_samples(
                warehouse_samples.get(warehouse, []), acc.samples
            )
        elif kind == "delivery":
            rows.append(
                delivery_row(
                    view,
                    start_ms,
                    end_ms,
                    key[1],
                    acc.get("delivered"),
                    acc.get("failed"),
                    acc.get("on_time"),
                    acc.get("late"),
                    acc.samples,
                )
            )
        elif kind == "tracking":
            rows.append(tracking_row(view, start_ms, end_ms, key[1], acc.get("became_stale")))
    for warehouse, (within, breach) in by_warehouse.items():
        samples = warehouse_samples.get(warehouse, [])
        rows.append(sla_row(view, start_ms, end_ms, warehouse, ALL, within, breach, samples))
    rows.sort(key=row_sort_key)
    return rows


def new_logistics_merger(settings: Settings) -> WindowMerger[CounterAccumulator]:
    summarize = partial(summarize_rows, max_label_values=settings.max_label_values)
    return new_counter_merger(str(EventFamily.LOGISTICS), settings, summarize)


# ---------------------------------------------------------------------- metrics


class LogisticsCollector(Collector):
    """Shipment counters and tracking gauges from the stages, windowed ratios from the views."""

    def __init__(self, rows: Rows, stages: Sequence[LogisticsStage]) -> None:
        self.rows = rows
        self.stages = stages

    def collect(self) -> Iterator[Metric]:
        shipments = counter(
            "expmon_shipments",
            "Accepted logistics events by status and carrier",
            ["status", "carrier"],
        )
        breaches = counter(
            "expmon_shipping_sla_breaches",
            "Orders not shipped within the SLA (48 h), counted when the watermark passes it",
            ["warehouse"],
        )
        merged: dict[tuple[str, str], int] = {}
        by_warehouse: dict[str, int] = {}
        tracking: dict[str, tuple[int, int]] = {}
        for stage in self.stages:
            for key, n in stage.shipments_total.items():
                merged[key] = merged.get(key, 0) + n
            for warehouse, n in stage.sla_breaches_by_warehouse.items():
                by_warehouse[warehouse] = by_warehouse.get(warehouse, 0) + n
            for carrier, (tracked, stale) in stage.tracking_gauges().items():
                before = tracking.get(carrier, (0, 0))
                tracking[carrier] = (before[0] + tracked, before[1] + stale)
        for (status, carrier), n in sorted(merged.items()):
            shipments.add_metric([status, carrier], n)
        for warehouse, n in sorted(by_warehouse.items()):
            breaches.add_metric([warehouse], n)
        yield shipments
        yield breaches
        stale_gauge = gauge(
            "expmon_tracking_stale_orders",
            "Shipped, not delivered orders without a tracking update for 24 h",
            ["carrier"],
        )
        tracked_gauge = gauge(
            "expmon_tracking_orders", "Shipped, not delivered orders being tracked", ["carrier"]
        )
        for carrier, (n_tracked, n_stale) in sorted(tracking.items()):
            tracked_gauge.add_metric([carrier], n_tracked)
            stale_gauge.add_metric([carrier], n_stale)
        yield tracked_gauge
        yield stale_gauge
        yield from self._windows()
        orders = gauge("expmon_orders_open", "Orders held in state", [])
        orders.add_metric([], sum(stage.open_orders() for stage in self.stages))
        yield orders

    def _windows(self) -> Iterator[Metric]:
        sla = gauge(
            "expmon_ship_within_sla_ratio",
            "Orders shipped within the SLA / orders decided (shipped or breached) in the window",
            ["warehouse", "carrier", "window"],
        )
        sla_decided = gauge(
            "expmon_ship_window_decided",
            "Orders shipped or breached in the window",
            ["warehouse", "carrier", "window"],
        )
        exceptions = gauge(
            "expmon_delivery_exception_ratio",
            "delivery_failed / (delivered + delivery_failed) in the window",
            ["carrier", "window"],
        )
        on_time = gauge(
            "expmon_delivery_on_time_ratio",
            "Deliveries by promised_by / deliveries with a promise, in the window",
            ["carrier", "window"],
        )
        sla_breaches = gauge(
            "expmon_ship_window_breaches",
            "Orders not shipped within the SLA, breached in the window",
            ["warehouse", "carrier", "window"],
        )
        failed = gauge(
            "expmon_delivery_window_failed",
            "Failed deliveries in the window",
            ["carrier", "window"],
        )
        attempts = gauge(
            "expmon_delivery_window_attempts",
            "Deliveries and failed deliveries in the window",
            ["carrier", "window"],
        )
        for view, row in self.rows():
            kind = row["kind"]
            if kind == "sla":
                values = [str(row["warehouse"]), str(row["carrier"]), view]
                sla_decided.add_metric(values, float(row["within"]) + float(row["breach"]))
                sla_breaches.add_metric(values, float(row["breach"]))
                if row["within_sla_ratio"] is not None:
                    sla.add_metric(values, float(row["within_sla_ratio"]))
            elif kind == "delivery":
                values = [str(row["carrier"]), view]
                failed.add_metric(values, float(row["failed"]))
                attempts.add_metric(values, float(row["delivered"]) + float(row["failed"]))
                if row["exception_ratio"] is not None:
                    exceptions.add_metric(values, float(row["exception_ratio"]))
                if row["on_time_ratio"] is not None:
                    on_time.add_metric(values, float(row["on_time_ratio"]))
        yield from (sla, sla_decided, sla_breaches, exceptions, on_time, failed, attempts)


# ---------------------------------------------------------------------- alert signals


SIGNALS: tuple[Signal, ...] = (
    Signal(
        name="not_shipped_within_sla_ratio",
        description="orders not shipped within 48 h / orders decided (shipped or breached)",
        source="window",
        family="logistics",
        kind="sla",
        labels=("warehouse", "carrier"),
        fixed={"carrier": "all"},
        unit="ratio",
        numerator=field("breach"),
        denominator=field_sum("within", "breach"),
        prom_value='expmon_ship_window_breaches{{window="{w}"{sel}}}',
        prom_volume='expmon_ship_window_decided{{window="{w}"{sel}}}',
    ),
    Signal(
        name="delivery_failed_ratio",
        description="delivery_failed / (delivered + delivery_failed)",
        source="window",
        family="logistics",
        kind="delivery",
        labels=("carrier",),
        unit="ratio",
        numerator=field("failed"),
        denominator=field_sum("delivered", "failed"),
        prom_value='expmon_delivery_window_failed{{window="{w}"{sel}}}',
        prom_volume='expmon_delivery_window_attempts{{window="{w}"{sel}}}',
    ),
    Signal(
        name="tracking_stale_ratio",
        description="in-transit orders without a tracking update for 24 h / in-transit orders",
        source="pipeline",
        labels=("carrier",),
        unit="ratio",
        needs_window=False,
        # summed per carrier over partitions (pipeline.py); here for the PromQL twin
        numerator=field("stale"),
        denominator=field("tracked"),
        prom_value="expmon_tracking_stale_orders{{{sel}}}",
        prom_volume="expmon_tracking_orders{{{sel}}}",
    ),
)


FAMILY = Family(
    name=EventFamily.LOGISTICS,
    topic_setting="topic_logistics",
    stage=LogisticsStage,
    new_merger=new_logistics_merger,
    collector=LogisticsCollector,
    signals=SIGNALS,
    truth=truth.TRUTH,
    agent="logistics-events",
    table="logistics-state",
)
