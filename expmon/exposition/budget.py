"""The series budget: which series a `/metrics` page leaves out when it would hold more
than `EXPMON_SERIES_BUDGET`.

Series are dropped in groups (every sample of one label set, across metric names, so a
quantile never stays without the volume behind it), in this order (`TIERS`, first
dropped first):

1. breakdowns (a label that has an `all` total, such as `region`, `device`, `channel`,
   `user_type` or a warehouse's `carrier`, at a value other than `all`) of every view but
   the dashboards' default view 5m, longest rolling view first (1h, 15m, ..., then 1m);
2. breakdowns of the 5m view;
3. totals (the contract's series) of the rolling views other than 5m, longest first,
   then the base 1m view;
4. totals of the 5m view;
5. series without a window (histograms, counters, pipeline gauges).

Within a tier the groups with the least volume go first (loads, attempts, decided orders
in the view; a histogram's count): the longest-tail pages, regions and providers. What a
render dropped is counted per tier (`expmon_series_dropped_total{tier}`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric

from expmon.settings import Settings, parse_duration_seconds

DEFAULT_VIEW = "5m"  # the dashboards' default window view (expmon/dashboards/generate.py)
ALL = "all"
UNWINDOWED = "unwindowed"

LabelSet = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Budgeted:
    """A render's metric families within the budget, and what was left out per tier."""

    families: list[Metric]
    exposed: int
    dropped: dict[str, int]


def tiers(views: Sequence[str]) -> tuple[str, ...]:
    """Tier names in drop order for these window views (`breakdown:1h`, ..., `unwindowed`)."""

    def order(view: str) -> tuple[bool, bool, int]:
        seconds = parse_duration_seconds(view) if view[:-1].isdigit() else 0
        base = view == min(views, key=parse_duration_seconds)
        return (view == DEFAULT_VIEW, base, -seconds)

    ordered = sorted(views, key=order)
    return (
        *(f"breakdown:{v}" for v in ordered),
        *(f"total:{v}" for v in ordered),
        UNWINDOWED,
    )


def _is_volume(sample_name: str) -> bool:
    return "_window_" in sample_name or sample_name.endswith("_count")


def apply_budget(
    families: Iterable[Metric], budget: int, views: Sequence[str], reserve: int = 0
) -> Budgeted:
    """The families with whole groups dropped in tier order until at most `budget -
    reserve` series remain (`reserve`: series the caller adds after this, its own)."""
    families = list(families)
    total = sum(len(f.samples) for f in families)
    order = tiers(views)
    limit = max(0, budget - reserve)
    if total <= limit:
        return Budgeted(families, total, {})
    rank = {name: i for i, name in enumerate(order)}

    # labels that take the value `all` somewhere in a family: its breakdown dimensions
    aggregated: dict[str, tuple[str, ...]] = {}
    for family in families:
        names: set[str] = set()
        for s in family.samples:
            if ALL in s.labels.values():
                names.update(k for k, v in s.labels.items() if v == ALL)
        aggregated[family.name] = tuple(sorted(names))

    # pass 1: each sample's tier (cheap), and the series per tier
    tier_rank: list[list[int]] = []
    per_tier = [0] * len(order)
    unwindowed = rank[UNWINDOWED]
    for family in families:
        dims = aggregated[family.name]
        ranks: list[int] = []
        append = ranks.append
        for s in family.samples:
            labels = s.labels
            window = labels.get("window")
            if window is None:
                r = unwindowed
            else:
                kind = "breakdown:" if any(labels.get(d, ALL) != ALL for d in dims) else "total:"
                r = rank.get(kind + window, unwindowed)
            append(r)
            per_tier[r] += 1
        tier_rank.append(ranks)

    # tiers dropped whole, and the one tier cut in part (least volume first)
    excess = total - limit
    dropped: dict[str, int] = {}
    whole = -1
    for r, n in enumerate(per_tier):
        if excess <= 0:
            break
        if n <= excess:
            whole, excess = r, excess - n
            if n:
                dropped[order[r]] = n
            continue
        break
    partial = whole + 1 if excess > 0 else None

    # pass 2: label-set groups of the partial tier only
    dropped_keys: set[LabelSet] = set()
    if partial is not None:
        size: dict[LabelSet, int] = {}
        volume: dict[LabelSet, float] = {}
        for family, ranks in zip(families, tier_rank, strict=True):
            all_volume = "_window_" in family.name
            count_volume = family.type in ("summary", "histogram")
            for s, r in zip(family.samples, ranks, strict=True):
                if r != partial:
                    continue
                key = _key(s.labels)
                size[key] = size.get(key, 0) + 1
                if all_volume or (count_volume and s.name.endswith("_count")):
                    volume[key] = max(volume.get(key, 0.0), float(s.value))
        cut = 0
        for key in sorted(size, key=lambda k: (volume.get(k, 0.0), k)):
            if excess <= 0:
                break
            dropped_keys.add(key)
            cut += size[key]
            excess -= size[key]
        dropped[order[partial]] = cut

    kept_families: list[Metric] = []
    for family, ranks in zip(families, tier_rank, strict=True):
        if all(r > whole and r != partial for r in ranks):
            kept_families.append(family)
            continue
        clone = Metric(family.name, family.documentation, family.type, family.unit)
        clone.samples = [
            s
            for s, r in zip(family.samples, ranks, strict=True)
            if r > whole and (r != partial or _key(s.labels) not in dropped_keys)
        ]
        kept_families.append(clone)
    return Budgeted(kept_families, total - sum(dropped.values()), dropped)


def _key(labels: dict[str, str]) -> LabelSet:
    """A sample's group: its labels but `quantile` and `le` (a summary's or histogram's
    samples of one label set go together)."""
    if "quantile" in labels or "le" in labels:
        return tuple(sorted((k, v) for k, v in labels.items() if k not in {"quantile", "le"}))
    return tuple(sorted(labels.items()))


def fill_page_loads(
    metrics: Any, settings: Settings, pages: int, regions: int, end_ms: int = 1_704_067_200_000
) -> None:
    """Every (page, device, region) of `pages` x 3 devices x `regions` in every view of the
    board, and the load histogram of each (page, device): an exposition at (or past) the
    label limits, as heavy traffic spread over every page and region makes it. Volumes
    fall with the page's and the region's rank (a long tail), so budgets have a tail to
    drop. For the bench and the tests."""
    from expmon.engine.merge import ViewResult
    from expmon.families.page_load import PageLoadAccumulator, PageLoadStage, summarize_rows

    stage = PageLoadStage(settings, settings.topic_page_loads, 1)
    metrics.attach(stage)
    accumulators: dict[tuple[str, ...], PageLoadAccumulator] = {}
    for p in range(pages):
        page = f"/page-{p}/:id"
        for device in ("mobile", "desktop", "tablet"):
            for r in range(regions):
                region = f"region-{r}"
                acc = accumulators.setdefault((page, device, region), PageLoadAccumulator())
                for i in range(1 + 60 // (1 + p + r)):
                    load_ms = 300.0 + 97.0 * i + 11.0 * p
                    acc.add(load_ms, stage.slow_ms, stage.apdex_t_ms, f"e-{p}-{r}-{i}")
                    stage.histogram.observe(page, device, load_ms)
    for view in settings.views:
        length = parse_duration_seconds(view) * 1000
        rows = summarize_rows(
            view,
            end_ms - length,
            end_ms,
            dict(accumulators),
            max_pages=settings.max_pages,
            max_regions=settings.max_regions,
        )
        metrics.board.update(ViewResult("page_load", view, end_ms - length, end_ms, rows))
