"""Page-load window figures: the accumulator per (page, device, region) and its summary."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from expmon.alerting.signals import Signal, field, seconds
from expmon.engine.counters import MAX_SAMPLES, keep_samples
from expmon.engine.entities import DUE, Entity
from expmon.engine.labels import LABEL_HEADROOM, LabelDimension, LabelLimiter, fold_labels
from expmon.engine.merge import WindowMerger, view_windows
from expmon.engine.sketch import DDSketch
from expmon.engine.stage import WindowedStage
from expmon.engine.windows import PartitionWindows
from expmon.families import web_vitals
from expmon.families.base import Family, Rows, gauge
from expmon.settings import Settings
from expmon.sim.truth import page_load as truth
from schemas.events import Event, EventFamily

QUANTILES = (0.5, 0.75, 0.95, 0.99)
ALL = "all"  # region label of figures merged over every region


class PageLoadAccumulator:
    """Mergeable figures of page loads in one window for one key."""

    __slots__ = (
        "bounces",
        "count",
        "samples",
        "satisfied",
        "sessions",
        "sketch",
        "slow",
        "sum_ms",
        "tolerating",
        "vitals",
    )

    def __init__(self) -> None:
        self.sessions = 0  # sessions that ended in this window with this landing page
        self.bounces = 0
        self.count = 0
        self.slow = 0
        self.satisfied = 0
        self.tolerating = 0
        self.sum_ms = 0.0
        self.sketch = DDSketch()
        self.samples: list[str] = []  # a few slow loads' event ids (keep_samples): evidence
        self.vitals: web_vitals.Vitals = {}  # Core Web Vitals (web_vitals.py), by vital

    def add(self, load_ms: float, slow_ms: float, apdex_t_ms: float, event_id: str = "") -> None:
        self.count += 1
        self.sum_ms += load_ms
        if load_ms > slow_ms:
            self.slow += 1
            samples = self.samples
            if event_id and (len(samples) < MAX_SAMPLES or event_id < samples[-1]):
                self.samples = keep_samples(samples, (event_id,))
        if load_ms <= apdex_t_ms:
            self.satisfied += 1
        elif load_ms <= 4 * apdex_t_ms:
            self.tolerating += 1
        self.sketch.add(load_ms)

    def merge(self, other: PageLoadAccumulator) -> None:
        self.sessions += other.sessions
        self.bounces += other.bounces
        self.count += other.count
        self.slow += other.slow
        self.satisfied += other.satisfied
        self.tolerating += other.tolerating
        self.sum_ms += other.sum_ms
        self.sketch.merge(other.sketch)
        self.samples = keep_samples(self.samples, other.samples)
        if other.vitals:
            web_vitals.merge_vitals(self.vitals, other.vitals)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "n": self.count,
            "slow": self.slow,
            "sat": self.satisfied,
            "tol": self.tolerating,
            "sum": self.sum_ms,
            "sk": self.sketch.to_dict(),
            "ses": self.sessions,
            "bnc": self.bounces,
        }
        if self.samples:
            data["ids"] = list(self.samples)
        if self.vitals:
            data["v"] = web_vitals.vitals_to_dict(self.vitals)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageLoadAccumulator:
        acc = cls()
        acc.count = int(data["n"])
        acc.slow = int(data["slow"])
        acc.satisfied = int(data["sat"])
        acc.tolerating = int(data["tol"])
        acc.sum_ms = float(data["sum"])
        acc.sketch = DDSketch.from_dict(data["sk"])
        acc.sessions = int(data.get("ses", 0))
        acc.bounces = int(data.get("bnc", 0))
        acc.samples = [str(s) for s in data.get("ids", ())]
        if "v" in data:
            acc.vitals = web_vitals.vitals_from_dict(data["v"])
        return acc

    def copy(self) -> PageLoadAccumulator:
        clone = PageLoadAccumulator()
        clone.merge(self)
        return clone


@dataclass(frozen=True, slots=True)
class PageLoadSummary:
    """What dashboards and alerts read of one key in one window view."""

    view: str
    start_ms: int
    end_ms: int
    page: str
    device: str
    region: str
    count: int
    # None where the window holds no loads (only session ends): nothing to divide
    p50: float | None
    p75: float | None
    p95: float | None
    p99: float | None
    slow_ratio: float | None
    apdex: float | None
    mean_ms: float | None
    sessions: int
    bounces: int
    bounce_ratio: float | None
    sample_event_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        # Spelled out (field order): a getattr loop costs the merge stage twice as much.
        return {
            "view": self.view,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "page": self.page,
            "device": self.device,
            "region": self.region,
            "count": self.count,
            "p50": self.p50,
            "p75": self.p75,
            "p95": self.p95,
            "p99": self.p99,
            "slow_ratio": self.slow_ratio,
            "apdex": self.apdex,
            "mean_ms": self.mean_ms,
            "sessions": self.sessions,
            "bounces": self.bounces,
            "bounce_ratio": self.bounce_ratio,
            "sample_event_ids": self.sample_event_ids,
        }


def summarize(
    view: str, start_ms: int, end_ms: int, key: tuple[str, ...], acc: PageLoadAccumulator
) -> PageLoadSummary:
    page, device, region = key
    p50, p75, p95, p99 = acc.sketch.quantiles(QUANTILES)
    n = acc.count
    return PageLoadSummary(
        view=view,
        start_ms=start_ms,
        end_ms=end_ms,
        page=page,
        device=device,
        region=region,
        count=n,
        p50=p50,
        p75=p75,
        p95=p95,
        p99=p99,
        slow_ratio=acc.slow / n if n else None,
        apdex=(acc.satisfied + acc.tolerating / 2) / n if n else None,
        mean_ms=acc.sum_ms / n if n else None,
        sessions=acc.sessions,
        bounces=acc.bounces,
        bounce_ratio=acc.bounces / acc.sessions if acc.sessions else None,
        sample_event_ids=list(acc.samples),
    )


def with_region_totals(
    accumulators: dict[tuple[str, ...], PageLoadAccumulator],
) -> dict[tuple[str, ...], PageLoadAccumulator]:
    """Add (page, device, "all") merged over regions beside the per-region keys."""
    totals: dict[tuple[str, ...], PageLoadAccumulator] = {}
    for (page, device, _region), acc in accumulators.items():
        total = totals.get((page, device, ALL))
        if total is None:
            total = totals[(page, device, ALL)] = PageLoadAccumulator()
        total.merge(acc)
    return {**accumulators, **totals}


# Seconds; the contract's thresholds (0.8, 1.8, 2.5, 3, 4, 5 s) are edges so that
# Prometheus can count "over 3 s" exactly from buckets.
def landing(event: Event) -> list[str]:
    """A session's landing key as its page view gave it (raw: labelled where it counts)."""
    return [event["page"], event["device"], event["region"]]


