"""The series budget holds at and beyond the default label limits, drops in its
documented order (breakdowns, then rolling views, longest tail first), counts what it
drops, and leaves the series the default dashboards read."""

from __future__ import annotations

import subprocess
from functools import cache

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from expmon.exposition.budget import apply_budget, fill_page_loads, tiers
from expmon.exposition.metrics import Metrics, new_registry
from expmon.exposition.render import Exposition
from expmon.settings import Settings

DEVICES = ("mobile", "desktop", "tablet")


@cache
def page(pages: int, regions: int, budget: int) -> str:
    settings = Settings(series_budget=budget)
    metrics = Metrics(new_registry())
    fill_page_loads(metrics, settings, pages, regions)
    return Exposition(metrics, budget, settings.views).render().body.decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def test_drop_order_for_the_default_views() -> None:
    assert tiers(("1m", "5m", "15m", "1h")) == (
        "breakdown:1h", "breakdown:15m", "breakdown:1m", "breakdown:5m",
        "total:1h", "total:15m", "total:1m", "total:5m", "unwindowed",
    )  # fmt: skip


def test_under_the_budget_nothing_is_dropped() -> None:
    settings = Settings()
    metrics = Metrics(new_registry())
    fill_page_loads(metrics, settings, 3, 2)
    families = list(metrics.registry.collect())
    budgeted = apply_budget(families, 10_000, settings.views)
    assert budgeted.dropped == {}
    served = Exposition(metrics, 10_000, settings.views).render().body.decode()

    def lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if "expmon_exposition_series" not in line]

    assert lines(served) == lines(generate_latest(metrics.registry).decode())


def test_the_default_budget_holds_at_the_default_limits() -> None:
    text = page(50, 20, 10_000)
    found = samples(text)
    assert len(found) <= 10_000
    checked = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), check=False)
    assert checked.returncode == 0
    dropped = sum(v for n, _, v in found if n == "expmon_series_dropped_total")
    exposed = next(v for n, _, v in found if n == "expmon_exposition_series")
    unbudgeted = len(samples(page(50, 20, 10**9)))
    assert dropped > 80_000
    assert exposed + dropped == unbudgeted
    # every contract series (region "all") of every view, page and device is there
    quantiles = {
        (labels["page"], labels["device"], labels["window"])
        for name, labels, _ in found
        if name == "expmon_page_load_quantile_seconds" and labels["region"] == "all"
    }
    pages = {f"/page-{p}/:id" for p in range(50)}
    assert quantiles == {(p, d, v) for p in pages for d in DEVICES for v in Settings().views}
    histograms = {
        (labels["page"], labels["device"])
        for name, labels, _ in found
        if name == "expmon_page_load_seconds_count"
    }
    assert histograms == {(p, d) for p in pages for d in DEVICES}


def test_the_budget_holds_beyond_the_limits_and_keeps_the_busiest_breakdowns() -> None:
    text = page(400, 100, 10_000)
    found = samples(text)
    assert len(found) <= 10_000
    regions = {
        labels["region"]
        for name, labels, _ in found
        if name == "expmon_page_load_window_loads" and labels["window"] == "5m"
    }
    # beyond the limits the tail is `other`; 5m breakdowns kept are the busiest ones
    assert "all" in regions and "region-0" in regions
    assert not any(
        labels["region"] not in ("all",) and labels["window"] != "5m"
        for name, labels, _ in found
        if name == "expmon_page_load_window_loads"
    )
    pages = {labels["page"] for name, labels, _ in found if "page" in labels}
    assert "other" in pages and len(pages) == 51


def test_a_small_budget_drops_rolling_views_before_the_5m_view_tail_first() -> None:
    text = page(50, 20, 3_000)
    found = samples(text)
    assert len(found) <= 3_000
    views = {
        (labels["window"], labels["page"])
        for name, labels, _ in found
        if name == "expmon_page_load_window_loads"
    }
    assert {v for v, _ in views} <= {"5m", "1m"}
    kept_5m = {p for v, p in views if v == "5m"}
    # within a tier the least volume goes first: the busiest pages stay
    assert "/page-0/:id" in kept_5m
    by_tier = {
        labels["tier"]: v for name, labels, v in found if name == "expmon_series_dropped_total"
    }
    assert by_tier["total:1h"] > 0 and by_tier["total:15m"] > 0
    assert "unwindowed" not in by_tier
