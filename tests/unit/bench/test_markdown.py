"""`expmon bench --markdown`: the README tables from a report."""

from __future__ import annotations

from typing import Any

import pytest

from expmon.bench.markdown import markdown_report, ratio, ratio_table, throughput_table
from expmon.bench.scenarios import (
    BARE,
    BATCH,
    BYTEWAX,
    CONFLUENT,
    PIPELINE,
    PIPELINE_1_OF_2,
    PIPELINE_2,
    QUIX,
    SINGLE,
)

MACHINE = {"cores": 2, "ram_gb": 7.8, "cpu": "Some CPU", "python": "3.11.7", "kafka": "4.1.1"}


def row(scenario: str, dataset: str, eps: float | None, rss: float | None = None) -> dict[str, Any]:
    return {"scenario": scenario, "dataset": dataset, "events_per_s": eps, "peak_rss_mb": rss}


RESULTS = [
    row(BARE, SINGLE, 400_000.0, 60.4),
    row(BARE, BATCH, 600_000.0, 80.0),
    row(CONFLUENT, SINGLE, 500_000.0),
    row(PIPELINE, SINGLE, 100_000.0, 150.0),
    row(PIPELINE, BATCH, 240_000.0, 170.0),
    row(PIPELINE_1_OF_2, BATCH, 210_000.0, 165.0),
    row(PIPELINE_2, BATCH, 420_000.0, 160.0),
    row(BYTEWAX, SINGLE, 40_000.0),
    row(BYTEWAX, BATCH, 60_000.0),
    row(QUIX, SINGLE, None),  # failed: no figure
]
FIGURES = {(r["scenario"], r["dataset"]): r for r in RESULTS}


@pytest.mark.parametrize(
    ("subject", "reference", "dataset", "expected"),
    [
        (PIPELINE, BARE, SINGLE, 0.25),
        (PIPELINE, CONFLUENT, SINGLE, 0.2),
        (PIPELINE, BYTEWAX, BATCH, 4.0),
        (PIPELINE_2, PIPELINE, BATCH, 1.75),
        (PIPELINE_2, PIPELINE_1_OF_2, BATCH, 2.0),
        (PIPELINE, CONFLUENT, BATCH, None),  # no confluent figure on batch
        (PIPELINE, QUIX, SINGLE, None),  # Quix failed
        (PIPELINE_2, PIPELINE, SINGLE, None),
    ],
)
def test_ratio(subject: str, reference: str, dataset: str, expected: float | None) -> None:
    assert ratio(FIGURES, subject, reference, dataset) == (
        None if expected is None else pytest.approx(expected)
    )


def test_throughput_table_in_scenario_order_with_gaps_as_dashes() -> None:
    lines = throughput_table(FIGURES, 100)
    assert lines[0].startswith("| scenario | single-event records, ev/s | 100-event records")
    assert lines[2:] == [
        "| bare aiokafka+orjson | 400,000 | 600,000 | 60 / 80 |",
        "| bare confluent-kafka+orjson | 500,000 | - | - / - |",
        "| expmon pipeline | 100,000 | 240,000 | 150 / 170 |",
        "| expmon pipeline, 1 process on the 2-process topics | - | 210,000 | - / 165 |",
        "| expmon pipeline, 2 processes | - | 420,000 | - / 160 |",
        "| Bytewax | 40,000 | 60,000 | - / - |",
        "| Quix Streams | - | - | - / - |",
    ]


def test_ratio_table_leaves_out_pairs_without_any_figure() -> None:
    lines = ratio_table(FIGURES, 100)
    assert lines[2:] == [
        "| expmon pipeline / bare aiokafka+orjson | 0.25x | 0.40x |",
        "| expmon pipeline / bare confluent-kafka+orjson | 0.20x | - |",
        "| expmon pipeline / Bytewax | 2.50x | 4.00x |",
        "| expmon pipeline, 2 processes / bare aiokafka+orjson | - | 0.70x |",
        "| expmon pipeline, 2 processes / Bytewax | - | 7.00x |",
        "| expmon pipeline, 2 processes / expmon pipeline, 1 process on the 2-process topics "
        "| - | 2.00x |",
    ]


def test_markdown_report_states_machine_date_and_skips() -> None:
    report = {
        "machine": MACHINE,
        "date": "2026-12-02 15:00 UTC",
        "load_average": [1.5, 1.2, 1.0],
        "peers": {"bytewax": "0.21.1"},
        "batch_size": 100,
        "results": RESULTS,
        "skipped": [{"scenario": QUIX, "reason": "no Quix Streams venv at x"}],
    }
    text = markdown_report(report)
    first = text.splitlines()[0]
    assert first.startswith("2026-12-02 15:00 UTC; 2 cores, 7.8 GB RAM, Some CPU")
    assert "peers: bytewax 0.21.1" in first and "load average at the end 1.5 / 1.2 / 1.0" in first
    assert "| expmon pipeline / Bytewax | 2.50x | 4.00x |" in text
    assert text.endswith("Skipped: Quix Streams (no Quix Streams venv at x)\n")