LOAD_BUCKETS_SECONDS = (
    0.1,
    0.25,
    0.5,
    0.8,
    1.0,
    1.5,
    1.8,
    2.5,
    3.0,
    4.0,
    5.0,
    7.5,
    10.0,
    15.0,
    30.0,
)


class LoadHistogram:
    """Cumulative load-time histogram per (page, device), counted at ingestion.

    Plain counters rather than prometheus_client.Histogram.observe: one bisect and two
    additions per event, read by a collector at scrape time. Pages are bounded first come
    (`pages`, a process-wide LabelLimiter); a limiter keeps its answer for a value (once
    admitted always admitted, once full always full), so the bounded key of each raw
    (page, device) is worked out once and the counters looked up by the raw pair.
    """

    def __init__(
        self, pages: LabelLimiter, buckets_seconds: tuple[float, ...] = LOAD_BUCKETS_SECONDS
    ) -> None:
        self.pages = pages
        self.buckets_ms = tuple(b * 1000 for b in buckets_seconds)
        self.buckets_seconds = buckets_seconds
        # key -> [per-bucket counts (last: +Inf)..., ], sum_ms
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.sums_ms: dict[tuple[str, str], float] = {}
        # raw (page, device) -> the counts and the key (bounded page) they are kept under
        self._cells: dict[tuple[str, str], tuple[list[int], tuple[str, str]]] = {}

    def observe(self, page: str, device: str, load_ms: float) -> None:
        """Count a load of the raw `page` (bounded here) on `device`."""
        cell = self._cells.get((page, device))
        if cell is None:
            cell = self._cells[(page, device)] = self._cell(page, device)
        counts, key = cell
        counts[bisect_left(self.buckets_ms, load_ms)] += 1
        self.sums_ms[key] += load_ms

    def _cell(self, page: str, device: str) -> tuple[list[int], tuple[str, str]]:
        key = (self.pages(page), device)
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * (len(self.buckets_ms) + 1)
            self.sums_ms[key] = 0.0
        return counts, key


