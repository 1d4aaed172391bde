"""Pipeline signals from worker telemetry, on the wall clock.

Every worker sends, every few seconds and per input topic, a telemetry message: the
high-water marks of its partitions, its record outcome counts since the last message,
and (logistics) per-partition tracking counts. The worker that owns the merge stage adds
them up here, so the answer covers all partitions whichever worker reads them:

- seconds_since_last_event: since any partition of the topic last grew;
- invalid_ratio: invalid / received over the rule's window;
- tracking_stale_ratio: stale / tracked in-transit orders, latest per partition;
- kafka_unreachable_seconds: how long the broker has not answered the owner's probe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from expmon.alerting.engine import Observation
from expmon.alerting.rules import Rule
from expmon.settings import parse_duration_seconds

BUCKET_MS = 10_000
OUTCOMES = ("accepted", "invalid", "late", "duplicate")
GROWTH_PREFIX = "alerts/growth/"  # state keys of the silence clocks, per topic
GROWTH_STEP_MS = 10_000  # how stale a persisted silence clock may be


class PipelineTelemetry:
    def __init__(self, keep_ms: int = 3_600_000) -> None:
        self.keep_ms = keep_ms
        self.highwater: dict[str, dict[int, int]] = {}
        self.last_growth_ms: dict[str, int] = {}
        self.outcomes: dict[str, dict[int, dict[str, int]]] = {}  # topic -> bucket -> counts
        self.tracking: dict[tuple[str, int], dict[str, tuple[int, int]]] = {}
        self.started_ms: int | None = None  # first telemetry seen by this owner
        self._persisted_growth: dict[str, int] = {}
        self._seen_growing: set[str] = set()  # topics whose clock this owner saw move
        # set by the owner's tick from its broker probe (streams.health)
        self.kafka_unreachable_seconds: float | None = None

    def add(self, message: Mapping[str, Any], now_ms: int) -> None:
        if self.started_ms is None:
            self.started_ms = now_ms
        topic = str(message["topic"])
        self.last_growth_ms.setdefault(topic, now_ms)
        known = self.highwater.setdefault(topic, {})
        for partition, mark in (message.get("highwater") or {}).items():
            if mark is None:
                continue
            p = int(partition)
            if p in known and mark > known[p]:
                self.last_growth_ms[topic] = now_ms
                self._seen_growing.add(topic)
            known[p] = max(int(mark), known.get(p, 0))
        counts = {k: int(v) for k, v in (message.get("outcomes") or {}).items() if v}
        if counts:
            # Records applied now count as "now": telemetry is about arrival, not event time.
            self.last_growth_ms[topic] = max(self.last_growth_ms[topic], now_ms)
            self._seen_growing.add(topic)
            bucket = self.outcomes.setdefault(topic, {}).setdefault(now_ms - now_ms % BUCKET_MS, {})
            for outcome, n in counts.items():
                bucket[outcome] = bucket.get(outcome, 0) + n
        for partition, per_carrier in (message.get("tracking") or {}).items():
            self.tracking[(topic, int(partition))] = {
                carrier: (int(pair[0]), int(pair[1])) for carrier, pair in per_carrier.items()
            }
        for partition in message.get("revoked") or ():
            self.tracking.pop((topic, int(partition)), None)
        self._trim(now_ms)

    # ------------------------------------------------------------------ silence clocks
    # When a topic last grew is kept in the merge stage's table, so that a new owner
    # (restart, rebalance) goes on counting silence instead of starting from zero.

    def restore_growth(self, items: Iterable[tuple[str, Any]]) -> None:
        for key, value in items:
            if key.startswith(GROWTH_PREFIX):
                topic = key[len(GROWTH_PREFIX) :]
                last = int(value)
                # A clock only started by this owner's first telemetry knows less than
                # the stored one; a clock it saw move knows more.
                if topic not in self._seen_growing:
                    self.last_growth_ms[topic] = last
                self._persisted_growth[topic] = last

    def growth_writes(self, step_ms: int = GROWTH_STEP_MS) -> dict[str, int]:
        """State writes for clocks that moved `step_ms` or more since last written."""
        writes = {}
        for topic, last in self.last_growth_ms.items():
            if last - self._persisted_growth.get(topic, -step_ms) >= step_ms:
                writes[GROWTH_PREFIX + topic] = last
                self._persisted_growth[topic] = last
        return writes

    def _trim(self, now_ms: int) -> None:
        oldest = now_ms - self.keep_ms
        for buckets in self.outcomes.values():
            for start in [s for s in buckets if s < oldest]:
                del buckets[start]

    # ------------------------------------------------------------------ signals
    def can_clear(self, rule: Rule, now_ms: int) -> bool:
        """Whether the rule's window is fully observed. A new owner (after a restart or a
        rebalance) starts with empty counts: until its window is covered they may raise
        an alert but not resolve one it took over, or it would resolve and page again."""
        if rule.signal.name != "invalid_ratio":
            return True
        window_ms = parse_duration_seconds(rule.window or "5m") * 1000
        return self.started_ms is not None and now_ms - self.started_ms >= window_ms

    def observe(self, rule: Rule, now_ms: int) -> list[Observation] | None:
        name = rule.signal.name
        if name == "seconds_since_last_event":
            return self._silence(rule, now_ms)
        if name == "invalid_ratio":
            return self._invalid(rule, now_ms)
        if name == "tracking_stale_ratio":
            return self._tracking(rule)
        if name == "kafka_unreachable_seconds":
            seconds = self.kafka_unreachable_seconds
            return None if seconds is None else [Observation((), seconds, 1)]
        return None

    def _silence(self, rule: Rule, now_ms: int) -> list[Observation] | None:
        if not self.last_growth_ms:
            return None
        silent = {t: (now_ms - last) / 1000 for t, last in self.last_growth_ms.items()}
        if not rule.by:  # every topic silent: the quietest gap of all
            return [Observation((), min(silent.values()), 1)]
        return [Observation((topic,), s, 1) for topic, s in sorted(silent.items())]

    def _invalid(self, rule: Rule, now_ms: int) -> list[Observation] | None:
        window_ms = parse_duration_seconds(rule.window or "5m") * 1000
        low = now_ms - window_ms
        sums: dict[tuple[str, ...], list[int]] = {}
        for topic, buckets in self.outcomes.items():
            group = (topic,) if rule.by else ()
            pair = sums.setdefault(group, [0, 0])
            for start, counts in buckets.items():
                if start + BUCKET_MS > low:
                    pair[0] += counts.get("invalid", 0)
                    pair[1] += sum(counts.values())
        return [
            Observation(g, inv / total, total, count=inv)
            for g, (inv, total) in sums.items()
            if total
        ]

    def _tracking(self, rule: Rule) -> list[Observation] | None:
        if not self.tracking:
            return None
        sums: dict[tuple[str, ...], list[int]] = {}
        for per_carrier in self.tracking.values():
            for carrier, (tracked, stale) in per_carrier.items():
                if "carrier" in rule.match and rule.match["carrier"] != carrier:
                    continue
                pair = sums.setdefault((carrier,) if rule.by else (), [0, 0])
                pair[0] += stale
                pair[1] += tracked
        return [Observation(g, s / n, n, count=s) for g, (s, n) in sorted(sums.items()) if n]
