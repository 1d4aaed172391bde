"""Core Web Vitals of page loads: per-window figures beside the load-time figures.

Part of the page-load family (`page_load.py` holds a `vitals` map in each accumulator and
calls in here); kept in its own module so the load-time code stays as it was.

Per page and device (the region `all` key: per-region sketches of five vitals would
multiply state, partials and merge work by the region count; measured 3.5x the stage
and 7x the merge time with them) and window, each vital (LCP, INP, CLS, FCP, TTFB) keeps
its rating counts (good / needs_improvement / poor by the configured thresholds: good is
<= the first, poor is > the second, as the web-vitals library rates) and a DDSketch of
its values (1 % relative error). Both merge by adding, so the figures are the same with
one worker or N and in replay. CLS is unitless and often exactly 0: it is sketched in
millionths (the sketch tracks 1e-3..1e10, so CLS from 1e-9 up is within 1 %), and 0 is
the sketch's exact zero count.

The rating *of the p75* is decided exactly from the counts, not from the sketch: with
the project's quantile definition (the value at rank floor(0.75 * (n - 1)) of the sorted
values) the p75 is good iff more than that rank of the values are good, and so on. The
assessment (`pass`) and `CoreWebVitalsPoor` therefore never flip on the sketch's 1 %; a
p75 gauge within 1 % of a threshold may read on the other side of it.

Assessment (as PageSpeed Insights does it): a key passes when the p75 of LCP, INP and CLS
are all good; without INP samples (no interaction in the window) it is assessed on LCP
and CLS alone; without LCP or CLS samples it is not assessed (`pass` is null and the
`expmon_core_web_vitals_pass` series is absent).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from expmon.alerting.signals import Row, Signal, field
from expmon.engine.sketch import DDSketch
from expmon.settings import Settings

VITALS = ("lcp", "inp", "cls", "fcp", "ttfb")
CORE_VITALS = ("lcp", "inp", "cls")
FIELDS: Mapping[str, str] = {
    "lcp": "lcp_ms",
    "inp": "inp_ms",
    "cls": "cls",
    "fcp": "fcp_ms",
    "ttfb": "ttfb_ms",
}
RATINGS = ("good", "needs_improvement", "poor")
CLS_SCALE = 1e6  # CLS sketched in millionths (see the module doc)
VITAL_KIND = "web_vital"  # row kind of one vital's figures
ASSESSMENT_KIND = "cwv"  # row kind of the Core Web Vitals assessment
ALL = "all"


class VitalWindow:
    """One vital in one window for one key: rating counts and a sketch of its values."""

    __slots__ = ("counts", "sketch")

    def __init__(self) -> None:
        self.counts = [0, 0, 0]  # good, needs_improvement, poor
        self.sketch = DDSketch()

    @property
    def samples(self) -> int:
        return self.counts[0] + self.counts[1] + self.counts[2]

    def merge(self, other: VitalWindow) -> None:
        mine, theirs = self.counts, other.counts
        mine[0] += theirs[0]
        mine[1] += theirs[1]
        mine[2] += theirs[2]
        self.sketch.merge(other.sketch)

    def to_list(self) -> list[Any]:
        return [*self.counts, self.sketch.to_dict()]

    @classmethod
    def from_list(cls, data: list[Any]) -> VitalWindow:
        window = cls()
        window.counts = [int(data[0]), int(data[1]), int(data[2])]
        window.sketch = DDSketch.from_dict(data[3])
        return window


Vitals = dict[str, VitalWindow]


def merge_vitals(into: Vitals, other: Vitals) -> None:
    for vital, window in other.items():
        mine = into.get(vital)
        if mine is None:
            mine = into[vital] = VitalWindow()
        mine.merge(window)


def vitals_to_dict(vitals: Vitals) -> dict[str, list[Any]]:
    return {vital: window.to_list() for vital, window in vitals.items()}


def vitals_from_dict(data: Mapping[str, Any]) -> Vitals:
    return {str(vital): VitalWindow.from_list(value) for vital, value in data.items()}


def rating_index(value: float, good: float, poor: float) -> int:
    """0 good (<= good), 1 needs improvement, 2 poor (> poor)."""
    if value <= good:
        return 0
    return 1 if value <= poor else 2


class VitalsRater:
    """Adds an event's vitals to a key's `Vitals` by the settings' thresholds."""

    __slots__ = ("specs",)

    def __init__(self, settings: Settings) -> None:
        limits = settings.web_vital_thresholds
        self.specs = tuple(
            (vital, FIELDS[vital], *limits[vital], CLS_SCALE if vital == "cls" else 1.0)
            for vital in VITALS
        )

    def carries(self, event: Mapping[str, Any]) -> bool:
        # Most page loads hold no vital: five key tests rule them out, spelled out because
        # `frozenset.isdisjoint(event)` walks every key of the event, three times the cost
        # (a vital sent as null is held but carried only when a vital has a value).
        if not (
            "lcp_ms" in event
            or "inp_ms" in event
            or "cls" in event
            or "fcp_ms" in event
            or "ttfb_ms" in event
        ):
            return False
        get = event.get
        return any(get(name) is not None for _v, name, _g, _p, _s in self.specs)

    def add(self, vitals: Vitals, event: Mapping[str, Any]) -> None:
        get = event.get
        for vital, name, good, poor, scale in self.specs:
            value = get(name)
            if value is None:
                continue
            window = vitals.get(vital)
            if window is None:
                window = vitals[vital] = VitalWindow()
            window.counts[rating_index(value, good, poor)] += 1
            window.sketch.add(value * scale)