class PageLoadStage(WindowedStage[PageLoadAccumulator]):
    """Page loads: windows per (page, device, region), bounded labels, histogram, bounce.

    Bounce: a session (by `session_id`, the topic key) ends `bounce_seconds` of event time
    after its latest page view. It counts as a session of its landing page (the page of
    its earliest view) in the window where it ends, and as a bounce if it had exactly one
    page view. Only page views count: checkout events are keyed by checkout and live
    elsewhere, so "nothing else" means no other page view.
    """

    family = EventFamily.PAGE_LOAD
    label_positions = (0, 2)  # page and region in (page, device, region)

    def __init__(
        self, settings: Settings, topic: str, source_partitions: int, live: bool = True
    ) -> None:
        super().__init__(settings, topic, source_partitions, live)
        # Window keys are capped per window and partition (a bound on state, see
        # PartitionWindows.label) and each view keeps its top N (`fold_labels`); the
        # process-wide histogram keeps a first-come bound (see expmon.engine.labels).
        self.page_cap = LABEL_HEADROOM * settings.max_pages
        self.region_cap = LABEL_HEADROOM * settings.max_regions
        # the caps of the labelled places of a key, in `label_positions` order
        self.label_caps = (self.page_cap, self.region_cap)
        self.slow_ms = settings.slow_threshold_seconds * 1000
        self.apdex_t_ms = settings.apdex_t_seconds * 1000
        self.histogram = LoadHistogram(LabelLimiter(settings.max_pages))
        self.bounce_ms = int(settings.bounce_seconds * 1000)
        self.vitals = web_vitals.VitalsRater(settings)

    def new_accumulator(self) -> PageLoadAccumulator:
        return PageLoadAccumulator()

    def decode_accumulator(self, data: Any) -> PageLoadAccumulator:
        return PageLoadAccumulator.from_dict(data)

    def add_event(
        self, windows: PartitionWindows[PageLoadAccumulator], event: Event, event_ms: int
    ) -> None:
        device: str = event["device"]
        if self.vitals.carries(event):
            # Labelled before the vitals' key is made: that key adds region `all` to the
            # window's region values, which this event's own labels must not see.
            key = windows.labelled_key(
                event_ms, (event["page"], device, event["region"]), self.label_caps
            )
            # per page and device only (region `all`): per-region sketches of five vitals
            # would multiply the state, partials and merge work by the region count
            self.vitals.add(windows.accumulator(event_ms, (key[0], device, ALL)).vitals, event)
            load = event.get("load_ms")
            if load is None:
                return  # vital-only (a beacon): no load figures, not a page view for bounce
            acc = windows.accumulator(event_ms, key)
        else:
            load = event.get("load_ms")
            if load is None:
                return  # the validators let no such event through; stay safe if they do
            acc = windows.labelled_accumulator(
                event_ms, (event["page"], device, event["region"]), self.label_caps
            )
        load_ms = float(load)
        acc.add(load_ms, self.slow_ms, self.apdex_t_ms, event["event_id"])
        self.histogram.observe(event["page"], device, load_ms)
        self._track_session(windows, event, event_ms)

    def _track_session(
        self,
        windows: PartitionWindows[PageLoadAccumulator],
        event: Event,
        event_ms: int,
    ) -> None:
        session_id: str = event["session_id"]
        table = self.entities[windows.partition]
        session = table.items.get(session_id)
        due = None if session is None else session[DUE]
        if session is not None and due is not None and due <= event_ms:
            # The session ended (in event time) before this view: end it there; this view
            # starts a new one. Event time only, wherever the watermark is.
            self.on_timer(windows, session_id, session, due)
            session = None
        if session is None:
            session = {"land": landing(event), "first": event_ms, "last": event_ms, "views": 1}
            session[DUE] = event_ms + self.bounce_ms
            table.put(session_id, session)
            return
        session["views"] += 1
        # first <= last: a view after the latest is not before the earliest (most views
        # come in order, and each value read is a likely cache miss)
        if event_ms > session["last"]:
            session["last"] = event_ms
            session[DUE] = event_ms + self.bounce_ms
        elif event_ms < session["first"]:  # an earlier view arrived late: it landed there
            session["first"] = event_ms
            session["land"] = landing(event)
        table.touch(session_id, session)  # its deadline moved later or stayed: no re-filing

    def on_timer(
        self,
        windows: PartitionWindows[PageLoadAccumulator],
        entity_id: str,
        entity: Entity,
        deadline: int,
    ) -> None:
        # The landing page's raw values, labelled in the window the session end goes into
        # (a session that started before this version keeps its labelled ones).
        acc = windows.labelled_accumulator(deadline, tuple(entity["land"]), self.label_caps)
        acc.sessions += 1
        if entity["views"] == 1:
            acc.bounces += 1
        self.entities[windows.partition].delete(entity_id)

    def open_sessions(self) -> int:
        return sum(len(table) for table in self.entities.values())


