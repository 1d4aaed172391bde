"""Every Prometheus metric of Experience Monitor, built in one place from a registry.

Tests pass a fresh `CollectorRegistry` and read values with `get_sample_value`; the
worker passes its own registry too, so nothing lands in the global one.

Windowed figures are gauges read at scrape time from the latest final views, so a key
that leaves every view leaves the exposition with it. Load-time distributions are
exported as a histogram (mergeable across workers in PromQL), never as quantile gauges
alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from expmon.families.page_load import QUANTILES

if TYPE_CHECKING:
    from expmon.engine.merge import ViewResult
    from expmon.families.checkout import CheckoutStage
    from expmon.families.logistics import LogisticsStage
    from expmon.families.page_load import LoadHistogram, PageLoadStage


class ViewBoard:
    """Latest final rows per (family, view): what the gauges show and the demo draws."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], ViewResult] = {}

    def update(self, result: ViewResult) -> None:
        current = self.latest.get((result.family, result.view))
        if current is None or result.end_ms >= current.end_ms:
            self.latest[(result.family, result.view)] = result

    def rows(self, family: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for (fam, view), result in sorted(self.latest.items()):
            if fam == family:
                for row in result.rows:
                    yield view, row


class PageLoadCollector(Collector):
    def __init__(self, board: ViewBoard, histograms: list[LoadHistogram]) -> None:
        self.board = board
        self.histograms = histograms

    def collect(self) -> Iterator[Metric]:
        yield self._histogram()
        labels = ["page", "device", "region", "window"]
        quantile = GaugeMetricFamily(
            "expmon_page_load_quantile_seconds",
            "Page load time quantile per closed window view (from a 1% relative-error sketch)",
            labels=[*labels, "quantile"],
        )
        bounce = GaugeMetricFamily(
            "expmon_bounce_ratio",
            "Share of sessions ending in the window with one page view, by landing page",
            labels=labels,
        )
        slow = GaugeMetricFamily(
            "expmon_page_load_slow_ratio",
            "Share of page loads over the slow threshold (3 s)",
            labels=labels,
        )
        apdex = GaugeMetricFamily(
            "expmon_page_load_apdex", "Apdex of page loads (T = apdex_t)", labels=labels
        )
        loads = GaugeMetricFamily(
            "expmon_page_load_window_loads", "Page loads counted in the window view", labels=labels
        )
        sessions = GaugeMetricFamily(
            "expmon_bounce_window_sessions",
            "Sessions ending in the window, by landing page (bounce ratio denominator)",
            labels=labels,
        )
        bounces = GaugeMetricFamily(
            "expmon_bounce_window_bounces",
            "Sessions ending in the window with one page view, by landing page",
            labels=labels,
        )
        for view, row in self.board.rows("page_load"):
            values = [str(row["page"]), str(row["device"]), str(row["region"]), view]
            if row.get("bounce_ratio") is not None:
                bounce.add_metric(values, float(row["bounce_ratio"]))
                sessions.add_metric(values, float(row["sessions"]))
                bounces.add_metric(values, float(row["bounces"]))
            if not row["count"]:
                continue  # only session ends in this window: no load figures to show
            for q in QUANTILES:
                field = f"p{round(q * 100)}"
                quantile.add_metric([*values, str(q)], float(row[field]) / 1000)
            slow.add_metric(values, float(row["slow_ratio"]))
            apdex.add_metric(values, float(row["apdex"]))
            loads.add_metric(values, float(row["count"]))
        yield quantile
        yield bounce
        yield slow
        yield apdex
        yield loads
        yield sessions
        yield bounces

    def _histogram(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "expmon_page_load_seconds",
            "Page load time (load_ms) of accepted events",
            labels=["page", "device"],
        )
        merged: dict[tuple[str, str], tuple[list[int], float]] = {}
        for hist in self.histograms:
            for key, counts in hist.counts.items():
                prior = merged.get(key)
                if prior is None:
                    merged[key] = (list(counts), hist.sums_ms[key])
                else:
                    merged[key] = (
                        [a + b for a, b in zip(prior[0], counts, strict=True)],
                        prior[1] + hist.sums_ms[key],
                    )
        edges = self.histograms[0].buckets_seconds if self.histograms else ()
        for (page, device), (counts, sum_ms) in sorted(merged.items()):
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for edge, n in zip([*map(str, edges), "+Inf"], counts, strict=True):
                cumulative += n
                buckets.append((edge, float(cumulative)))
            family.add_metric([page, device], buckets, sum_ms / 1000)
        return family


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


class CheckoutCollector(Collector):
    """Checkout counters from the stages, windowed ratios from the final views."""

    def __init__(self, board: ViewBoard, stages: list[CheckoutStage]) -> None:
        self.board = board
        self.stages = stages

    def collect(self) -> Iterator[Metric]:
        steps = _counter("expmon_checkout_steps", "Accepted checkout events by step", ["step"])
        abandoned = _counter(
            "expmon_checkout_abandoned", "Checkouts abandoned, by their last step", ["last_step"]
        )
        attempts = _counter("expmon_payment_attempts", "Payment outcomes (succeeded + failed)", [])
        failures = _counter("expmon_payment_failures", "Failed payments by reason", ["reason"])
        totals: dict[str, dict[str, int]] = {"steps": {}, "abandoned": {}, "failures": {}}
        attempt_total = 0
        for stage in self.stages:
            for name, source in (
                ("steps", stage.steps_total),
                ("abandoned", stage.abandoned_total),
                ("failures", stage.payment_failures_total),
            ):
                for label, n in source.items():
                    totals[name][label] = totals[name].get(label, 0) + n
            attempt_total += stage.payment_attempts_total
        for family, name in ((steps, "steps"), (abandoned, "abandoned"), (failures, "failures")):
            for label, n in sorted(totals[name].items()):
                family.add_metric([label], n)
        attempts.add_metric([], attempt_total)
        yield from (steps, abandoned, attempts, failures)
        yield from self._windows()
        open_checkouts = _gauge("expmon_checkouts_open", "Checkouts held in state", [])
        open_checkouts.add_metric([], sum(stage.open_checkouts() for stage in self.stages))
        yield open_checkouts

    def _windows(self) -> Iterator[Metric]:
        group = ["device", "channel", "user_type", "window"]
        dropoff = _gauge(
            "expmon_checkout_dropoff_ratio",
            "1 - reached(to_step)/reached(from_step) in the window; group labels `all` = overall",
            ["from_step", "to_step", *group],
        )
        conversion = _gauge(
            "expmon_checkout_conversion_ratio",
            "order_placed / checkout_started in the window",
            group,
        )
        started = _gauge("expmon_checkout_window_started", "Checkouts started in the window", group)
        pay_labels = ["provider", "method", "user_type", "window"]
        failure = _gauge(
            "expmon_payment_failure_ratio", "Failed / attempted payments in the window", pay_labels
        )
        pay_attempts = _gauge(
            "expmon_payment_window_attempts", "Payment attempts in the window", pay_labels
        )
        pay_failures = _gauge(
            "expmon_payment_window_failures", "Failed payments in the window", pay_labels
        )
        for view, row in self.board.rows("checkout"):
            kind = row["kind"]
            if kind == "payment":
                values = [str(row["provider"]), str(row["method"]), str(row["user_type"]), view]
                pay_attempts.add_metric(values, float(row["attempts"]))
                pay_failures.add_metric(values, float(row["failures"]))
                if row["failure_ratio"] is not None:
                    failure.add_metric(values, float(row["failure_ratio"]))
                continue
            values = [str(row["device"]), str(row["channel"]), str(row["user_type"]), view]
            if kind == "dropoff" and row["dropoff_ratio"] is not None:
                steps = [str(row["from_step"]), str(row["to_step"])]
                dropoff.add_metric([*steps, *values], float(row["dropoff_ratio"]))
            elif kind == "conversion":
                started.add_metric(values, float(row["checkout_started"]))
                if row["conversion_ratio"] is not None:
                    conversion.add_metric(values, float(row["conversion_ratio"]))
        yield from (dropoff, conversion, started, failure, pay_attempts, pay_failures)


class LogisticsCollector(Collector):
    def __init__(self, board: ViewBoard, stages: list[LogisticsStage]) -> None:
        self.board = board
        self.stages = stages

    def collect(self) -> Iterator[Metric]:
        shipments = _counter(
            "expmon_shipments",
            "Accepted logistics events by status and carrier",
            ["status", "carrier"],
        )
        breaches = _counter(
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
        stale_gauge = _gauge(
            "expmon_tracking_stale_orders",
            "Shipped, not delivered orders without a tracking update for 24 h",
            ["carrier"],
        )
        tracked_gauge = _gauge(
            "expmon_tracking_orders", "Shipped, not delivered orders being tracked", ["carrier"]
        )
        for carrier, (n_tracked, n_stale) in sorted(tracking.items()):
            tracked_gauge.add_metric([carrier], n_tracked)
            stale_gauge.add_metric([carrier], n_stale)
        yield tracked_gauge
        yield stale_gauge
        yield from self._windows()
        orders = _gauge("expmon_orders_open", "Orders held in state", [])
        orders.add_metric([], sum(stage.open_orders() for stage in self.stages))
        yield orders

    def _windows(self) -> Iterator[Metric]:
        sla = _gauge(
            "expmon_ship_within_sla_ratio",
            "Orders shipped within the SLA / orders decided (shipped or breached) in the window",
            ["warehouse", "carrier", "window"],
        )
        sla_decided = _gauge(
            "expmon_ship_window_decided",
            "Orders shipped or breached in the window",
            ["warehouse", "carrier", "window"],
        )
        exceptions = _gauge(
            "expmon_delivery_exception_ratio",
            "delivery_failed / (delivered + delivery_failed) in the window",
            ["carrier", "window"],
        )
        on_time = _gauge(
            "expmon_delivery_on_time_ratio",
            "Deliveries by promised_by / deliveries with a promise, in the window",
            ["carrier", "window"],
        )
        sla_breaches = _gauge(
            "expmon_ship_window_breaches",
            "Orders not shipped within the SLA, breached in the window",
            ["warehouse", "carrier", "window"],
        )
        failed = _gauge(
            "expmon_delivery_window_failed",
            "Failed deliveries in the window",
            ["carrier", "window"],
        )
        attempts = _gauge(
            "expmon_delivery_window_attempts",
            "Deliveries and failed deliveries in the window",
            ["carrier", "window"],
        )
        for view, row in self.board.rows("logistics"):
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


class Metrics:
    """The metrics of one worker (or one replay), registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.board = ViewBoard()
        self.load_histograms: list[LoadHistogram] = []
        self.page_load_stages: list[PageLoadStage] = []
        self.checkout_stages: list[CheckoutStage] = []
        self.logistics_stages: list[LogisticsStage] = []
        self.events = Counter(
            "expmon_events",
            "Events received per input topic by outcome "
            "(accepted + invalid + late + duplicate = received)",
            ["topic", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "expmon_dead_letters",
            "Records sent to the dead-letter topic, by reason",
            ["topic", "reason"],
            registry=registry,
        )
        self.watermark_lag = Gauge(
            "expmon_watermark_lag_seconds",
            "Wall clock minus the lowest partition watermark of an input topic",
            ["topic"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "expmon_consumer_lag_messages",
            "Records not yet read, summed over assigned partitions",
            ["topic"],
            registry=registry,
        )
        self.windows_final = Counter(
            "expmon_windows_final",
            "Window views made final by the merge stage",
            ["family", "window"],
            registry=registry,
        )
        self.alerts_firing = Gauge(
            "expmon_alerts_firing",
            "Alert instances firing now (held by the worker that owns the merge stage)",
            ["alertname", "severity"],
            registry=registry,
        )
        self.alert_notifications = Counter(
            "expmon_alert_notifications",
            "Alert notifications by sink and outcome (sent, failed); Alertmanager counts alerts"
            " per post",
            ["sink", "outcome"],
            registry=registry,
        )
        self.state_writes = Counter(
            "expmon_state_writes", "State changelog records written", ["family"], registry=registry
        )
        registry.register(PageLoadCollector(self.board, self.load_histograms))
        registry.register(CheckoutCollector(self.board, self.checkout_stages))
        registry.register(LogisticsCollector(self.board, self.logistics_stages))
        sessions = Gauge(
            "expmon_sessions_open", "Sessions held in state (for bounce)", registry=registry
        )
        sessions.set_function(lambda: sum(s.open_sessions() for s in self.page_load_stages))

    def count_notifications(self, sink: str, outcome: str, n: int) -> None:
        if n:
            self.alert_notifications.labels(sink, outcome).inc(n)

    def set_firing(self, counts: dict[tuple[str, str], int]) -> None:
        for (alertname, severity), n in counts.items():
            self.alerts_firing.labels(alertname, severity).set(n)

    def count_outcomes(self, topic: str, counts: dict[str, int]) -> None:
        for outcome, n in counts.items():
            if n:
                self.events.labels(topic, outcome).inc(n)


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)
