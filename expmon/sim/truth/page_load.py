"""Exact ground truth for page-load windows, computed from the events themselves.

Pure functions, no Kafka: the reference the stream processors (with their sketches) are
checked against. The caller passes the events that SHOULD be counted: valid events,
already filtered for lateness (the simulator's jitter stays well within the allowed
lateness, so for simulated traffic that is every valid event). Duplicates are removed here
by `event_id`, the first occurrence wins.

Windows: base windows are tumbling, aligned to epoch multiples of `window_ms`. A view of
k base windows ending at E covers [E - k * window_ms, E); a row is emitted for every base
window end E (and group) where that range holds at least one event, so a view keeps
reporting for k - 1 windows after its group's last event. The 1-window view is the base
windows themselves.

Row format (one dict per view, window end, page, device, region; region "all" merges
regions for the same page and device):
    {"view": "5m", "start_ms": int, "end_ms": int, "page": str, "device": str,
     "region": str, "count": int, "p50": float, "p75": float, "p95": float, "p99": float,
     "slow_ratio": float, "apdex": float, "mean_ms": float}
Quantiles are `exact_quantile` (value at rank floor(q * (n - 1)) of the sorted load_ms),
in ms. slow_ratio is the share of load_ms > slow_threshold_ms (strictly). apdex is
(satisfied + tolerating / 2) / count, satisfied load_ms <= T, tolerating T < load_ms <= 4T.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from expmon.settings import Settings
from expmon.sim.truth.base import ALL, DEFAULT_VIEWS, FamilyTruth, TruthRow, dedupe, views_of
from schemas.eventtime import parse_event_time_ms

logger = logging.getLogger(__name__)

QUANTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
)
_Group = tuple[str, str, str]  # page, device, region


def exact_quantile(sorted_values: Sequence[float], q: float) -> float:
    """The value at rank floor(q * (n - 1)) of the sorted values (what the 1 % sketch
    approximates; written here again so that truth shares no code with the processor)."""
    if not sorted_values:
        raise ValueError("no values")
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]


def window_stats(
    sorted_values: Sequence[float], slow_threshold_ms: float, apdex_t_ms: float
) -> dict[str, Any]:
    """count, p50..p99, slow_ratio, apdex and mean_ms of one window's sorted load times."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no values")
    slow = sum(1 for v in sorted_values if v > slow_threshold_ms)
    satisfied = sum(1 for v in sorted_values if v <= apdex_t_ms)
    tolerating = sum(1 for v in sorted_values if apdex_t_ms < v <= 4 * apdex_t_ms)
    row: dict[str, Any] = {"count": n}
    for name, q in QUANTILES:
        row[name] = float(exact_quantile(sorted_values, q))
    row["slow_ratio"] = slow / n
    row["apdex"] = (satisfied + tolerating / 2) / n
    row["mean_ms"] = sum(sorted_values) / n
    return row


