"""The alert engine: rules evaluated as windows change, pending -> firing -> resolved.

Window rules run on each final window view the merge stage emits and take the view's
end as their clock (event time): `for: 2m` means the condition held on views ending two
minutes apart, so a replay fires exactly where the live run fired. Pipeline rules
(absence of input, invalid share, stale tracking) run on a short wall-clock tick.

State per alert instance (a fingerprint of its labels) is returned as writes for the
caller to persist beside the window state, so a restart resumes it: a firing alert stays
firing without a new notification and still resolves later. Resolved instances are kept
for a while so that sinks can re-deliver the resolve.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from expmon.alerting.rules import Rule
from expmon.alerting.signals import Row, format_value
from expmon.alerting.stats import interval
from expmon.engine.merge import ViewResult

log = logging.getLogger(__name__)

State = Literal["pending", "firing", "resolved"]
PREFIX = "alerts/"
RESOLVED_RETENTION_S = 15 * 60.0


@dataclass(frozen=True)
class Observation:
    """One group of a rule's signal at one evaluation."""

    group: tuple[str, ...]  # values of the rule's `by` labels
    value: float
    volume: float
    start_ms: int | None = None  # the window read, for the replay hint
    end_ms: int | None = None
    samples: tuple[str, ...] = ()  # a few event ids behind the value
    count: float | None = None  # ratio signals: the numerator (`count` of `volume`)
    baseline: float | None = None  # baseline rules: the trailing ratio compared against


@dataclass(frozen=True)
class Judgement:
    """A rule's verdict on one observation."""

    enough_volume: bool
    breached: bool  # the observed value is past the threshold
    significant: bool  # ... and so is the interval's bound (always, without significance)
    bound: float | None  # the conservative value judged, None without significance


def judge(rule: Rule, obs: Observation) -> Judgement:
    """Volume, then the observed value, then (ratio rules) the interval's bound in the
    direction of the rule: `>` needs the lower bound above the threshold, `<` the upper
    bound below it. A baseline rule's value is 1 - ratio/baseline, so its bound uses the
    other end of the ratio's interval."""
    enough = obs.volume >= rule.min_volume
    breached = enough and rule.breached(obs.value)
    if rule.significance == "none" or obs.count is None or obs.volume <= 0:
        return Judgement(enough, breached, breached, None)
    low, high = interval(rule.significance, obs.count, obs.volume, rule.confidence)
    if obs.baseline is not None and obs.baseline > 0:
        bound = 1.0 - (high if rule.op == ">" else low) / obs.baseline
    else:
        bound = low if rule.op == ">" else high
    return Judgement(enough, breached, breached and rule.breached(bound), bound)


def evidence(rule: Rule, obs: Observation, verdict: Judgement | None = None) -> str:
    """`3.7 % (2 of 54) — not significant: 95 % Wilson lower bound 1.0 % <= 3.0 %`."""
    verdict = verdict or judge(rule, obs)
    unit = "ratio" if rule.baseline_ms is not None else rule.signal.unit
    text = format_value(obs.value, unit)
    if obs.count is not None:
        text += f" ({obs.count:.0f} of {obs.volume:.0f})"
    if verdict.bound is None:
        return text
    side = "lower" if (rule.op == ">") else "upper"
    method = rule.significance.capitalize()
    level = f"{rule.confidence * 100:g} % {method} {side} bound {format_value(verdict.bound, unit)}"
    threshold = format_value(rule.threshold, unit)
    if verdict.significant:
        return f"{text}; {level} {rule.op} {threshold}"
    if verdict.breached:
        negated = "<=" if rule.op == ">" else ">="
        return f"{text} — not significant: {level} {negated} {threshold}"
    return text


@dataclass
class RuleStats:
    """What a rule saw over its evaluations: why it fired or why it did not (reports)."""

    evaluations: int = 0
    observations: int = 0
    max_volume: float = 0.0
    with_volume: int = 0  # observations with at least min_volume
    breaches: int = 0  # ... whose value was past the threshold
    not_significant: int = 0  # ... but whose interval bound was not
    peak: float | None = None  # the worst value with enough volume
    peak_group: tuple[str, ...] = ()
    peak_evidence: str = ""
    peak_end_ms: int | None = None  # the end of the window it was seen in
    near_miss: str = ""  # the worst breach that was not significant, described
    no_baseline: int = 0  # groups skipped: their baseline held too little volume yet

    def add(self, rule: Rule, obs: Observation, verdict: Judgement) -> None:
        self.observations += 1
        self.max_volume = max(self.max_volume, obs.volume)
        if not verdict.enough_volume:
            return
        self.with_volume += 1
        worse = self.peak is None or (
            obs.value > self.peak if rule.op == ">" else obs.value < self.peak
        )
        if worse:
            self.peak, self.peak_group = obs.value, obs.group
            self.peak_evidence = evidence(rule, obs, verdict)
            self.peak_end_ms = obs.end_ms
        if verdict.breached:
            self.breaches += 1
            if not verdict.significant:
                self.not_significant += 1
                self.near_miss = self.near_miss or evidence(rule, obs, verdict)


