"""The signals alert rules can read: where each comes from and how it is computed.

A *window* signal is read from the final window views of the merge stage (event time,
so a replay sees exactly what the live run saw). It is either:
- additive: a ratio of two row fields summed over the rows that share the rule's `by`
  labels, so a rule may group by any subset of the signal's labels (bounce per page sums
  sessions over devices), or
- a row value: read from one row at the signal's own grain (a p95 cannot be summed), so
  `by` must list exactly the signal's labels.

A *pipeline* signal is computed from worker telemetry on the wall clock: absence of input
(EventSourceSilent), the share of invalid records, stale tracking.

Each signal also carries the PromQL of its Prometheus twin (see `promrules`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Row = Mapping[str, Any]
Unit = Literal["seconds", "ratio", "count", "rating"]
RATING_NAMES = ("good", "needs improvement", "poor")  # unit "rating": 0, 1, 2


@dataclass(frozen=True)
class Signal:
    name: str
    description: str
    source: Literal["window", "pipeline"]
    labels: tuple[str, ...]
    unit: Unit
    family: str = ""
    # rows must carry these field values unless a rule's `where` says otherwise
    fixed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    kind: str | None = None  # row["kind"] filter for families with several row kinds
    numerator: Callable[[Row], float] | None = None  # additive signals
    denominator: Callable[[Row], float] | None = None
    value: Callable[[Row], float | None] | None = None  # row-value signals
    volume: Callable[[Row], float] | None = None
    # PromQL pieces for the Prometheus twin; `{w}` is the window, `{sel}` extra matchers
    prom_value: str = ""
    prom_volume: str = ""
    needs_window: bool = True

    @property
    def additive(self) -> bool:
        return self.numerator is not None


def field(name: str) -> Callable[[Row], float]:
    """A row field as a number (0 when absent or None)."""
    return lambda row: float(row.get(name) or 0)


def field_sum(*names: str) -> Callable[[Row], float]:
    return lambda row: float(sum(row.get(n) or 0 for n in names))


def seconds(name: str) -> Callable[[Row], float | None]:
    """A millisecond row field in seconds; None for a row without loads."""

    def read(row: Row) -> float | None:
        return float(row[name]) / 1000 if row.get("count") else None

    return read


PIPELINE_SIGNALS: tuple[Signal, ...] = (
    Signal(
        name="seconds_since_last_event",
        description="wall-clock seconds since an input topic last grew (any partition)",
        source="pipeline",
        labels=("topic",),
        unit="seconds",
        needs_window=False,
    ),
    Signal(
        name="invalid_ratio",
        description="invalid records / received records of an input topic (wall clock)",
        source="pipeline",
        labels=("topic",),
        unit="ratio",
        prom_value='expmon_events_total{{outcome="invalid"{sel}}}',
        prom_volume="expmon_events_total{{{sel}}}",
    ),
    Signal(
        name="kafka_unreachable_seconds",
        description="wall-clock seconds the broker has not answered the worker's probe",
        source="pipeline",
        labels=(),
        unit="seconds",
        needs_window=False,
    ),
)
"""Signals of the pipeline as a whole; each family adds its own (see
`expmon.families.registry.SIGNALS`, the catalogue rules are checked against)."""


def format_value(value: float, unit: Unit) -> str:
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    if unit == "rating" and value in (0, 1, 2):
        return RATING_NAMES[int(value)]
    if unit == "seconds":
        return f"{value:.0f} s" if value >= 100 else f"{value:.2f} s"
    return f"{value:g}"
