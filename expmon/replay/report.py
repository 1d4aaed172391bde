"""Replay reports: canonical JSON bytes, Markdown, and the console summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from expmon.replay.session import canonical
from schemas.eventtime import format_ms


def report_bytes(report: Mapping[str, Any]) -> bytes:
    """Canonical JSON: the same replay gives the same bytes."""
    return orjson.dumps(canonical(dict(report)), option=orjson.OPT_INDENT_2) + b"\n"


def _labels(labels: Mapping[str, str]) -> str:
    skip = {"alertname", "severity"}
    return ", ".join(f"{k}={v}" for k, v in labels.items() if k not in skip) or "-"


def _timeline_rows(entries: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            format_ms(int(e["at_ms"])) if e.get("at_ms") is not None else "?",
            str(e["state"]),
            str(e["alertname"]),
            str(e["severity"]),
            _labels(e["labels"]),
            f"{e['value']:.4g}",
        ]
        for e in entries
    ]


TIMELINE_HEADER = ["event time", "state", "alert", "severity", "labels", "value"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def window_summary(report: Mapping[str, Any]) -> list[list[str]]:
    """Per family and view: how many windows closed and the span of their ends."""
    spans: dict[tuple[str, str], list[int]] = {}
    for w in report["windows"]:
        spans.setdefault((w["family"], w["view"]), []).append(int(w["end_ms"]))
    return [
        [family, view, str(len(ends)), format_ms(min(ends)), format_ms(max(ends))]
        for (family, view), ends in sorted(spans.items())
    ]


def render_markdown(report: Mapping[str, Any], title: str = "Replay report") -> str:
    parts = [f"# {title}\n"]
    parts.append("## Events\n")
    parts.append(
        _md_table(
            ["topic", "accepted", "invalid", "late", "duplicate"],
            [
                [topic, *(str(c[o]) for o in ("accepted", "invalid", "late", "duplicate"))]
                for topic, c in report["events"].items()
            ],
        )
    )
    if report.get("dead_letters"):
        parts.append("\nDead letters by reason: ")
        parts.append(", ".join(f"{r} {n}" for r, n in report["dead_letters"].items()) + "\n")
    parts.append("\n## Closed windows\n")
    parts.append(_md_table(["family", "view", "windows", "first end", "last end"],
                           window_summary(report)))  # fmt: skip
    parts.append("\n## Alert timeline (rules in force)\n")
    parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(report["alerts"])))
    what_if = report.get("what_if")
    if what_if is not None:
        parts.append("\n## What if: candidate rules\n")
        parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(what_if["candidate"])))
        parts.append("\n### Only with the rules in force\n")
        parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(what_if["only_live"])))
        parts.append("\n### Only with the candidate rules\n")
        parts.append(_md_table(TIMELINE_HEADER, _timeline_rows(what_if["only_candidate"])))
    return "".join(parts)


def render_console(report: Mapping[str, Any], console: Any) -> None:
    """A short summary with rich tables (the full detail is in the files)."""
    from rich.table import Table

    events = Table(title="events")
    for column in ("topic", "accepted", "invalid", "late", "duplicate"):
        events.add_column(column, justify="left" if column == "topic" else "right")
    for topic, c in report["events"].items():
        events.add_row(topic, *(str(c[o]) for o in ("accepted", "invalid", "late", "duplicate")))
    console.print(events)

    def timeline(title: str, entries: list[Mapping[str, Any]]) -> None:
        table = Table(title=title)
        for column in TIMELINE_HEADER:
            table.add_column(column)
        for row in _timeline_rows(entries):
            table.add_row(*row)
        console.print(table)

    timeline("alerts (rules in force)", report["alerts"])
    what_if = report.get("what_if")
    if what_if is not None:
        timeline("alerts (candidate rules)", what_if["candidate"])
        changed = Counter(e["state"] for e in what_if["only_candidate"])
        dropped = Counter(e["state"] for e in what_if["only_live"])
        console.print(
            f"candidate rules: {changed['firing']} firings only they raise, "
            f"{dropped['firing']} firings they would not raise"
        )