def p75_rating(counts: list[int]) -> int | None:
    """Rating index of the p75 (rank floor(0.75 * (n - 1))), exact from the counts."""
    n = counts[0] + counts[1] + counts[2]
    if n == 0:
        return None
    rank = math.floor(0.75 * (n - 1))
    if rank < counts[0]:
        return 0
    return 1 if rank < counts[0] + counts[1] else 2


def vital_row(
    view: str, start_ms: int, end_ms: int, key: tuple[str, ...], vital: str, window: VitalWindow
) -> dict[str, Any]:
    page, device, region = key
    n = window.samples
    good, ni, poor = window.counts
    p75 = window.sketch.quantile(0.75)
    level = p75_rating(window.counts)
    return {
        "kind": VITAL_KIND,
        "view": view,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "page": page,
        "device": device,
        "region": region,
        "vital": vital,
        "samples": n,
        # ms (CLS: unitless), like the load-time rows' quantiles
        "p75": (p75 or 0.0) / CLS_SCALE if vital == "cls" else (p75 or 0.0),
        "rating": RATINGS[level] if level is not None else None,
        "good": good,
        "needs_improvement": ni,
        "poor": poor,
        "good_ratio": good / n,
        "needs_improvement_ratio": ni / n,
        "poor_ratio": poor / n,
    }


def assessment_row(
    view: str, start_ms: int, end_ms: int, key: tuple[str, ...], vitals: Vitals
) -> dict[str, Any]:
    page, device, region = key
    ratings: dict[str, str | None] = {}
    for vital in CORE_VITALS:
        window = vitals.get(vital)
        level = p75_rating(window.counts) if window is not None else None
        ratings[vital] = RATINGS[level] if level is not None else None
    passed: bool | None = None
    if ratings["lcp"] is not None and ratings["cls"] is not None:
        passed = all(r == "good" for r in ratings.values() if r is not None)
    return {
        "kind": ASSESSMENT_KIND,
        "view": view,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "page": page,
        "device": device,
        "region": region,
        **ratings,
        "pass": passed,
    }


def vitals_rows(
    view: str, start_ms: int, end_ms: int, by_key: Mapping[tuple[str, ...], Vitals]
) -> list[dict[str, Any]]:
    """Rows of every key with vitals: one per vital with samples, then one assessment
    per key with a core vital; sorted by key, vitals in `VITALS` order."""
    rows: list[dict[str, Any]] = []
    assessments: list[dict[str, Any]] = []
    for key in sorted(by_key):
        vitals = by_key[key]
        if not vitals:
            continue
        for vital in VITALS:
            window = vitals.get(vital)
            if window is not None and window.samples:
                rows.append(vital_row(view, start_ms, end_ms, key, vital, window))
        if any(v in vitals for v in CORE_VITALS):
            assessments.append(assessment_row(view, start_ms, end_ms, key, vitals))
    return rows + assessments