def _page_weight(acc: PageLoadAccumulator) -> float:
    return acc.count + acc.sessions  # loads + session ends


def label_dimensions(
    max_pages: int, max_regions: int
) -> tuple[LabelDimension[PageLoadAccumulator], ...]:
    """Page and region of (page, device, region): each view keeps its top N (fold_labels)."""
    return (
        LabelDimension({None: 0}, max_pages, _page_weight),
        LabelDimension({None: 2}, max_regions, _page_weight),
    )


def summarize_rows(
    view: str,
    start_ms: int,
    end_ms: int,
    accumulators: dict[tuple[str, ...], Any],
    max_pages: int = 50,
    max_regions: int = 20,
) -> list[dict[str, Any]]:
    """Merger summarizer: a row per (page, device, region) plus region `all`, sorted."""
    # region `all` holds the vitals, kept per page and device only: a total, not a value
    folded = fold_labels(
        accumulators,
        label_dimensions(max_pages, max_regions),
        PageLoadAccumulator,
        exempt=frozenset({ALL}),
    )
    merged = with_region_totals(folded)
    rows = [summarize(view, start_ms, end_ms, key, merged[key]).to_dict() for key in sorted(merged)]
    # Core Web Vitals rows (kind web_vital, cwv) after the load rows
    rows += web_vitals.vitals_rows(
        view, start_ms, end_ms, {key: acc.vitals for key, acc in merged.items()}
    )
    return rows


def new_page_load_merger(settings: Settings) -> WindowMerger[PageLoadAccumulator]:
    views = view_windows(settings.window_seconds, settings.rolling_views)
    return WindowMerger(
        str(EventFamily.PAGE_LOAD),
        settings.window_ms,
        views,
        PageLoadAccumulator,
        PageLoadAccumulator.from_dict,
        partial(summarize_rows, max_pages=settings.max_pages, max_regions=settings.max_regions),
        correction_horizon_ms=int(settings.correction_horizon_seconds * 1000),
    )


# ---------------------------------------------------------------------- metrics