def page_load_truth(
    events: Iterable[Mapping[str, Any]],
    window_ms: int = 60_000,
    views: Sequence[tuple[str, int]] = DEFAULT_VIEWS,
    slow_threshold_ms: float = 3000,
    apdex_t_ms: float = 2500,
) -> list[TruthRow]:
    """Rows for every view, window end, (page, device, region) and (page, device, "all").

    `views` pairs a view name with its length in base windows. Rows are sorted by the
    order of `views`, then end_ms, page, device, region.
    """
    if window_ms <= 0:
        raise ValueError("window_ms must be > 0")
    for name, k in views:
        if k < 1:
            raise ValueError(f"view {name!r} must span at least one base window")
    # group -> base window index -> load times
    base: dict[_Group, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for event in dedupe(events):
        load = event.get("load_ms")
        if load is None:
            continue  # a vital-only beacon: counts toward the vitals only (web_vitals_truth)
        t = parse_event_time_ms(event["occurred_at"])
        index = t // window_ms
        page, device, region = event["page"], event["device"], event["region"]
        base[(page, device, region)][index].append(load)
        base[(page, device, ALL)][index].append(load)
    for windows in base.values():
        for values in windows.values():
            values.sort()

    rows: list[TruthRow] = []
    for view_order, (view, k) in enumerate(views):
        for group, windows in base.items():
            ends: set[int] = set()
            for index in windows:
                ends.update(range(index + 1, index + k + 1))
            for end in ends:
                parts = [windows[i] for i in range(end - k, end) if i in windows]
                values = parts[0] if len(parts) == 1 else sorted(v for p in parts for v in p)
                row: TruthRow = {
                    "view": view,
                    "start_ms": (end - k) * window_ms,
                    "end_ms": end * window_ms,
                    "page": group[0],
                    "device": group[1],
                    "region": group[2],
                }
                row.update(window_stats(values, slow_threshold_ms, apdex_t_ms))
                row["_order"] = view_order
                rows.append(row)
    rows.sort(key=lambda r: (r["_order"], r["end_ms"], r["page"], r["device"], r["region"]))
    for row in rows:
        del row["_order"]
    return rows


# Core Web Vitals: vital -> (event field, default good limit, default poor limit)
WEB_VITALS: dict[str, tuple[str, float, float]] = {
    "lcp": ("lcp_ms", 2500.0, 4000.0),
    "inp": ("inp_ms", 200.0, 500.0),
    "cls": ("cls", 0.1, 0.25),
    "fcp": ("fcp_ms", 1800.0, 3000.0),
    "ttfb": ("ttfb_ms", 800.0, 1800.0),
}
CORE = ("lcp", "inp", "cls")
RATINGS = ("good", "needs_improvement", "poor")


def rate(value: float, good: float, poor: float) -> str:
    """web-vitals' rule: good up to and including `good`, poor strictly above `poor`."""
    if value <= good:
        return "good"
    if value <= poor:
        return "needs_improvement"
    return "poor"


def web_vitals_truth(
    events: Iterable[Mapping[str, Any]],
    window_ms: int = 60_000,
    views: Sequence[tuple[str, int]] = DEFAULT_VIEWS,
    thresholds: Mapping[str, tuple[float, float]] | None = None,
) -> list[TruthRow]:
    """Core Web Vitals rows, from the events alone (vital-only events included).

    Per view, window end and (page, device, "all") (no per-region vitals): a `web_vital`
    row for each vital with samples in the range (samples, exact p75 = rank floor(0.75 * (n - 1)),
    rating of that p75, counts and shares per rating), then a `cwv` row where LCP, INP or
    CLS has samples: the p75 rating of each and `pass` (LCP, INP and CLS good; INP
    unmeasured: LCP and CLS good; LCP or CLS unmeasured: None).
    """
    limits = {v: (g, p) for v, (_f, g, p) in WEB_VITALS.items()}
    limits.update(thresholds or {})
    # (group, vital) -> base window index -> values
    base: dict[tuple[_Group, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for event in dedupe(events):
        index = parse_event_time_ms(event["occurred_at"]) // window_ms
        page, device = event["page"], event["device"]
        for vital, (name, _g, _p) in WEB_VITALS.items():
            value = event.get(name)
            if value is None:
                continue
            base[((page, device, ALL), vital)][index].append(value)  # per page and device
    rows: list[TruthRow] = []
    for view_order, (view, k) in enumerate(views):
        ratings: dict[tuple[int, _Group], dict[str, str]] = defaultdict(dict)
        for (group, vital), windows in base.items():
            ends: set[int] = set()
            for index in windows:
                ends.update(range(index + 1, index + k + 1))
            good, poor = limits[vital]
            for end in ends:
                values = sorted(v for i in range(end - k, end) for v in windows.get(i, ()))
                n = len(values)
                p75 = values[math.floor(0.75 * (n - 1))]
                counts = {r: 0 for r in RATINGS}
                for value in values:
                    counts[rate(value, good, poor)] += 1
                row: TruthRow = {
                    "kind": "web_vital",
                    "view": view,
                    "start_ms": (end - k) * window_ms,
                    "end_ms": end * window_ms,
                    "page": group[0],
                    "device": group[1],
                    "region": group[2],
                    "vital": vital,
                    "samples": n,
                    "p75": float(p75),
                    "rating": rate(p75, good, poor),
                    **counts,
                    **{f"{r}_ratio": counts[r] / n for r in RATINGS},
                    "_order": (view_order, 0, VITAL_ORDER[vital]),
                }
                rows.append(row)
                ratings[(end, group)][vital] = row["rating"]
        for (end, group), rated in ratings.items():
            if not any(v in rated for v in CORE):
                continue
            core = {v: rated.get(v) for v in CORE}
            passed = None
            if core["lcp"] is not None and core["cls"] is not None:
                passed = all(r == "good" for r in core.values() if r is not None)
            rows.append(
                {
                    "kind": "cwv",
                    "view": view,
                    "start_ms": (end - k) * window_ms,
                    "end_ms": end * window_ms,
                    "page": group[0],
                    "device": group[1],
                    "region": group[2],
                    **core,
                    "pass": passed,
                    "_order": (view_order, 1, 0),
                }
            )
    rows.sort(key=lambda r: (r["_order"][0], r["end_ms"], r["_order"][1], r["page"],
                             r["device"], r["region"], r["_order"][2]))  # fmt: skip
    for row in rows:
        del row["_order"]
    return rows


VITAL_ORDER = {vital: i for i, vital in enumerate(WEB_VITALS)}


def index_rows(rows: Iterable[TruthRow]) -> dict[tuple[str, int, str, str, str], TruthRow]:
    """Rows keyed by (view, end_ms, page, device, region), for look-ups in tests."""
    return {(r["view"], r["end_ms"], r["page"], r["device"], r["region"]): r for r in rows}


def settings_vitals_rows(events: Iterable[Mapping[str, Any]], settings: Settings) -> list[TruthRow]:
    """`web_vitals_truth` with the settings' window, views and vital thresholds."""
    return web_vitals_truth(
        events,
        window_ms=settings.window_ms,
        views=views_of(settings),
        thresholds=settings.web_vital_thresholds,
    )


def settings_rows(events: Iterable[Mapping[str, Any]], settings: Settings) -> list[TruthRow]:
    """`page_load_truth` with the settings' window, views and thresholds."""
    return page_load_truth(
        events,
        window_ms=settings.window_ms,
        views=views_of(settings),
        slow_threshold_ms=settings.slow_threshold_seconds * 1000,
        apdex_t_ms=settings.apdex_t_seconds * 1000,
    )


def family_rows(
    events: Sequence[Mapping[str, Any]], settings: Settings, closed_through_ms: int
) -> list[TruthRow]:
    """`settings_rows` and `settings_vitals_rows` of the windows closed by `closed_through_ms`."""
    rows = settings_rows(events, settings) + settings_vitals_rows(events, settings)
    return [r for r in rows if r["end_ms"] <= closed_through_ms]


def row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """(view, end, kind, vital, page, device, region): load rows have kind "" and vital ""."""
    return (
        row["view"],
        row["end_ms"],
        row.get("kind", ""),
        row.get("vital", ""),
        row["page"],
        row["device"],
        row["region"],
    )


TRUTH = FamilyTruth(
    rows=family_rows,
    key=row_key,
    # the processor's quantiles come from a sketch of 1 % relative error
    relative={name: 0.01 for name, _q in QUANTILES},
    # bounce is per session end, not per load: the journeys' truth checks it
    ignore=frozenset({"sample_event_ids", "sessions", "bounces", "bounce_ratio"}),
    # rows of session ends only, or of vital-only beacons, carry no loads
    covers=lambda row: "kind" in row or bool(row["count"]),
)
