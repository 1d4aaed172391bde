"""Replay: the live processors and rules over a bounded range of records, in isolation.

No Kafka here. A caller feeds batches of records, read from Kafka or from a recorded
file, and calls `finish()` at the end of the range. The records go through the same
stages, window mergers and alert engine classes as in a worker (`live=False`: no
wall-clock idle advance), with state in memory only, so a replay cannot touch a live
consumer group, live state or a live sink.

Everything runs on event time: validation's "now" is the record's broker timestamp (the
moment the live worker would have seen it), the alert engine's clock is the end of the
view it evaluates, and the end of the range is one final watermark for every partition.
The report therefore depends on the records only, not on the wall clock, the pace, or
how the records were spread over partitions (as long as that spread makes no event late).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from expmon.alerting.engine import AlertEngine, Transition
from expmon.alerting.rules import Rule
from expmon.engine.merge import ViewResult, WindowMerger
from expmon.engine.stage import StageOutput, WindowedStage
from expmon.engine.windows import window_end
from expmon.exposition.metrics import Metrics
from expmon.families import registry
from expmon.settings import Settings

log = logging.getLogger(__name__)

OUTCOMES = ("accepted", "invalid", "late", "duplicate")
REPORT_VERSION = 1


class ReplayRecord(NamedTuple):
    """One input record with its Kafka coordinates (as read, or as recorded).

    A NamedTuple rather than a frozen dataclass: one is built per record replayed, and a
    frozen dataclass pays an `object.__setattr__` per field."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class AlertTimeline:
    """Firing and resolve transitions of one rule set, in event time."""

    name: str
    engine: AlertEngine
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, transitions: Iterable[Transition]) -> None:
        for t in transitions:
            inst = t.instance
            at = inst.fired_at_ms if t.state == "firing" else inst.resolved_at_ms
            self.entries.append(
                {
                    "at_ms": at,
                    "state": t.state,
                    "alertname": inst.alert,
                    "severity": inst.severity,
                    "fingerprint": inst.fingerprint,
                    "labels": dict(sorted(inst.labels.items())),
                    "value": inst.value,
                    "volume": inst.volume,
                    "summary": inst.annotations.get("summary", ""),
                    "sample_event_ids": inst.annotations.get("sample_event_ids", ""),
                    # for the report's story: peak vs threshold, where to look, how to rerun
                    "peak": inst.peak,
                    "threshold": _number(inst.annotations.get("threshold")),
                    "evidence": inst.annotations.get("evidence", ""),
                    "runbook_url": inst.annotations.get("runbook_url", ""),
                    "replay": inst.annotations.get("replay", ""),
                }
            )

    def rules(self) -> list[dict[str, Any]]:
        """Each rule level as evaluated, with what it saw (why it fired or did not)."""
        out = []
        for rule in self.engine.rules:
            stats = self.engine.stats.get(rule.id)
            out.append(
                {
                    "id": rule.id,
                    "alert": rule.alert,
                    "severity": rule.severity,
                    "signal": rule.signal.name,
                    "source": rule.signal.source,
                    "family": rule.signal.family,
                    "unit": "ratio" if rule.baseline_ms is not None else rule.signal.unit,
                    "window": rule.window,
                    "op": rule.op,
                    "threshold": rule.threshold,
                    "min_volume": rule.min_volume,
                    "for_s": rule.for_ms // 1000,
                    "by": list(rule.by),
                    "baseline_s": rule.baseline_ms // 1000 if rule.baseline_ms else None,
                    "baseline_min_volume": rule.baseline_min_volume,
                    "significance": rule.significance,
                    "confidence": rule.confidence,
                    "runbook_url": rule.runbook_url,
                    "origin": rule.origin,
                    "seen": asdict(stats) if stats is not None else None,
                }
            )
        return out

    def sorted_entries(self) -> list[dict[str, Any]]:
        return sorted(self.entries, key=lambda e: (e["at_ms"], e["fingerprint"], e["state"]))


