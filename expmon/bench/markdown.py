"""`expmon bench --markdown`: the README's benchmark tables from a bench report.

Works on the JSON report (`expmon bench --output`), so a saved run renders the same
(`expmon bench --markdown-from FILE`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from expmon.bench.scenarios import BATCH, RATIO_PAIRS, REPORTED, SINGLE

Figures = Mapping[tuple[str, str], Mapping[str, Any]]  # (scenario, dataset) -> result


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rss(result: Mapping[str, Any] | None) -> str:
    value = None if result is None else result.get("peak_rss_mb")
    return "-" if value is None else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def events_per_s(figures: Figures, scenario: str, dataset: str) -> float | None:
    result = figures.get((scenario, dataset))
    return None if result is None else result.get("events_per_s")


def ratio(figures: Figures, subject: str, reference: str, dataset: str) -> float | None:
    """subject's events/s over reference's on one dataset; None if either has no figure."""
    top = events_per_s(figures, subject, dataset)
    bottom = events_per_s(figures, reference, dataset)
    return top / bottom if top is not None and bottom else None


def machine_line(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    peers = ", ".join(f"{name} {version}" for name, version in report.get("peers", {}).items())
    load = report.get("load_average")
    return (
        f"{report.get('date', 'date unknown')}; {m['cores']} cores, {m['ram_gb']} GB RAM, "
        f"{m['cpu']}; Python {m['python']}, Kafka {m['kafka']}"
        + (f"; peers: {peers}" if peers else "")
        + (f"; load average at the end {' / '.join(map(str, load))}" if load else "")
    )


def throughput_table(figures: Figures, batch_size: int) -> list[str]:
    lines = [
        f"| scenario | single-event records, ev/s | {batch_size}-event records, ev/s "
        "| peak RSS MB (single / batch) |",
        "|---|---:|---:|---:|",
    ]
    for scenario in _present(figures, REPORTED):
        rss = " / ".join(_rss(figures.get((scenario, d))) for d in (SINGLE, BATCH))
        lines.append(
            f"| {scenario} | {_rate(events_per_s(figures, scenario, SINGLE))} "
            f"| {_rate(events_per_s(figures, scenario, BATCH))} | {rss} |"
        )
    return lines


def ratio_table(
    figures: Figures, batch_size: int, pairs: Sequence[tuple[str, str]] = RATIO_PAIRS
) -> list[str]:
    lines = [
        f"| ratio | single-event records | {batch_size}-event records |",
        "|---|---:|---:|",
    ]
    for subject, reference in pairs:
        single = ratio(figures, subject, reference, SINGLE)
        batch = ratio(figures, subject, reference, BATCH)
        if single is not None or batch is not None:
            lines.append(f"| {subject} / {reference} | {_times(single)} | {_times(batch)} |")
    return lines


def markdown_report(report: Mapping[str, Any]) -> str:
    """Both tables and the machine line, ready to paste into README.md."""
    figures: dict[tuple[str, str], Mapping[str, Any]] = {
        (r["scenario"], r["dataset"]): r for r in report.get("results", ())
    }
    batch_size = int(report.get("batch_size", 100))
    parts = [
        machine_line(report),
        "",
        *throughput_table(figures, batch_size),
        "",
        *ratio_table(figures, batch_size),
    ]
    skipped = report.get("skipped", ())
    if skipped:
        parts += ["", "Skipped: " + "; ".join(f"{s['scenario']} ({s['reason']})" for s in skipped)]
    return "\n".join(parts) + "\n"


def _present(figures: Figures, order: Sequence[str]) -> list[str]:
    seen = {scenario for scenario, _ in figures}
    return [s for s in order if s in seen]