class PageLoadCollector(Collector):
    """The load-time histogram from the stages, windowed figures from the final views."""

    def __init__(self, rows: Rows, stages: Sequence[PageLoadStage]) -> None:
        self.rows = rows
        self.stages = stages

    def collect(self) -> Iterator[Metric]:
        yield self._histogram()
        labels = ["page", "device", "region", "window"]
        # A summary (quantiles with the view's _count and _sum), not gauges with a
        # `quantile` label: Prometheus' linter accepts `quantile` only on summaries.
        quantile = Metric(
            "expmon_page_load_quantile_seconds",
            "Page load time quantiles per closed window view (from a 1% relative-error sketch);"
            " _count and _sum: the loads of the view",
            "summary",
        )
        bounce = GaugeMetricFamily(
            "expmon_bounce_ratio",
            "Share of sessions ending in the window with one page view, by landing page",
            labels=labels,
        )
        slow = GaugeMetricFamily(
            "expmon_page_load_slow_ratio",
            "Share of page loads over the slow threshold (3 s)",
            labels=labels,
        )
        apdex = GaugeMetricFamily(
            "expmon_page_load_apdex", "Apdex of page loads (T = apdex_t)", labels=labels
        )
        loads = GaugeMetricFamily(
            "expmon_page_load_window_loads", "Page loads counted in the window view", labels=labels
        )
        sessions = GaugeMetricFamily(
            "expmon_bounce_window_sessions",
            "Sessions ending in the window, by landing page (bounce ratio denominator)",
            labels=labels,
        )
        bounces = GaugeMetricFamily(
            "expmon_bounce_window_bounces",
            "Sessions ending in the window with one page view, by landing page",
            labels=labels,
        )
        vitals = web_vitals.VitalGauges()
        for view, row in self.rows():
            if "kind" in row:  # Core Web Vitals rows
                vitals.add(view, row)
                continue
            values = [str(row["page"]), str(row["device"]), str(row["region"]), view]
            if row.get("bounce_ratio") is not None:
                bounce.add_metric(values, float(row["bounce_ratio"]))
                sessions.add_metric(values, float(row["sessions"]))
                bounces.add_metric(values, float(row["bounces"]))
            if not row["count"]:
                continue  # only session ends in this window: no load figures to show
            keyed = dict(zip(labels, values, strict=True))
            for q in QUANTILES:
                field = f"p{round(q * 100)}"
                quantile.add_sample(
                    quantile.name, {**keyed, "quantile": str(q)}, float(row[field]) / 1000
                )
            count = float(row["count"])
            quantile.add_sample(quantile.name + "_count", keyed, count)
            quantile.add_sample(quantile.name + "_sum", keyed, float(row["mean_ms"]) * count / 1000)
            slow.add_metric(values, float(row["slow_ratio"]))
            apdex.add_metric(values, float(row["apdex"]))
            loads.add_metric(values, float(row["count"]))
        yield quantile
        yield bounce
        yield slow
        yield apdex
        yield loads
        yield sessions
        yield bounces
        yield from vitals.families()
        open_sessions = gauge("expmon_sessions_open", "Sessions held in state (for bounce)", [])
        open_sessions.add_metric([], sum(stage.open_sessions() for stage in self.stages))
        yield open_sessions

    def _histogram(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "expmon_page_load_seconds",
            "Page load time (load_ms) of accepted events",
            labels=["page", "device"],
        )
        merged: dict[tuple[str, str], tuple[list[int], float]] = {}
        histograms = [stage.histogram for stage in self.stages]
        for hist in histograms:
            for key, counts in hist.counts.items():
                prior = merged.get(key)
                if prior is None:
                    merged[key] = (list(counts), hist.sums_ms[key])
                else:
                    merged[key] = (
                        [a + b for a, b in zip(prior[0], counts, strict=True)],
                        prior[1] + hist.sums_ms[key],
                    )
        edges = histograms[0].buckets_seconds if histograms else ()
        for (page, device), (counts, sum_ms) in sorted(merged.items()):
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for edge, n in zip([*map(str, edges), "+Inf"], counts, strict=True):
                cumulative += n
                buckets.append((edge, float(cumulative)))
            family.add_metric([page, device], buckets, sum_ms / 1000)
        return family


# ---------------------------------------------------------------------- alert signals


def quantile_signal(q: str) -> Signal:
    return Signal(
        name=f"page_load_p{q}_seconds",
        description=f"p{q} page load time of a page and device over the window",
        source="window",
        family="page_load",
        labels=("page", "device"),
        fixed={"region": "all"},
        unit="seconds",
        value=seconds(f"p{q}"),
        volume=field("count"),
        # doubled braces survive this f-string for the later .format(w=..., sel=...)
        prom_value=f'expmon_page_load_quantile_seconds{{{{quantile="0.{q}",window="{{w}}"{{sel}}}}}}',
        prom_volume='expmon_page_load_window_loads{{window="{w}"{sel}}}',
    )


SIGNALS: tuple[Signal, ...] = (
    quantile_signal("95"),
    quantile_signal("99"),
    Signal(
        name="page_load_slow_ratio",
        description="share of page loads over 3 s",
        source="window",
        family="page_load",
        labels=("page", "device"),
        fixed={"region": "all"},
        unit="ratio",
        numerator=lambda row: float(row.get("slow_ratio") or 0) * float(row.get("count") or 0),
        denominator=field("count"),
        prom_value='expmon_page_load_slow_ratio{{window="{w}"{sel}}}',
        prom_volume='expmon_page_load_window_loads{{window="{w}"{sel}}}',
    ),
    Signal(
        name="bounce_ratio",
        description="sessions with a single page view / sessions, by landing page",
        source="window",
        family="page_load",
        labels=("page", "device"),
        fixed={"region": "all"},
        unit="ratio",
        numerator=field("bounces"),
        denominator=field("sessions"),
        prom_value='expmon_bounce_window_bounces{{window="{w}"{sel}}}',
        prom_volume='expmon_bounce_window_sessions{{window="{w}"{sel}}}',
    ),
    *web_vitals.SIGNALS,
)


FAMILY = Family(
    name=EventFamily.PAGE_LOAD,
    topic_setting="topic_page_loads",
    stage=PageLoadStage,
    new_merger=new_page_load_merger,
    collector=PageLoadCollector,
    signals=SIGNALS,
    truth=truth.TRUTH,
    agent="page-loads",
    table="page-load-state",
)