# ---------------------------------------------------------------------- metrics


class VitalGauges:
    """The Core Web Vitals gauges of the final views (region `all`: per page and device)."""

    def __init__(self) -> None:
        labels = ["page", "device", "window"]
        self.p75 = GaugeMetricFamily(
            "expmon_web_vital_p75_seconds",
            "p75 of a Core Web Vital (LCP, INP, FCP, TTFB) per window view (1% sketch)",
            labels=["vital", *labels],
        )
        self.cls = GaugeMetricFamily(
            "expmon_web_vital_cls_p75",
            "p75 of Cumulative Layout Shift (unitless) per window view (1% sketch)",
            labels=labels,
        )
        self.ratio = GaugeMetricFamily(
            "expmon_web_vital_rating_ratio",
            "Share of a vital's samples rated good / needs_improvement / poor",
            labels=["vital", "rating", *labels],
        )
        self.passed = GaugeMetricFamily(
            "expmon_core_web_vitals_pass",
            "1 when the p75 of LCP, INP (if measured) and CLS are all good, else 0",
            labels=labels,
        )
        self.rating = GaugeMetricFamily(
            "expmon_web_vital_p75_rating",
            "Rating of a vital's p75: 0 good, 1 needs improvement, 2 poor (exact)",
            labels=["vital", *labels],
        )
        self.samples = GaugeMetricFamily(
            "expmon_web_vital_window_samples",
            "Samples of a vital in the window view (page views measuring it)",
            labels=["vital", *labels],
        )

    def add(self, view: str, row: Mapping[str, Any]) -> None:
        if row.get("region") != ALL:
            return  # per-region figures stay in the windows topic: bounded series here
        labels = [str(row["page"]), str(row["device"]), view]
        kind = row.get("kind")
        if kind == VITAL_KIND:
            vital = str(row["vital"])
            if vital == "cls":
                self.cls.add_metric(labels, float(row["p75"]))
            else:
                self.p75.add_metric([vital, *labels], float(row["p75"]) / 1000)
            for rating in RATINGS:
                self.ratio.add_metric([vital, rating, *labels], float(row[f"{rating}_ratio"]))
            self.rating.add_metric([vital, *labels], float(RATINGS.index(str(row["rating"]))))
            self.samples.add_metric([vital, *labels], float(row["samples"]))
        elif kind == ASSESSMENT_KIND and row.get("pass") is not None:
            self.passed.add_metric(labels, 1.0 if row["pass"] else 0.0)

    def families(self) -> Iterator[Metric]:
        yield self.p75
        yield self.cls
        yield self.ratio
        yield self.passed
        yield self.rating
        yield self.samples


# ---------------------------------------------------------------------- alert signals


def _core_p75_rating(row: Row) -> float | None:
    # region `all` only, checked here rather than as a `fixed` label: the gauges the
    # twin reads carry no region
    if row.get("region") != ALL or row.get("vital") not in CORE_VITALS:
        return None
    if row.get("rating") is None:
        return None
    return float(RATINGS.index(str(row["rating"])))


SIGNALS: tuple[Signal, ...] = (
    Signal(
        name="core_web_vital_p75_rating",
        description=(
            "rating of the p75 of LCP, INP or CLS of a page and device over the window "
            "(0 good, 1 needs improvement, 2 poor; exact from the rating counts)"
        ),
        source="window",
        family="page_load",
        labels=("page", "device", "vital"),
        kind=VITAL_KIND,
        unit="rating",
        value=_core_p75_rating,
        volume=field("samples"),
        prom_value='expmon_web_vital_p75_rating{{vital=~"lcp|inp|cls",window="{w}"{sel}}}',
        prom_volume='expmon_web_vital_window_samples{{vital=~"lcp|inp|cls",window="{w}"{sel}}}',
    ),
)
