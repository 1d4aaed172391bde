"""The collector's own metrics (its own registry, served on its /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

OUTCOMES = ("accepted", "invalid", "duplicate", "ignored")


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "expmon_collector_requests",
            "HTTP requests by route template and status code",
            ["route", "code"],
            registry=registry,
        )
        self.events = Counter(
            "expmon_collector_events",
            "events received by family: accepted (produced), invalid (dead-lettered), "
            "duplicate (an id produced before), ignored (Faro/web-vitals items outside "
            "the contract)",
            ["family", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "expmon_collector_request_seconds",
            "request handling time, broker acknowledgement included",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=registry,
        )
        self.dead_letters = Counter(
            "expmon_collector_dead_letters",
            "records the collector sent to the dead-letter topic, by reason",
            ["family", "reason"],
            registry=registry,
        )

        # label children by their values: `labels()` costs more than the increment
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def count(self, family: str, outcome: str, n: int) -> None:
        if n:
            self._child(self.events, family, outcome).inc(n)

    def dead_letter(self, family: str, reason: str) -> None:
        self._child(self.dead_letters, family, reason).inc()

    def request(self, route: str, code: int, seconds: float) -> None:
        self._child(self.requests, route, str(code)).inc()
        self._child(self.latency, route).observe(seconds)