def row_samples(rows: Iterable[Row], limit: int = 3) -> tuple[str, ...]:
    found: list[str] = []
    for row in rows:
        for event_id in row.get("sample_event_ids") or ():
            if len(found) == limit:
                return tuple(found)
            found.append(str(event_id))
    return tuple(found)


@dataclass
class AlertInstance:
    fingerprint: str
    alert: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: State
    active_since_ms: int
    value: float
    volume: float
    fired_at_ms: int | None = None
    cleared_since_ms: int | None = None
    resolved_at_ms: int | None = None  # event time of the resolve (as fired_at_ms)
    starts_at: float | None = None  # wall clock (s) of firing: Alertmanager's startsAt
    ends_at: float | None = None  # wall clock (s) of the resolve
    peak: float | None = None  # the worst value while active (reports: peak vs threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertInstance:
        return cls(**data)


@dataclass(frozen=True)
class Transition:
    """An instance entering `firing` or `resolved` (pending is not notified)."""

    state: Literal["firing", "resolved"]
    instance: AlertInstance
    rule_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, **self.instance.to_dict()}


@dataclass
class EngineOutput:
    transitions: list[Transition] = field(default_factory=list)
    writes: dict[str, Any] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)

    def extend(self, other: EngineOutput) -> None:
        self.transitions.extend(other.transitions)
        self.writes.update(other.writes)
        self.deletes.extend(other.deletes)


class PipelineSource(Protocol):
    def observe(self, rule: Rule, now_ms: int) -> list[Observation] | None:
        """Observations for a pipeline rule, or None when nothing is known to judge by."""

    def can_clear(self, rule: Rule, now_ms: int) -> bool:
        """False while the observations cover too little to resolve an alert."""


def fingerprint(labels: Mapping[str, str]) -> str:
    text = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def select_rows(rule: Rule, rows: Iterable[Row]) -> Iterable[Row]:
    kind = rule.signal.kind
    for row in rows:
        if kind is not None and row.get("kind") != kind:
            continue
        if all(str(row.get(k)) == v for k, v in rule.match.items()):
            yield row


def sum_groups(rule: Rule, rows: Iterable[Row]) -> dict[tuple[str, ...], tuple[float, float]]:
    """Additive signals: (numerator, denominator) summed per `by` group."""
    num, den = rule.signal.numerator, rule.signal.denominator
    assert num is not None and den is not None
    sums: dict[tuple[str, ...], tuple[float, float]] = {}
    for row in select_rows(rule, rows):
        group = tuple(str(row.get(b)) for b in rule.by)
        n, d = sums.get(group, (0.0, 0.0))
        sums[group] = (n + num(row), d + den(row))
    return sums


def group_rows(rule: Rule, rows: Iterable[Row]) -> dict[tuple[str, ...], list[Row]]:
    grouped: dict[tuple[str, ...], list[Row]] = {}
    for row in select_rows(rule, rows):
        grouped.setdefault(tuple(str(row.get(b)) for b in rule.by), []).append(row)
    return grouped


class Baselines:
    """Per rule and group, (numerator, denominator) of each 1-minute window, for `baseline`."""

    def __init__(self) -> None:
        self.series: dict[str, dict[int, dict[tuple[str, ...], tuple[float, float]]]] = {}

    @staticmethod
    def key(alert: str, end_ms: int) -> str:
        return f"{PREFIX}base/{alert}/{end_ms}"

    def record(self, rule: Rule, result: ViewResult, out: EngineOutput) -> None:
        sums = sum_groups(rule, result.rows)
        per_end = self.series.setdefault(rule.alert, {})
        per_end[result.end_ms] = sums
        out.writes[self.key(rule.alert, result.end_ms)] = [
            [list(g), list(v)] for g, v in sums.items()
        ]
        assert rule.baseline_ms is not None and rule.window is not None
        keep_from = result.end_ms - rule.baseline_ms - 2 * 3_600_000
        for end in [e for e in per_end if e < keep_from]:
            del per_end[end]
            out.deletes.append(self.key(rule.alert, end))

    def level(self, rule: Rule, group: tuple[str, ...], before_ms: int) -> tuple[float, float]:
        assert rule.baseline_ms is not None
        low = before_ms - rule.baseline_ms
        n_sum = d_sum = 0.0
        for end, sums in self.series.get(rule.alert, {}).items():
            if low < end <= before_ms and group in sums:
                n, d = sums[group]
                n_sum += n
                d_sum += d
        return n_sum, d_sum

    def restore(self, alert: str, end_ms: int, value: Any) -> None:
        self.series.setdefault(alert, {})[end_ms] = {
            tuple(g): (float(v[0]), float(v[1])) for g, v in value
        }


