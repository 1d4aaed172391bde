"""The collector's own metrics (its own registry, served on its /metrics)."""

from __future__ import annotations

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

    def count(self, family: str, outcome: str, n: int) -> None:
        if n:
            self.events.labels(family, outcome).inc(n)
