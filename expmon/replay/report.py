"""Replay reports: canonical JSON bytes, and the incident story in Markdown and on the console.

The JSON report is the record (byte-identical for the same input). The Markdown and the
console tell what happened in it: the range and source, the rules in force, each alert
as an interval (start, end or "still firing", duration, peak against its threshold,
dimensions, runbook, sample events, the `expmon replay` command of its window), the
worst window each rule saw per family, and, for a rule that did not fire, why not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from expmon.alerting.signals import Unit, format_value
from expmon.replay.session import canonical
from schemas.eventtime import format_ms

OUTCOMES = ("accepted", "invalid", "late", "duplicate")


@dataclass(frozen=True)
class ReportContext:
    """What the report cannot know from the records: where they came from, which rule
    files were in force, and the command that produced it."""

    source: str = "records fed to the replay pipeline"
    rule_files: tuple[str, ...] = ("alerts/defaults.yml",)
    command: str = ""
    title: str = "Replay report"


def report_bytes(report: Mapping[str, Any]) -> bytes:
    """Canonical JSON: the same replay gives the same bytes."""
    return orjson.dumps(canonical(dict(report)), option=orjson.OPT_INDENT_2) + b"\n"


# ---------------------------------------------------------------- the story, as data
@dataclass(frozen=True)
class Interval:
    """One alert instance from firing to resolve (or to the end of the range)."""

    alert: str
    severity: str
    dimensions: str
    start_ms: int
    end_ms: int | None  # None: still firing at the end of the range
    range_end_ms: int
    peak: float
    threshold: float | None
    op: str
    unit: Unit
    summary: str
    evidence: str
    runbook_url: str
    samples: str
    replay: str

    @property
    def duration_ms(self) -> int:
        return (self.end_ms if self.end_ms is not None else self.range_end_ms) - self.start_ms

    def peak_text(self) -> str:
        peak = format_value(self.peak, self.unit)
        if self.threshold is None:
            return peak
        return f"{peak} {self.op} {format_value(self.threshold, self.unit)}"


def dimensions(labels: Mapping[str, str], rule_labels: Iterable[str] = ()) -> str:
    skip = {"alertname", "severity", *rule_labels}
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip) or "all"


def range_of(report: Mapping[str, Any]) -> tuple[int, int] | None:
    """Event-time span of the replay: first window start to last window end."""
    # the finest view: longer views reach back before the first record
    windows = [w for w in report.get("windows") or [] if w["view"] == "1m"]
    windows = windows or list(report.get("windows") or [])
    if not windows:
        return None
    return min(int(w["start_ms"]) for w in windows), max(int(w["end_ms"]) for w in windows)


def _rules_by_level(report: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(r["alert"], r["severity"]): r for r in report.get("rules") or []}


def intervals(report: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> list[Interval]:
    """Firing/resolved transitions paired per fingerprint, in order of start."""
    span = range_of(report)
    range_end = span[1] if span else 0
    rules = _rules_by_level(report)
    open_: dict[str, Mapping[str, Any]] = {}
    out: list[Interval] = []

    def close(first: Mapping[str, Any], last: Mapping[str, Any] | None) -> None:
        rule = rules.get((first["alertname"], first["severity"]), {})
        peak_source = last if last is not None else first
        peak = peak_source.get("peak")
        out.append(
            Interval(
                alert=str(first["alertname"]),
                severity=str(first["severity"]),
                dimensions=dimensions(first["labels"]),
                start_ms=int(first["at_ms"]),
                end_ms=int(last["at_ms"]) if last is not None else None,
                range_end_ms=max(range_end, int(first["at_ms"])),
                peak=float(peak if peak is not None else first["value"]),
                threshold=first.get("threshold", rule.get("threshold")),
                op=str(rule.get("op", ">")),
                unit=rule.get("unit", "ratio"),
                summary=str(first.get("summary", "")),
                evidence=str(first.get("evidence", "")),
                runbook_url=str(first.get("runbook_url") or rule.get("runbook_url", "")),
                samples=str(first.get("sample_event_ids", "")),
                replay=str(first.get("replay", "")),
            )
        )

    for entry in entries:
        fp = str(entry["fingerprint"])
        if entry["state"] == "firing":
            if fp in open_:  # a second firing without a resolve in between: close the first
                close(open_.pop(fp), None)
            open_[fp] = entry
        elif fp in open_:
            close(open_.pop(fp), entry)
    for entry in open_.values():
        close(entry, None)
    return sorted(out, key=lambda i: (i.start_ms, i.alert, i.severity, i.dimensions))


def why_not(rule: Mapping[str, Any]) -> str:
    """Why a rule level raised nothing, from what it saw."""
    seen = rule.get("seen") or {}
    unit: Unit = rule.get("unit", "ratio")
    if rule["source"] == "pipeline":
        return "wall-clock pipeline rule: evaluated by live workers, not in a replay"
    if not seen.get("evaluations"):
        return f"no {rule['window']} window of {rule['family']} closed in the range"
    if not seen.get("observations") and seen.get("no_baseline"):
        return (
            f"no trustworthy baseline: the trailing {duration_text(rule['baseline_s'] * 1000)} "
            f"held fewer than baseline_min_volume {rule['baseline_min_volume']:g}"
        )
    if not seen.get("observations"):
        return f"no {rule['window']} window had rows for {rule['signal']}"
    if not seen.get("with_volume"):
        return (
            f"no window reached min_volume {rule['min_volume']:g} "
            f"(the most was {seen.get('max_volume', 0):g})"
        )
    threshold = format_value(float(rule["threshold"]), unit)
    if not seen.get("breaches"):
        worst = seen.get("peak_evidence") or format_value(float(seen.get("peak") or 0), unit)
        where = dimensions(dict(zip(rule["by"], seen.get("peak_group") or (), strict=False)))
        return f"never {rule['op']} {threshold}: worst {worst} ({where})"
    if seen.get("not_significant") == seen.get("breaches"):
        return (
            f"{seen['breaches']} window(s) {rule['op']} {threshold}, none significant, "
            f"e.g. {seen.get('near_miss', '')}"
        )
    return f"{rule['op']} {threshold} in {seen['breaches']} window(s), never for {rule['for_s']} s"


def verdicts(report: Mapping[str, Any]) -> list[list[str]]:
    """Per rule level: its condition, windows judged, and fired N times or why not."""
    fired = Counter(
        (e["alertname"], e["severity"])
        for e in report.get("alerts") or []
        if e["state"] == "firing"
    )
    rows = []
    for rule in report.get("rules") or []:
        unit: Unit = rule.get("unit", "ratio")
        condition = f"{rule['op']} {format_value(float(rule['threshold']), unit)}"
        if rule["window"]:
            condition += f" over {rule['window']}"
        if rule["min_volume"]:
            condition += f", volume >= {rule['min_volume']:g}"
        if rule["significance"] != "none":
            condition += f", {rule['confidence'] * 100:g} % {rule['significance'].capitalize()}"
        n = fired[(rule["alert"], rule["severity"])]
        seen = rule.get("seen") or {}
        verdict = f"fired {n}x" if n else why_not(rule)
        judged = str(seen.get("observations", 0)) if rule["source"] == "window" else "-"
        rows.append([rule["alert"], rule["severity"], condition, judged, verdict])
    return rows


def worst_windows(report: Mapping[str, Any]) -> list[list[str]]:
    """Per family, the worst value each window rule saw (with enough volume)."""
    rows = []
    best: dict[tuple[str, str], Mapping[str, Any]] = {}
    for rule in report.get("rules") or []:
        # one row per alert: its first level (the levels share the signal and window)
        best.setdefault((rule["family"], rule["alert"]), rule)
    for (family, alert), rule in sorted(best.items()):
        seen = rule.get("seen") or {}
        if rule["source"] != "window" or seen.get("peak") is None:
            continue
        unit: Unit = rule.get("unit", "ratio")
        where = dimensions(dict(zip(rule["by"], seen.get("peak_group") or (), strict=False)))
        end = seen.get("peak_end_ms")
        rows.append(
            [
                family,
                alert,
                seen.get("peak_evidence") or format_value(float(seen["peak"]), unit),
                where,
                _clock(int(end)) if end is not None else "?",
                f"{rule['op']} {format_value(float(rule['threshold']), unit)}",
            ]
        )
    return rows


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration_text(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _end_text(interval: Interval) -> str:
    return _clock(interval.end_ms) if interval.end_ms is not None else "still firing"


def _duration(interval: Interval) -> str:
    text = duration_text(interval.duration_ms)
    return text if interval.end_ms is not None else f">= {text}"


def headline(report: Mapping[str, Any], found: Sequence[Interval]) -> str:
    if not found:
        return "Nothing fired. Why, per rule, is under Rules."
    still = sum(1 for i in found if i.end_ms is None)
    alerts = len({i.alert for i in found})
    text = f"{len(found)} alert interval(s) of {alerts} alert(s)"
    return text + (
        f"; {still} still firing at the end of the range." if still else ", all resolved."
    )


# ---------------------------------------------------------------- Markdown
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _timeline_rows(entries: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            format_ms(int(e["at_ms"])) if e.get("at_ms") is not None else "?",
            str(e["state"]),
            str(e["alertname"]),
            str(e["severity"]),
            dimensions(e["labels"]),
            f"{e['value']:.4g}",
        ]
        for e in entries
    ]


TIMELINE_HEADER = ["event time", "state", "alert", "severity", "labels", "value"]
INTERVAL_HEADER = ["#", "alert", "severity", "dimensions", "start", "end", "duration", "peak"]
RULES_HEADER = ["alert", "level", "condition", "judged", "verdict"]
WORST_HEADER = ["family", "rule", "worst window", "where", "window end", "threshold"]


def window_summary(report: Mapping[str, Any]) -> list[list[str]]:
    """Per family and view: how many windows closed and the span of their ends."""
    spans: dict[tuple[str, str], list[int]] = {}
    for w in report["windows"]:
        spans.setdefault((w["family"], w["view"]), []).append(int(w["end_ms"]))
    return [
        [family, view, str(len(ends)), format_ms(min(ends)), format_ms(max(ends))]
        for (family, view), ends in sorted(spans.items())
    ]


def _interval_rows(found: Sequence[Interval]) -> list[list[str]]:
    return [
        [
            str(n),
            i.alert,
            i.severity,
            i.dimensions,
            _clock(i.start_ms),
            _end_text(i),
            _duration(i),
            i.peak_text(),
        ]
        for n, i in enumerate(found, 1)
    ]


def by_alert(found: Sequence[Interval]) -> list[list[str]]:
    """One row per alert: how many instances, when, the worst peak, what they cover."""
    groups: dict[str, list[Interval]] = {}
    for i in found:
        groups.setdefault(i.alert, []).append(i)
    rows = []
    for alert, items in groups.items():
        op = items[0].op
        worst = max(items, key=lambda i: i.peak if op == ">" else -i.peak)
        values: dict[str, set[str]] = {}
        for i in items:
            for pair in i.dimensions.split(", "):
                key, _, value = pair.partition("=")
                if value:
                    values.setdefault(key, set()).add(value)
        covered = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(values.items()))
        still = sum(1 for i in items if i.end_ms is None)
        ends = [i.end_ms for i in items if i.end_ms is not None]
        last = "still firing" if still else _clock(max(ends)) if ends else "?"
        severities = Counter(i.severity for i in items)
        levels = ", ".join(f"{n} {sev}" for sev, n in sorted(severities.items()))
        rows.append(
            [
                alert,
                f"{len(items)} ({levels})",
                _clock(min(i.start_ms for i in items)),
                last,
                f"{worst.peak_text()} ({worst.dimensions})",
                covered or "all",
            ]
        )
    return rows


BY_ALERT_HEADER = ["alert", "instances", "first start", "last end", "worst peak", "affected"]


def _range_text(report: Mapping[str, Any]) -> str:
    span = range_of(report)
    if span is None:
        return "no window closed"
    return f"{_clock(span[0])} .. {_clock(span[1])} UTC ({duration_text(span[1] - span[0])})"


def _events_text(report: Mapping[str, Any]) -> str:
    parts = []
    for topic, c in report["events"].items():
        extra = ", ".join(f"{c[o]} {o}" for o in OUTCOMES[1:] if c.get(o))
        parts.append(f"{topic} {c['accepted']} accepted" + (f" ({extra})" if extra else ""))
    return "; ".join(parts) or "none"


def render_markdown(report: Mapping[str, Any], context: ReportContext | None = None) -> str:
    context = context or ReportContext()
    found = intervals(report, report["alerts"])
    levels = report.get("rules") or []
    parts = [f"# {context.title}\n\n"]
    parts.append(f"- **Source:** {context.source}\n")
    parts.append(f"- **Range (event time):** {_range_text(report)}\n")
    parts.append(
        f"- **Rules:** {', '.join(context.rule_files)} "
        f"({len({r['alert'] for r in levels})} alerts, {len(levels)} levels)\n"
    )
    parts.append(f"- **Events:** {_events_text(report)}\n")
    if context.command:
        parts.append(f"- **Command:** `{context.command}`\n")
    parts.append(f"\n**{headline(report, found)}**\n")

    if found:
        parts.append("\n## By alert\n\n")
        parts.append(_md_table(BY_ALERT_HEADER, by_alert(found)))
    parts.append("\n## Alerts\n\n")
    parts.append(_md_table(INTERVAL_HEADER, _interval_rows(found)))
    for n, i in enumerate(found, 1):
        parts.append(f"\n### {n}. {i.alert} ({i.severity}) — {i.dimensions}\n\n")
        end = f"{_end_text(i)}" if i.end_ms is None else f"resolved {_clock(i.end_ms)}"
        parts.append(f"- **Interval:** {_clock(i.start_ms)} → {end} ({_duration(i)})\n")
        parts.append(f"- **Peak:** {i.peak_text().replace(f' {i.op} ', f' (threshold {i.op} ', 1)}"
                     f"{')' if i.threshold is not None else ''}\n")  # fmt: skip
        if i.evidence:
            parts.append(f"- **At firing:** {i.evidence}\n")
        if i.summary:
            parts.append(f"- **Summary:** {i.summary}\n")
        if i.runbook_url:
            parts.append(f"- **Runbook:** <{i.runbook_url}>\n")
        if i.samples:
            parts.append(f"- **Sample events:** {i.samples}\n")
        if i.replay:
            parts.append(f"- **Replay its window:** `{i.replay}`\n")

    parts.append("\n## Rules\n\n")
    parts.append(_md_table(RULES_HEADER, verdicts(report)))
    parts.append("\n## Worst windows by family\n\n")
    parts.append(_md_table(WORST_HEADER, worst_windows(report)))

    parts.append("\n## Events\n\n")
    parts.append(
        _md_table(
            ["topic", *OUTCOMES],
            [[topic, *(str(c[o]) for o in OUTCOMES)] for topic, c in report["events"].items()],
        )
    )
    if report.get("dead_letters"):
        parts.append("\nDead letters by reason: ")
        parts.append(", ".join(f"{r} {n}" for r, n in report["dead_letters"].items()) + "\n")
    parts.append("\n## Closed windows\n\n")
    parts.append(_md_table(["family", "view", "windows", "first end", "last end"],
                           window_summary(report)))  # fmt: skip
    parts.append("\n## Alert transitions (rules in force)\n\n")
    parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(report["alerts"])))
    what_if = report.get("what_if")
    if what_if is not None:
        parts.append("\n## What if: candidate rules\n\n")
        parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(what_if["candidate"])))
        parts.append("\n### Only with the rules in force\n\n")
        parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(what_if["only_live"])))
        parts.append("\n### Only with the candidate rules\n\n")
        parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(what_if["only_candidate"])))
    return "".join(parts)


# ---------------------------------------------------------------- console
def render_console(
    report: Mapping[str, Any], console: Any, context: ReportContext | None = None
) -> None:
    """The story on a terminal. Tables fold their cells instead of cutting them and drop
    their least needed columns on narrow terminals; long links go on their own lines."""
    from rich.table import Table

    context = context or ReportContext()
    width = int(console.width)
    found = intervals(report, report["alerts"])
    console.print(f"[bold]{context.title}[/bold]: {context.source}", overflow="fold")
    console.print(f"range {_range_text(report)}; rules {', '.join(context.rule_files)}",
                  overflow="fold")  # fmt: skip
    console.print(f"events: {_events_text(report)}", overflow="fold")
    console.print(f"[bold]{headline(report, found)}[/bold]", overflow="fold")

    def table(title: str, header: list[str], rows: list[list[str]], drop: Sequence[str]) -> None:
        def natural(name: str) -> int:  # a column's width, long cells folded at 28
            i = header.index(name)
            return max([len(name)] + [min(len(r[i]), 28) for r in rows]) + 3

        keep = list(header)
        for name in drop:  # columns given up, in order, while the table is too wide
            if sum(natural(h) for h in keep) <= width:
                break
            keep.remove(name)
        t = Table(title=title, expand=False, show_lines=False)
        for name in keep:
            t.add_column(name, overflow="fold")
        for row in rows:
            t.add_row(*(row[header.index(h)] for h in keep))
        console.print(t)

    if found:
        table("by alert", BY_ALERT_HEADER, by_alert(found), drop=("first start", "last end"))
        rows = _interval_rows(found)
        table("alerts", INTERVAL_HEADER, rows, drop=("#", "end", "severity"))
        for n, i in enumerate(found, 1):
            details = [f"{n}. {i.alert} {i.dimensions}"]
            if i.runbook_url:
                details.append(f"   runbook {i.runbook_url}")
            if i.samples:
                details.append(f"   samples {i.samples}")
            if i.replay:
                details.append(f"   replay  {i.replay}")
            for line in details:
                console.print(line, overflow="fold", markup=False, highlight=False)
    table("rules", RULES_HEADER, verdicts(report), drop=("judged", "condition"))
    worst = worst_windows(report)
    if worst:
        table("worst windows", WORST_HEADER, worst, drop=("window end", "threshold"))
    what_if = report.get("what_if")
    if what_if is not None:
        changed = Counter(e["state"] for e in what_if["only_candidate"])
        dropped = Counter(e["state"] for e in what_if["only_live"])
        console.print(
            f"candidate rules: {changed['firing']} firings only they raise, "
            f"{dropped['firing']} firings they would not raise"
        )