class AlertEngine:
    def __init__(
        self,
        rules: Sequence[Rule],
        topics: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = list(rules)
        self.topics = dict(topics or {})  # family -> input topic, for replay hints
        self.clock = clock
        self.instances: dict[str, AlertInstance] = {}
        self.baselines = Baselines()
        self.stats: dict[str, RuleStats] = {r.id: RuleStats() for r in self.rules}
        # breaches of the latest evaluation that were not significant, by fingerprint:
        # what a view shows as "3.7 % (2 of 54) — not significant" (not persisted)
        self.held_back: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ inputs
    def evaluate_view(self, result: ViewResult) -> EngineOutput:
        out = EngineOutput()
        for rule in self.rules:
            if rule.signal.source != "window" or rule.signal.family != result.family:
                continue
            if rule.baseline_ms is not None and result.view == "1m":
                self.baselines.record(rule, result, out)
            if rule.window == result.view:
                observations = self.observe_view(rule, result)
                self._step(rule, observations, result.end_ms, out)
        self._expire(out)
        return out

    def evaluate_pipeline(self, source: PipelineSource, now_ms: int) -> EngineOutput:
        out = EngineOutput()
        for rule in self.rules:
            if rule.signal.source != "pipeline":
                continue
            observations = source.observe(rule, now_ms)
            if observations is not None:
                self._step(rule, observations, now_ms, out, source.can_clear(rule, now_ms))
        self._expire(out)
        return out

    def observe_view(self, rule: Rule, result: ViewResult) -> list[Observation]:
        signal = rule.signal
        span = {"start_ms": result.start_ms, "end_ms": result.end_ms}
        if not signal.additive:
            assert signal.value is not None and signal.volume is not None
            observations = []
            for row in select_rows(rule, result.rows):
                value = signal.value(row)
                if value is not None:
                    group = tuple(str(row.get(b)) for b in rule.by)
                    samples = row_samples([row])
                    observations.append(
                        Observation(group, value, signal.volume(row), **span, samples=samples)
                    )
            return observations
        observations = []
        rows_by_group = group_rows(rule, result.rows)
        for group, (num, den) in sum_groups(rule, result.rows).items():
            if den <= 0:
                continue
            value = num / den
            baseline = None
            if rule.baseline_ms is not None:
                b_num, b_den = self.baselines.level(rule, group, result.start_ms)
                if b_den < rule.baseline_min_volume or b_den <= 0 or b_num <= 0:
                    self.stats.setdefault(rule.id, RuleStats()).no_baseline += 1
                    continue  # no trustworthy baseline yet
                baseline = b_num / b_den
                value = 1.0 - value / baseline
            samples = row_samples(rows_by_group.get(group, ()))
            observations.append(
                Observation(
                    group, value, den, **span, samples=samples, count=round(num, 6),
                    baseline=baseline,
                )
            )  # fmt: skip
        return observations

    # ------------------------------------------------------------------ state machine
    def _labels(self, rule: Rule, group: tuple[str, ...]) -> dict[str, str]:
        labels = {"alertname": rule.alert, "severity": rule.severity, **rule.labels}
        labels.update(zip(rule.by, group, strict=True))
        return labels

    def _annotations(
        self, rule: Rule, obs: Observation, labels: Mapping[str, str]
    ) -> dict[str, str]:
        dims = ", ".join(f"{b}={labels[b]}" for b in rule.by) or "all"
        unit = "ratio" if rule.baseline_ms is not None else rule.signal.unit
        fields = {
            "alertname": rule.alert,
            "severity": rule.severity,
            "signal": rule.signal.name,
            "value": format_value(obs.value, unit),
            "threshold": format_value(rule.threshold, unit),
            "window": rule.window or "now",
            "volume": f"{obs.volume:g}",
            "labels": dims,
        }
        annotations = {
            "summary": rule.summary.format(**fields),
            "description": rule.description.format(**fields),
            "value": f"{obs.value:.6g}",
            "threshold": f"{rule.threshold:g}",
            "window": rule.window or "",
        }
        if obs.count is not None:
            annotations["evidence"] = evidence(rule, obs)
        if rule.runbook_url:
            annotations["runbook_url"] = rule.runbook_url
        if obs.samples:
            annotations["sample_event_ids"] = ", ".join(obs.samples)
        topic = self.topics.get(rule.signal.family)
        if topic and obs.start_ms is not None and obs.end_ms is not None:
            annotations["window_start"] = iso(obs.start_ms)
            annotations["window_end"] = iso(obs.end_ms)
            annotations["replay"] = (
                f"expmon replay --topic {topic} --from {iso(obs.start_ms)} --to {iso(obs.end_ms)}"
            )
        return annotations

    def _step(
        self,
        rule: Rule,
        observations: list[Observation],
        now_ms: int,
        out: EngineOutput,
        can_clear: bool = True,
    ) -> None:
        breaching: set[str] = set()
        stats = self.stats.setdefault(rule.id, RuleStats())
        stats.evaluations += 1
        for fp in [f for f, h in self.held_back.items() if h["rule_id"] == rule.id]:
            del self.held_back[fp]
        for obs in observations:
            verdict = judge(rule, obs)
            stats.add(rule, obs, verdict)
            if verdict.breached and not verdict.significant:
                labels = self._labels(rule, obs.group)
                self.held_back[fingerprint(labels)] = {
                    "rule_id": rule.id, "alert": rule.alert, "severity": rule.severity,
                    "labels": labels, "at_ms": now_ms, "evidence": evidence(rule, obs, verdict),
                }  # fmt: skip
            if not verdict.significant:
                continue
            labels = self._labels(rule, obs.group)
            fp = fingerprint(labels)
            breaching.add(fp)
            inst = self.instances.get(fp)
            annotations = self._annotations(rule, obs, labels)
            if inst is None or inst.state == "resolved":
                inst = AlertInstance(
                    fp, rule.alert, rule.severity, labels, annotations, "pending", now_ms,
                    obs.value, obs.volume,
                )  # fmt: skip
                self.instances[fp] = inst
            else:
                inst.annotations, inst.value, inst.volume = annotations, obs.value, obs.volume
                inst.cleared_since_ms = None
            worse = obs.value > (inst.peak or 0) if rule.op == ">" else obs.value < (inst.peak or 0)
            if inst.peak is None or worse:
                inst.peak = obs.value
            if inst.state == "pending" and now_ms - inst.active_since_ms >= rule.for_ms:
                inst.state = "firing"
                inst.fired_at_ms = now_ms
                inst.starts_at = self.clock()
                out.transitions.append(Transition("firing", _copy(inst), rule.id))
            out.writes[PREFIX + "inst/" + fp] = inst.to_dict()
        for fp, inst in list(self.instances.items()):
            if fp in breaching or inst.alert != rule.alert or inst.severity != rule.severity:
                continue
            if not can_clear:
                continue
            if inst.state == "pending":
                del self.instances[fp]
                out.deletes.append(PREFIX + "inst/" + fp)
            elif inst.state == "firing":
                if inst.cleared_since_ms is None:
                    inst.cleared_since_ms = now_ms
                if now_ms - inst.cleared_since_ms >= rule.keep_firing_for_ms:
                    inst.state = "resolved"
                    inst.resolved_at_ms = now_ms
                    inst.ends_at = self.clock()
                    out.transitions.append(Transition("resolved", _copy(inst), rule.id))
                out.writes[PREFIX + "inst/" + fp] = inst.to_dict()

    def _expire(self, out: EngineOutput) -> None:
        """Forget resolved instances once sinks have had time to re-deliver the resolve."""
        horizon = self.clock() - RESOLVED_RETENTION_S
        for fp, inst in list(self.instances.items()):
            if inst.state == "resolved" and (inst.ends_at or 0) < horizon:
                del self.instances[fp]
                out.deletes.append(PREFIX + "inst/" + fp)

    # ------------------------------------------------------------------ views of state
    def notifiable(self) -> list[AlertInstance]:
        """Firing instances and recently resolved ones: what sinks should (re)deliver."""
        return [_copy(i) for i in self.instances.values() if i.state != "pending"]

    def firing_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for rule in self.rules:
            counts.setdefault((rule.alert, rule.severity), 0)
        for inst in self.instances.values():
            if inst.state == "firing":
                key = (inst.alert, inst.severity)
                counts[key] = counts.get(key, 0) + 1
        return counts

    # ------------------------------------------------------------------ restore
    def restore(self, items: Iterable[tuple[str, Any]]) -> None:
        self.instances.clear()
        self.baselines = Baselines()
        known = {(r.alert, r.severity) for r in self.rules}
        for key, value in items:
            if not key.startswith(PREFIX):
                continue
            parts = key[len(PREFIX) :].split("/")
            if parts[0] == "inst":
                inst = AlertInstance.from_dict(value)
                if (inst.alert, inst.severity) in known:
                    self.instances[inst.fingerprint] = inst
                else:
                    log.warning(
                        "alert %s (%s) has no rule any more: dropped", inst.alert, inst.fingerprint
                    )
            elif parts[0] == "base":
                self.baselines.restore(parts[1], int(parts[2]), value)


def _copy(inst: AlertInstance) -> AlertInstance:
    return AlertInstance.from_dict(
        {**inst.to_dict(), "labels": dict(inst.labels), "annotations": dict(inst.annotations)}
    )
