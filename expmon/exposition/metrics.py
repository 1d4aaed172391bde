"""Every Prometheus metric of Experience Monitor, built in one place from a registry.

Tests pass a fresh `CollectorRegistry` and read values with `get_sample_value`; the
worker passes its own registry too, so nothing lands in the global one.

Windowed figures are gauges read at scrape time from the latest final views, so a key
that leaves every view leaves the exposition with it. Load-time distributions are
exported as a histogram (mergeable across workers in PromQL), never as quantile gauges
alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from expmon.families.base import Family
from expmon.families.registry import FAMILIES

if TYPE_CHECKING:
    from expmon.engine.merge import ViewResult
    from expmon.engine.stage import WindowedStage


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


class Metrics:
    """The metrics of one worker (or one replay), registered on `registry`."""

    def __init__(self, registry: CollectorRegistry, families: Sequence[Family] = FAMILIES) -> None:
        self.registry = registry
        self.board = ViewBoard()
        # each family's stages in this process, read by its collector at scrape time
        self.stages: dict[str, list[WindowedStage[Any]]] = {str(f.name): [] for f in families}
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
        self.series_dropped = Counter(
            "expmon_series_dropped",
            "Series left out of /metrics renders by the series budget (EXPMON_SERIES_BUDGET),"
            " summed over renders, by drop tier",
            ["tier"],
            registry=registry,
        )
        self.exposition_series = Gauge(
            "expmon_exposition_series",
            "Series on the last full /metrics render, after the series budget",
            registry=registry,
        )
        self.state_writes = Counter(
            "expmon_state_writes", "State changelog records written", ["family"], registry=registry
        )
        self.window_revisions = Counter(
            "expmon_window_revisions",
            "Window views emitted again because data arrived for a window shown early",
            ["family"],
            registry=registry,
        )
        self.corrections_expired = Counter(
            "expmon_window_corrections_expired",
            "Windows sealed by the correction horizon unsettled, and partials that came after it",
            ["family"],
            registry=registry,
        )
        self.kafka_reachable = Gauge(
            "expmon_kafka_reachable",
            "1 while the broker answered this worker within the probe bound, else 0",
            registry=registry,
        )
        for family in families:
            rows = partial(self.board.rows, str(family.name))
            registry.register(family.collector(rows, self.stages[str(family.name)]))

    def attach(self, stage: WindowedStage[Any]) -> None:
        """Expose this stage's counters and state gauges (its family's collector reads it)."""
        self.stages[str(stage.family)].append(stage)

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
