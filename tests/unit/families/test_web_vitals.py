"""Core Web Vitals in the page-load family: field rules, ratings, p75, assessment, rows,
metrics and the CoreWebVitalsPoor signal, no broker."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from expmon.alerting.engine import AlertEngine
from expmon.alerting.rules import load_rules
from expmon.engine.sketch import DDSketch
from expmon.engine.stage import RawRecord
from expmon.families import web_vitals
from expmon.families.page_load import PageLoadCollector, PageLoadStage, new_page_load_merger
from expmon.families.registry import SIGNALS
from expmon.settings import Settings
from expmon.sim.encoding import encode_records
from expmon.sim.journeys import TrafficGenerator
from expmon.sim.truth.page_load import web_vitals_truth
from schemas import codec
from schemas.errors import InvalidEvent
from schemas.events import EventFamily, validate_page_load
from tests.unit.helpers import merge, place, run_stage

T0 = 1_763_000_040_000  # a minute boundary
NOW = T0 + 3_600_000


def event(i: int, t: int = T0, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"e{i}",
        "occurred_at": t,
        "schema_version": 1,
        "session_id": f"s{i}",
        "device": "mobile",
        "platform": "web",
        "region": "eu-west",
        "page": "/product/:id",
    }
    ev.update(fields)
    return ev


# ---------------------------------------------------------------------- field rules


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"load_ms": 900}, None),
        ({"lcp_ms": 1200}, None),  # vital-only: no load_ms
        ({"cls": 0}, None),
        ({"cls": 0.0, "inp_ms": 40}, None),
        ({"load_ms": None, "ttfb_ms": 80}, None),
        ({}, "missing_field:load_ms"),
        ({"load_ms": None, "lcp_ms": None}, "missing_field:load_ms"),
        ({"lcp_ms": -1}, "negative_value:lcp_ms"),
        ({"load_ms": 900, "inp_ms": float("nan")}, "not_finite:inp_ms"),
        ({"load_ms": 900, "cls": float("inf")}, "not_finite:cls"),
        ({"cls": -0.01}, "negative_value:cls"),
        ({"fcp_ms": "12"}, "wrong_type:fcp_ms"),
        ({"ttfb_ms": True}, "wrong_type:ttfb_ms"),
        ({"load_ms": -5, "lcp_ms": 100}, "negative_value:load_ms"),
    ],
)
def test_field_rules(fields: dict[str, Any], reason: str | None) -> None:
    ev = event(1, **fields)
    if reason is None:
        assert validate_page_load(ev, NOW)["_t"] == T0
    else:
        with pytest.raises(InvalidEvent) as err:
            validate_page_load(ev, NOW)
        assert err.value.reason == reason


# ---------------------------------------------------------------------- ratings


def _rating(vital: str, value: float, settings: Settings | None = None) -> str:
    good, poor = (settings or Settings()).web_vital_thresholds[vital]
    return web_vitals.RATINGS[web_vitals.rating_index(value, good, poor)]


@pytest.mark.parametrize(
    ("vital", "value", "rating"),
    [
        ("lcp", 0, "good"),
        ("lcp", 2500, "good"),
        ("lcp", 2500.001, "needs_improvement"),
        ("lcp", 4000, "needs_improvement"),
        ("lcp", 4001, "poor"),
        ("inp", 200, "good"),
        ("inp", 201, "needs_improvement"),
        ("inp", 500, "needs_improvement"),
        ("inp", 500.5, "poor"),
        ("cls", 0.0, "good"),
        ("cls", 0.1, "good"),
        ("cls", 0.1001, "needs_improvement"),
        ("cls", 0.25, "needs_improvement"),
        ("cls", 0.2501, "poor"),
        ("fcp", 1800, "good"),
        ("fcp", 1801, "needs_improvement"),
        ("fcp", 3000, "needs_improvement"),
        ("fcp", 3001, "poor"),
        ("ttfb", 800, "good"),
        ("ttfb", 801, "needs_improvement"),
        ("ttfb", 1800, "needs_improvement"),
        ("ttfb", 1801, "poor"),
    ],
)
def test_rating_boundaries_are_googles(vital: str, value: float, rating: str) -> None:
    assert _rating(vital, value) == rating


def test_thresholds_come_from_settings() -> None:
    custom = Settings(lcp_thresholds_seconds=(2.0, 3.0), cls_thresholds=(0.05, 0.2))
    assert _rating("lcp", 2100, custom) == "needs_improvement"
    assert _rating("lcp", 3000, custom) == "needs_improvement"
    assert _rating("lcp", 3001, custom) == "poor"
    assert _rating("cls", 0.06, custom) == "needs_improvement"
    assert Settings(inp_thresholds_seconds=(0.7, 0.9)).web_vital_thresholds["inp"] == (700, 900)


@pytest.mark.parametrize(
    ("values", "rating"),
    [
        ([100], "good"),
        ([5000], "poor"),
        ([100, 100, 100, 5000], "good"),  # rank floor(0.75 * 3) = 2: good
        ([100, 100, 3000, 5000], "needs_improvement"),
        ([100, 3000, 5000, 5000], "poor"),
        ([100] * 6 + [3000] * 2, "good"),  # n = 8, rank 5
        ([100] * 5 + [3000] * 3, "needs_improvement"),
        ([2500] * 4, "good"),
        ([2500.5] * 4, "needs_improvement"),
    ],
)
def test_p75_rating_from_counts_is_the_rating_of_the_exact_p75(
    values: list[float], rating: str
) -> None:
    counts = [0, 0, 0]
    for v in values:
        counts[web_vitals.rating_index(v, 2500, 4000)] += 1
    level = web_vitals.p75_rating(counts)
    assert level is not None and web_vitals.RATINGS[level] == rating
    exact = sorted(values)[math.floor(0.75 * (len(values) - 1))]
    assert _rating("lcp", exact) == rating


def test_p75_rating_random_tables() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        n = rng.randint(1, 40)
        values = [rng.choice([0.0, 0.05, 0.1, 0.11, 0.2, 0.25, 0.26, 0.9]) for _ in range(n)]
        counts = [0, 0, 0]
        for v in values:
            counts[web_vitals.rating_index(v, 0.1, 0.25)] += 1
        exact = sorted(values)[math.floor(0.75 * (n - 1))]
        level = web_vitals.p75_rating(counts)
        assert level == web_vitals.rating_index(exact, 0.1, 0.25)
    assert web_vitals.p75_rating([0, 0, 0]) is None


# ---------------------------------------------------------------------- p75 from sketches


@pytest.mark.parametrize(
    ("vital", "draw"),
    [
        ("lcp", lambda r: r.lognormvariate(math.log(1800), 0.6)),
        ("inp", lambda r: r.lognormvariate(math.log(120), 0.8)),
        ("ttfb", lambda r: r.uniform(0.2, 3000)),  # sub-millisecond values too
        ("cls", lambda r: r.lognormvariate(math.log(0.05), 1.2)),
        ("cls", lambda r: r.lognormvariate(math.log(0.0002), 1.0)),  # tiny shifts
        ("cls", lambda r: 0.0 if r.random() < 0.5 else r.lognormvariate(math.log(0.03), 1)),
    ],
)
def test_p75_from_merged_sketches_within_one_percent(vital: str, draw: Any) -> None:
    rng = random.Random(vital)
    rater = web_vitals.VitalsRater(Settings())
    field = web_vitals.FIELDS[vital]
    parts: list[web_vitals.Vitals] = [{}, {}, {}]
    values = []
    for i in range(3000):
        value = draw(rng)
        values.append(value)
        rater.add(parts[i % 3], {field: value})
    merged: web_vitals.Vitals = {}
    for part in parts:  # as the merge stage does with partials of three partitions
        web_vitals.merge_vitals(
            merged, web_vitals.vitals_from_dict(web_vitals.vitals_to_dict(part))
        )
    (row,) = [r for r in web_vitals.vitals_rows("1m", 0, 60_000, {("/", "mobile", "all"): merged})
              if r["kind"] == "web_vital"]  # fmt: skip
    exact = sorted(values)[math.floor(0.75 * (len(values) - 1))]
    assert abs(row["p75"] - exact) <= 0.01 * exact
    assert row["samples"] == 3000
    assert row["good"] + row["needs_improvement"] + row["poor"] == 3000


def test_cls_zeros_are_exact() -> None:
    rater = web_vitals.VitalsRater(Settings())
    vitals: web_vitals.Vitals = {}
    for value in (0, 0.0, 0, 0.3):
        rater.add(vitals, {"cls": value})
    rows = web_vitals.vitals_rows("1m", 0, 60_000, {("/", "desktop", "all"): vitals})
    cls_row = rows[0]
    assert (cls_row["p75"], cls_row["rating"], cls_row["good"], cls_row["poor"]) == (
        0.0,
        "good",
        3,
        1,
    )
    assert cls_row["poor_ratio"] == 0.25
    sketch = DDSketch()
    sketch.add(0.0)
    assert sketch.quantile(0.75) == 0.0


# ---------------------------------------------------------------------- assessment


@pytest.mark.parametrize(
    ("lcp", "inp", "cls", "passed"),
    [
        (1000, 100, 0.0, True),
        (3000, 100, 0.0, False),
        (1000, 300, 0.0, False),
        (1000, 100, 0.3, False),
        (1000, None, 0.05, True),  # no interaction: assessed on LCP and CLS
        (5000, None, 0.05, False),
        (None, 100, 0.0, None),  # no LCP: not assessed
        (1000, 100, None, None),
    ],
)
def test_assessment(lcp: float | None, inp: float | None, cls: float | None, passed: Any) -> None:
    rater = web_vitals.VitalsRater(Settings())
    vitals: web_vitals.Vitals = {}
    rater.add(vitals, {"lcp_ms": lcp, "inp_ms": inp, "cls": cls, "fcp_ms": 4000})
    rows = web_vitals.vitals_rows("1m", 0, 60_000, {("/", "mobile", "all"): vitals})
    (assessment,) = [r for r in rows if r["kind"] == "cwv"]
    assert assessment["pass"] is passed
    assert assessment["inp"] == (None if inp is None else _rating("inp", inp))


def test_fcp_and_ttfb_alone_make_no_assessment() -> None:
    rater = web_vitals.VitalsRater(Settings())
    vitals: web_vitals.Vitals = {}
    rater.add(vitals, {"fcp_ms": 500, "ttfb_ms": 90})
    rows = web_vitals.vitals_rows("1m", 0, 60_000, {("/", "mobile", "all"): vitals})
    assert [(r["kind"], r.get("vital")) for r in rows] == [
        ("web_vital", "fcp"),
        ("web_vital", "ttfb"),
    ]


# ---------------------------------------------------------------------- stage and merge


def records(events: list[dict[str, Any]]) -> list[RawRecord]:
    return [RawRecord(0, i, None, codec.dumps(e)) for i, e in enumerate(events)]


def windows_of(events: list[dict[str, Any]], settings: Settings) -> dict[str, list[dict[str, Any]]]:
    stage = PageLoadStage(settings, "page-loads", 1, live=False)
    outs = [stage.process(records(events), now_ms=NOW), stage.finish()]
    merger = new_page_load_merger(settings)
    results = merger.apply([m for o in outs for m in o.partials]).results
    return {r.record_key: r.rows for r in results}


def test_vital_only_events_count_toward_vitals_only() -> None:
    settings = Settings(bounce_seconds=60)
    events = [
        event(1, T0 + 1000, load_ms=900, lcp_ms=800, cls=0.0, session_id="a"),
        # the same page view's later beacons, web-vitals style: no load_ms
        event(2, T0 + 5000, inp_ms=90, session_id="a"),
        event(3, T0 + 6000, lcp_ms=3000, session_id="a"),
        # a bad vital is dead-lettered with its reason, counted invalid
        event(4, T0 + 7000, lcp_ms=-3, session_id="b"),
        event(5, T0 + 200_000, load_ms=700, session_id="z"),  # moves the watermark on
    ]
    stage = PageLoadStage(settings, "page-loads", 1, live=False)
    out = stage.process(records(events), now_ms=NOW)
    assert out.counts == {"accepted": 4, "invalid": 1, "late": 0, "duplicate": 0}
    assert [d.reason for d in out.dead_letters] == ["negative_value:lcp_ms"]
    rows = windows_of(events, settings)[f"page_load/1m/{T0 + 60_000}"]
    load = next(r for r in rows if "kind" not in r and r["region"] == "all")
    assert load["count"] == 1  # the beacons are not loads
    lcp = next(r for r in rows if r.get("vital") == "lcp" and r["region"] == "all")
    assert (lcp["samples"], lcp["good"], lcp["needs_improvement"]) == (2, 1, 1)
    inp = next(r for r in rows if r.get("vital") == "inp" and r["region"] == "all")
    assert inp["samples"] == 1
    # bounce: session a had one page view (the beacons are not views): it bounced
    # (as three views it would not have); it ends 60 s after its view, at T0 + 61 s
    later = windows_of(events, settings)[f"page_load/1m/{T0 + 120_000}"]
    ended = next(r for r in later if "kind" not in r and r["region"] == "all" and r["sessions"])
    assert (ended["page"], ended["sessions"], ended["bounces"]) == ("/product/:id", 1, 1)


def test_rows_equal_ground_truth_with_vital_only_events() -> None:
    rng = random.Random(9)
    settings = Settings()
    events = []
    for i in range(4000):
        t = T0 + i * 90
        fields: dict[str, Any] = {"lcp_ms": round(rng.lognormvariate(7.6, 0.5))}
        if rng.random() < 0.7:
            fields["inp_ms"] = round(rng.lognormvariate(5, 0.7))
        fields["cls"] = 0.0 if rng.random() < 0.3 else round(rng.lognormvariate(-3, 1), 4)
        if rng.random() < 0.8:
            fields["load_ms"] = round(rng.lognormvariate(7, 0.4))
        ev = event(i, t, **fields)
        ev["device"] = ("mobile", "desktop", "tablet")[i % 3]
        ev["page"] = ("/", "/cart")[i % 2]
        events.append(ev)
    got = [r for rows in windows_of(events, settings).values() for r in rows if "kind" in r]
    want = web_vitals_truth(events)
    closed = max(r["end_ms"] for r in got)
    want = [r for r in want if r["end_ms"] <= closed]
    assert len(want) > 300

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (
            r["view"],
            r["end_ms"],
            r["kind"],
            r.get("vital"),
            r["page"],
            r["device"],
            r["region"],
        )

    mine = {key(r): r for r in got}
    theirs = {key(r): r for r in want}
    assert mine.keys() == theirs.keys()
    for k, expected in theirs.items():
        row = mine[k]
        assert row.keys() == expected.keys(), k
        for name, value in expected.items():
            if name == "p75":
                assert abs(row[name] - value) <= 0.01 * value, (k, row[name], value)
            elif isinstance(value, float):
                assert row[name] == pytest.approx(value, abs=1e-12), (k, name)
            else:
                assert row[name] == value, (k, name)


# ---------------------------------------------------------------------- metrics


def test_metrics_are_the_contracts() -> None:
    settings = Settings()
    events = [
        event(i, T0 + i * 100, load_ms=900, lcp_ms=1000 + i * 100, inp_ms=50, cls=0.0, ttfb_ms=100)
        for i in range(20)
    ] + [event(99, T0 + 200_000, load_ms=100)]
    rows = windows_of(events, settings)[f"page_load/1m/{T0 + 60_000}"]
    registry = CollectorRegistry()
    stage = PageLoadStage(settings, "page-loads", 1, live=False)
    registry.register(PageLoadCollector(lambda: iter([("1m", r) for r in rows]), [stage]))
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if "web_vital" in sample.name
    }

    def value(name: str, **labels: str) -> float:
        base = {"page": "/product/:id", "device": "mobile", "window": "1m"}
        return samples[(name, tuple(sorted({**base, **labels}.items())))]

    # LCP 1000..2900 ms: p75 at rank floor(0.75 * 19) = 14, 2400 ms; 16 good (<= 2500), 4 NI
    assert value("expmon_web_vital_p75_seconds", vital="lcp") == pytest.approx(2.4, rel=0.01)
    assert value("expmon_web_vital_p75_seconds", vital="ttfb") == pytest.approx(0.1, rel=0.01)
    assert value("expmon_web_vital_rating_ratio", vital="lcp", rating="good") == 0.8
    assert value("expmon_web_vital_rating_ratio", vital="lcp", rating="needs_improvement") == 0.2
    assert value("expmon_web_vital_rating_ratio", vital="lcp", rating="poor") == 0.0
    assert value("expmon_web_vital_cls_p75") == 0.0
    assert value("expmon_core_web_vitals_pass") == 1.0
    assert value("expmon_web_vital_p75_rating", vital="lcp") == 0.0
    assert value("expmon_web_vital_window_samples", vital="inp") == 20.0
    assert all(dict(labels).get("region") is None for _n, labels in samples)  # region all only
    assert ("expmon_web_vital_p75_seconds", (("device", "mobile"), ("page", "/product/:id"),
            ("vital", "cls"), ("window", "1m"))) not in samples  # fmt: skip


# ---------------------------------------------------------------------- the alert


def alerts_of(incidents: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """CoreWebVitalsPoor transitions of the default rules over 35 simulated minutes."""
    settings = Settings()
    generator = TrafficGenerator(
        seed=4, rate=8, start_ms=T0, duration_s=35 * 60, families=["page_load"],
        incidents=incidents,
    )  # fmt: skip
    records = list(
        encode_records(generator.generate(), 1, seed=4, partitions={EventFamily.PAGE_LOAD: 3})
    )
    stage = PageLoadStage(settings, "page-loads", 3, live=False)
    outs = run_stage(stage, place(records, 3), batch=500, now_ms=T0 + 10**8)
    results, _through = merge(new_page_load_merger(settings), outs)
    rules = [r for r in load_rules(signals=SIGNALS) if r.alert == "CoreWebVitalsPoor"]
    engine = AlertEngine(rules, clock=lambda: 0.0)
    found: list[tuple[str, str, dict[str, str]]] = []
    for result in results:
        for transition in engine.evaluate_view(result).transitions:
            inst = transition.instance
            found.append((transition.state, inst.severity, inst.labels))
    return found


def test_lcp_regression_fires_core_web_vitals_poor_on_its_page_and_device_only() -> None:
    found = alerts_of(["lcp_regression@5m+10m:page=/product/:id,device=mobile,factor=4"])
    firing = {
        (sev, lab["page"], lab["device"], lab["vital"]) for s, sev, lab in found if s == "firing"
    }
    assert firing == {
        ("warning", "/product/:id", "mobile", "lcp"),
        ("critical", "/product/:id", "mobile", "lcp"),
    }
    resolved = {(sev, lab["vital"]) for s, sev, lab in found if s == "resolved"}
    assert resolved == {("warning", "lcp"), ("critical", "lcp")}  # once the view is good again
    assert all(lab["alertname"] == "CoreWebVitalsPoor" for _s, _sev, lab in found)


def test_calm_traffic_passes_and_raises_nothing() -> None:
    assert alerts_of([]) == []


@pytest.mark.parametrize("name", sorted(web_vitals.FIELDS.values()))
@pytest.mark.parametrize(("value", "carried"), [(0, True), (1.5, True), (None, False)])
def test_an_event_carries_vitals_when_any_vital_has_a_value(
    name: str, value: float | None, carried: bool
) -> None:
    rater = web_vitals.VitalsRater(Settings())
    assert rater.carries({"load_ms": 100, name: value}) is carried
    assert rater.carries({"load_ms": 100, "ttfb_ms": None, name: value}) is carried
    assert rater.carries({"load_ms": 100, "lcp": 5, "ttfb": 5}) is False  # not field names