class ReplayPipeline:
    """Stages, mergers and alert engines of one replay.

    `partitions`: input topic -> its partition count (every partition reports progress,
    so windows become final even where a partition had nothing in the range).
    `candidate_rules`: a second rule set evaluated on the same windows (rule what-ifs).
    """

    def __init__(
        self,
        settings: Settings,
        partitions: Mapping[str, int],
        rules: Sequence[Rule],
        candidate_rules: Sequence[Rule] | None = None,
        metrics: Metrics | None = None,
        on_result: Callable[[ViewResult], None] | None = None,
    ) -> None:
        families = registry.by_topic(settings)
        unknown = sorted(set(partitions) - families.keys())
        if unknown:
            raise ValueError(f"not an input topic of these settings: {', '.join(unknown)}")
        self.settings = settings
        self.metrics = metrics
        self.on_result = on_result
        self.stages: dict[str, WindowedStage[Any]] = {}
        self.mergers: dict[str, WindowMerger[Any]] = {}
        for topic, count in partitions.items():
            family = families[topic]
            stage = self.stages[topic] = family.new_stage(settings, count, live=False)
            stage.persist = False
            self.mergers[str(family.name)] = family.new_merger(settings)
            if metrics is not None:
                metrics.attach(stage)
        topics = {str(s.family): t for t, s in self.stages.items()}
        self.clock_ms = 0
        self.timelines = [AlertTimeline("rules", AlertEngine(rules, topics, self._clock))]
        if candidate_rules is not None:
            engine = AlertEngine(candidate_rules, topics, self._clock)
            self.timelines.append(AlertTimeline("candidate", engine))
        self.counts: dict[str, Counter[str]] = {topic: Counter() for topic in self.stages}
        self.dead_letters: Counter[str] = Counter()
        self.windows: dict[str, ViewResult] = {}
        self.records = 0
        self.finished = False

    @property
    def events(self) -> int:
        """Events accepted so far, all topics."""
        return sum(counts["accepted"] for counts in self.counts.values())

    def _clock(self) -> float:
        """The engines' clock: event time (the latest view end), never the wall clock."""
        return self.clock_ms / 1000

    # ------------------------------------------------------------------ input
    def feed(self, batch: Sequence[ReplayRecord]) -> None:
        """Process a batch; records of one partition must come in offset order."""
        for topic, records in _by_topic(batch).items():
            stage = self.stages.get(topic)
            if stage is None:
                raise ValueError(f"record of topic {topic!r}, which this replay does not read")
            # Validation's "now" is when the broker took the record, as live.
            now_ms = max(map(_timestamp_ms, records))
            self._take(stage, stage.process(records, now_ms=now_ms))
            self.records += len(records)

    def finish(self) -> None:
        """End of the range: one final watermark closes every window of every topic."""
        if self.finished:
            return
        self.finished = True
        ends = [e for e in (s.max_event_ms() for s in self.stages.values()) if e is not None]
        if not ends:
            return
        through = window_end(max(ends), self.settings.window_ms)
        for stage in self.stages.values():
            self._take(stage, stage.finish(through_ms=through))

    # ------------------------------------------------------------------ plumbing
    def _take(self, stage: WindowedStage[Any], out: StageOutput) -> None:
        counts = self.counts[stage.topic]
        for outcome, n in out.counts.items():
            counts[outcome] += n
        for letter in out.dead_letters:
            self.dead_letters[letter.reason] += 1
        if self.metrics is not None:
            self.metrics.count_outcomes(stage.topic, out.counts)
            for letter in out.dead_letters:
                self.metrics.dead_letters.labels(stage.topic, letter.reason).inc()
        if out.partials:
            merger = self.mergers[str(stage.family)]
            for result in merger.apply(out.partials).results:
                self._on_view(result)

    def _on_view(self, result: ViewResult) -> None:
        self.clock_ms = max(self.clock_ms, result.end_ms)
        self.windows[result.record_key] = result
        for timeline in self.timelines:
            timeline.add(timeline.engine.evaluate_view(result).transitions)
        if self.metrics is not None:
            self.metrics.board.update(result)
            self.metrics.windows_final.labels(result.family, result.view).inc()
            self.metrics.set_firing(self.timelines[0].engine.firing_counts())
        if self.on_result is not None:
            self.on_result(result)

    # ------------------------------------------------------------------ report
    def report(self) -> dict[str, Any]:
        """Everything the replay found, in a canonical order (see `report_bytes`)."""
        timelines = {t.name: t.sorted_entries() for t in self.timelines}
        report: dict[str, Any] = {
            "expmon_replay_report": REPORT_VERSION,
            "events": {
                topic: {o: counts.get(o, 0) for o in OUTCOMES}
                for topic, counts in sorted(self.counts.items())
            },
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "windows": [_canonical_view(self.windows[k]) for k in sorted(self.windows, key=_order)],
            "alerts": timelines["rules"],
            "rules": self.timelines[0].rules(),
        }
        if "candidate" in timelines:
            report["what_if"] = what_if(timelines["rules"], timelines["candidate"])
        return report


_topic, _timestamp_ms = attrgetter("topic"), attrgetter("timestamp_ms")


def _by_topic(batch: Sequence[ReplayRecord]) -> dict[str, Sequence[ReplayRecord]]:
    """The batch's records per topic, in order; a batch of one topic (most replays read
    one) as it is, without a list built record by record."""
    topics = set(map(_topic, batch))
    if len(topics) == 1:
        return {topics.pop(): batch}
    by_topic: dict[str, list[ReplayRecord]] = {}
    for record in batch:
        by_topic.setdefault(record.topic, []).append(record)
    return dict(by_topic)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _order(record_key: str) -> tuple[str, int, str]:
    family, view, end = record_key.split("/")
    return family, int(end), view


def _canonical_view(result: ViewResult) -> dict[str, Any]:
    """A view with rows in a fixed order: merge order must not show in the report."""
    data = result.to_dict()
    data["rows"] = sorted((canonical(row) for row in result.rows), key=_row_order)
    return data


def _row_order(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in sorted(row.items()) if isinstance(v, str))


def canonical(value: Any) -> Any:
    """Floats to 12 significant digits: sums merged in another order differ in the last
    bits, and the report must be byte-identical however the input was partitioned."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def _transition_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return entry["at_ms"], entry["fingerprint"], entry["state"]


def what_if(live: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> dict[str, Any]:
    """Transitions the candidate rules add or drop compared with the live rules."""
    live_keys = {_transition_key(e) for e in live}
    candidate_keys = {_transition_key(e) for e in candidate}
    return {
        "candidate": candidate,
        "only_live": [e for e in live if _transition_key(e) not in candidate_keys],
        "only_candidate": [e for e in candidate if _transition_key(e) not in live_keys],
    }
