"""The incident report: a golden Markdown file of a simulated incident, the console at
two widths, and the reasons a rule gave for not firing."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from expmon.alerting.rules import load_rules
from expmon.families.registry import SIGNALS
from expmon.replay.report import ReportContext, intervals, render_console, render_markdown
from expmon.replay.session import ReplayPipeline
from expmon.sim.encoding import encode_records
from expmon.sim.incidents import parse_incidents
from expmon.sim.journeys import TrafficGenerator
from tests.unit.replay.test_replay import SETTINGS, START, TOPICS, as_records, simulated

GOLDEN = Path(__file__).parent / "golden" / "incident-report.md"
RULES = """\
rules:
  - alert: PaymentFailureRateHigh
    threshold: 0.15
    min_volume: 20
"""
# Fixed words where a real run has its own file names and command line.
CONTEXT = ReportContext(
    source="recording incident.ndjson.gz",
    rule_files=("alerts/defaults.yml", "ops.yml"),
    command="expmon replay --file incident.ndjson.gz --markdown report.md",
)


def short_outage() -> list[tuple[str, str, bytes, int]]:
    """A 3-minute payment outage in 5 minutes of a small shop's traffic (5 events/s)."""
    generator = TrafficGenerator(
        seed=3, rate=5, start_ms=START, duration_s=300,
        incidents=parse_incidents(("payment_outage@1m+3m:provider=adyen",)),
        mix={"page_load": 0.6, "checkout": 0.4},
    )  # fmt: skip
    return [
        (TOPICS[r.family], r.key, r.value, r.time_ms)
        for r in encode_records(
            generator, batch_size=1, seed=3, partitions=dict.fromkeys(TOPICS, 3)
        )
    ]


def replay(
    tmp_path: Path, rules_text: str | None, items: list[tuple[str, str, bytes, int]] | None = None
) -> dict[str, Any]:
    files = []
    if rules_text is not None:
        path = tmp_path / "ops.yml"
        path.write_text(rules_text)
        files.append(path)
    rules = load_rules(files, SETTINGS.views, signals=SIGNALS)
    records, partitions = as_records(items if items is not None else simulated(), 3)
    pipeline = ReplayPipeline(SETTINGS, partitions, rules)
    for i in range(0, len(records), 500):
        pipeline.feed(records[i : i + 500])
    pipeline.finish()
    return pipeline.report()


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return replay(tmp_path_factory.mktemp("incident"), RULES)


def test_markdown_report_of_an_incident_matches_the_golden_file(incident: dict[str, Any]) -> None:
    """The simulated run has fixed event times (its records carry them), so the report is
    the same on every machine; regenerate with EXPMON_UPDATE_GOLDEN=1 and review the diff."""
    text = render_markdown(incident, CONTEXT)
    if os.environ.get("EXPMON_UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_the_report_tells_the_story(incident: dict[str, Any]) -> None:
    text = render_markdown(incident, CONTEXT)
    found = intervals(incident, incident["alerts"])
    transitions = incident["alerts"]
    # one interval per firing, however many transitions
    assert len(found) == sum(1 for e in transitions if e["state"] == "firing") < len(transitions)
    payments = [i for i in found if i.alert == "PaymentFailureRateHigh"]
    assert payments and all("provider=adyen" in i.dimensions for i in payments)
    # the peak of an interval is the worst value it reported, at any transition
    values = [e["value"] for e in transitions if e["alertname"] == "PaymentFailureRateHigh"]
    assert max(i.peak for i in payments) >= max(values)
    assert all(i.threshold is not None and i.peak > i.threshold for i in found)
    for needle in (
        "**Source:** recording incident.ndjson.gz",
        "**Range (event time):**",
        "alerts/defaults.yml, ops.yml",
        "https://github.com/expmon/expmon/blob/main/docs/runbooks.md#paymentfailureratehigh",
        "expmon replay --topic checkout-events --from ",
        "**Sample events:**",
        "## Worst windows by family",
        "no trustworthy baseline: the trailing 24h 00m held fewer than baseline_min_volume 100",
    ):
        assert needle in text, needle
    # a resolved interval shows its peak, not the value at the resolve
    assert "resolved" in text and "(threshold > " in text


def test_nothing_fired_says_why(tmp_path: Path) -> None:
    """Default rules on a short outage at a small shop's volume: min_volume 50 is never met."""
    report = replay(tmp_path, None, short_outage())
    text = render_markdown(report, CONTEXT)
    assert report["alerts"] == []
    assert "**Nothing fired. Why, per rule, is under Rules.**" in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if " | " in line}
    assert "no window reached min_volume 50 (the most was" in rows["PaymentFailureRateHigh"]
    assert "wall-clock pipeline rule" in rows["EventSourceSilent"]
    assert "no 1h window of logistics closed" in rows["ShippingSLABreach"]


@pytest.mark.parametrize("width", [80, 100, 200])
def test_console_report_fits_the_terminal_and_cuts_nothing(
    incident: dict[str, Any], width: int
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    render_console(incident, console, CONTEXT)
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    assert "…" not in text  # folded, not cut
    flat = "".join(line.strip(" │|") for line in lines)
    # every link whole once the folds are joined
    assert "https://github.com/expmon/expmon/blob/main/docs/runbooks.md#paymentfailureratehigh" in (
        flat.replace(" ", "")
    )
    assert "still firing" in text or "resolved" in text or "m " in text
    if width >= 200:  # a wide terminal keeps every column
        assert "severity" in text and " end " in text
