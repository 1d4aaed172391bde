"""Grafana dashboards of Experience Monitor, generated from a compact panel list.

The committed files under `deploy/grafana/dashboards/` and `docs/dashboards.md` are this
module's output (`python -m expmon.dashboards` rewrites them; a unit test fails when they
drift). Every query reads only metrics the worker exports (`expmon/exposition/metrics.py`) plus
Prometheus's own `up` and `ALERTS`; `tests/integration/test_dashboards.py` runs each one
against a real Prometheus scraping a real worker and requires data.

Conventions: window gauges are filtered on one `window` view; ratios that must add up
over labels are computed from numerator and denominator gauges (a mean of ratios would
weigh a page with 3 loads like one with 3000); quantiles cannot be added, so panels show
them per series or take the worst (`max`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

DATASOURCE_UID = "expmon-prometheus"  # the uid deploy/grafana/provisioning gives Prometheus
DS = {"type": "prometheus", "uid": "${datasource}"}
OUT_DIR = Path("deploy/grafana/dashboards")
DOCS = Path("docs/dashboards.md")
GRID_WIDTH = 24

# Threshold colours: Grafana draws a step from its value upward.
GREEN, ORANGE, RED = "green", "orange", "red"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel. `kind` is a Grafana panel type.

    Queries are range queries, as Grafana runs them by default: stat and bar gauge panels
    show the last value in the time range, so a view that closed a minute ago still shows
    while the next one fills. Tables (firing alerts) and figures over the whole range
    (`$__range`) are instant queries: the answer now."""

    title: str
    description: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    unit: str = "short"
    # (value, colour) steps above the base colour; drawn as lines on time series
    steps: tuple[tuple[float, str], ...] = ()
    base: str = GREEN
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None

    @property
    def instant(self) -> bool:
        return self.kind == "table" or any("$__range" in query.expr for query in self.queries)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A template variable: `label_values(metric, label)`, or fixed `options`."""

    name: str
    label: str
    metric: str = ""
    options: tuple[str, ...] = ()
    default: str = ""  # "" = All (regex .*)

    @property
    def query(self) -> str:
        return (
            f"label_values({self.metric}, {self.name})" if self.metric else ",".join(self.options)
        )


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    time_from: str = "now-3h"

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"


# ---------------------------------------------------------------- panel helpers


def q(expr: str, legend: str = "") -> tuple[Query, ...]:
    return (Query(expr, legend),)


def ts(title: str, description: str, queries: tuple[Query, ...], unit: str, **kw: Any) -> Panel:
    return Panel(title, description, queries, "timeseries", unit, **kw)


def stat(title: str, description: str, expr: str, unit: str, **kw: Any) -> Panel:
    return Panel(title, description, q(expr), "stat", unit, width=kw.pop("width", 4), **kw)


def bars(title: str, description: str, queries: tuple[Query, ...], unit: str, **kw: Any) -> Panel:
    return Panel(title, description, queries, "bargauge", unit, **kw)


def table(title: str, description: str, queries: tuple[Query, ...], unit: str, **kw: Any) -> Panel:
    return Panel(title, description, queries, "table", unit, **kw)


def ratio(numerator: str, denominator: str, by: str = "") -> str:
    """sum(num) / sum(den), optionally `by` labels: a ratio that adds up across series."""
    agg = f"sum by ({by}) " if by else "sum "
    return f"{agg}({numerator})\n/\n{agg}({denominator})"


PAYMENT_ALERT = ((0.03, RED),)  # PaymentFailureRateHigh: > 3 %
SLOW_ALERT = ((3.0, ORANGE), (5.0, RED))  # PageLoadSlow: p95 > 3 s warning, > 5 s critical
DELIVERY_ALERT = ((0.05, RED),)  # DeliveryExceptionRateHigh: > 5 %
STALE_ALERT = ((0.02, RED),)  # TrackingStale: > 2 %
INVALID_ALERT = ((0.01, RED),)  # InvalidEventRateHigh: > 1 %
BOUNCE_ALERT = ((0.4, RED),)  # BounceRateHigh: > 40 %
SLA_OK = ((0.95, GREEN),)  # ShippingSLABreach: more than 5 % not shipped in 48 h (base red)
APDEX_BANDS = ((0.7, ORANGE), (0.85, GREEN))  # Apdex ratings: < 0.7 poor, >= 0.85 good
# Google's Core Web Vitals thresholds (defaults of the settings): needs improvement, poor
LCP_BANDS = ((2.5, ORANGE), (4.0, RED))
INP_BANDS = ((0.2, ORANGE), (0.5, RED))
CLS_BANDS = ((0.1, ORANGE), (0.25, RED))
FCP_BANDS = ((1.8, ORANGE), (3.0, RED))
TTFB_BANDS = ((0.8, ORANGE), (1.8, RED))
RATING_BANDS = ((1, ORANGE), (2, RED))  # CoreWebVitalsPoor: 1 warning, 2 critical

WINDOW = Variable("window", "Window view", options=("1m", "5m", "15m", "1h"), default="5m")
WINDOW_15M = Variable("window", "Window view", options=("1m", "5m", "15m", "1h"), default="15m")
WINDOW_1H = Variable("window", "Window view", options=("1m", "5m", "15m", "1h"), default="1h")
DATASOURCE_VAR = "datasource"

# ---------------------------------------------------------------- on-call overview

P95_5M = 'expmon_page_load_quantile_seconds{quantile="0.95",window="5m",region="all"}'
PAY_5M = 'user_type="all",window="5m"'
SLA_1H = 'carrier="all",window="1h"'

CWV_PASS_15M = 'expmon_core_web_vitals_pass{window="15m"}'
CWV_RATING_15M = 'expmon_web_vital_p75_rating{vital=~"lcp|inp|cls",window="15m"}'

OVERVIEW = Dashboard(
    uid="expmon-overview",
    title="Experience Monitor / On-call overview",
    description="What is broken right now: firing alerts, the worst pages, payment and "
    "delivery health, and whether the pipeline itself is healthy. Each figure uses the "
    "window of the alert that watches it.",
    variables=(),
    rows=(
        Row(
            "Now",
            (
                stat(
                    "Alerts firing (stream engine)",
                    "Alert instances the in-stream engine holds firing (`expmon_alerts_firing`,"
                    " max over workers: only the merge-stage owner updates it).",
                    "sum(max by (alertname, severity) (expmon_alerts_firing))",
                    "short",
                    steps=((1, RED),),
                ),
                stat(
                    "Worst page p95 (5m)",
                    "Highest p95 load time of any page and device over the last 5-minute view. "
                    "PageLoadSlow warns over 3 s and pages over 5 s.",
                    f"max({P95_5M})",
                    "s",
                    steps=SLOW_ALERT,
                ),
                stat(
                    "Payment failures (5m)",
                    "Failed / attempted payments over all providers in the last 5-minute view.",
                    ratio(
                        f"expmon_payment_window_failures{{{PAY_5M}}}",
                        f"expmon_payment_window_attempts{{{PAY_5M}}}",
                    ),
                    "percentunit",
                    steps=PAYMENT_ALERT,
                ),
                stat(
                    "Checkout conversion (15m)",
                    "order_placed / checkout_started over the last 15-minute view, all devices "
                    "and channels. CheckoutDropOffSpike compares it with its 24 h level.",
                    'expmon_checkout_conversion_ratio{device="all",channel="all",'
                    'user_type="all",window="15m"}',
                    "percentunit",
                    min=0,
                    max=1,
                ),
                stat(
                    "Shipped within 48 h (1h)",
                    "Orders shipped within 48 h of order_placed / orders decided, all "
                    "warehouses, last 1-hour view.",
                    ratio(
                        f"expmon_ship_within_sla_ratio{{{SLA_1H}}}"
                        f" * expmon_ship_window_decided{{{SLA_1H}}}",
                        f"expmon_ship_window_decided{{{SLA_1H}}}",
                    ),
                    "percentunit",
                    steps=SLA_OK,
                    base=RED,
                ),
                stat(
                    "Failed deliveries (1h)",
                    "delivery_failed / (delivered + delivery_failed), all carriers, last "
                    "1-hour view.",
                    ratio(
                        'expmon_delivery_window_failed{window="1h"}',
                        'expmon_delivery_window_attempts{window="1h"}',
                    ),
                    "percentunit",
                    steps=DELIVERY_ALERT,
                ),
            ),
        ),
        Row(
            "Alerts",
            (
                bars(
                    "Firing instances by alert",
                    "Every rule of the stream engine with its firing instances (0 = quiet). "
                    "Dimension labels (page, provider, carrier...) are in Alertmanager.",
                    q(
                        "max by (alertname, severity) (expmon_alerts_firing)",
                        "{{alertname}} ({{severity}})",
                    ),
                    "short",
                    steps=((1, RED),),
                ),
                table(
                    "Firing in Prometheus (twin rules)",
                    "The same rules evaluated by Prometheus over the exported metrics "
                    "(`expmon rules export-prometheus`), with their dimension labels. Later "
                    "than the stream engine by the scrape and evaluation intervals.",
                    q('ALERTS{alertstate="firing"}'),
                    "short",
                ),
            ),
        ),
        Row(
            "Where",
            (
                bars(
                    "Worst pages: p95 load time (5m)",
                    "The 10 slowest page and device pairs over the last 5-minute view.",
                    q(f"topk(10, {P95_5M})", "{{page}} {{device}}"),
                    "s",
                    steps=SLOW_ALERT,
                    width=8,
                ),
                ts(
                    "Payment failure ratio by provider (5m)",
                    "Failed / attempted payments per provider, 5-minute views; the line is "
                    "PaymentFailureRateHigh's 3 %.",
                    q(
                        ratio(
                            f"expmon_payment_window_failures{{{PAY_5M}}}",
                            f"expmon_payment_window_attempts{{{PAY_5M}}}",
                            "provider",
                        ),
                        "{{provider}}",
                    ),
                    "percentunit",
                    steps=PAYMENT_ALERT,
                    width=8,
                ),
                ts(
                    "Failed deliveries by carrier (1h)",
                    "delivery_failed / attempts per carrier, 1-hour views; the line is "
                    "DeliveryExceptionRateHigh's 5 %.",
                    q('expmon_delivery_exception_ratio{window="1h"}', "{{carrier}}"),
                    "percentunit",
                    steps=DELIVERY_ALERT,
                    width=8,
                ),
            ),
        ),
        Row(
            "Core Web Vitals",
            (
                stat(
                    "Pages failing Core Web Vitals (15m)",
                    "Pairs whose p75 of LCP, INP or CLS is not good over the last 15-minute "
                    "view (`expmon_core_web_vitals_pass` = 0); CoreWebVitalsPoor names them.",
                    f"count({CWV_PASS_15M} == 0) or vector(0)",
                    "short",
                    steps=((1, ORANGE),),
                    width=6,
                ),
                bars(
                    "Worst pages: p75 LCP (15m)",
                    "The 10 page and device pairs with the highest p75 Largest Contentful "
                    "Paint over the last 15-minute view: good up to 2.5 s, poor over 4 s.",
                    q(
                        'topk(10, expmon_web_vital_p75_seconds{vital="lcp",window="15m"})',
                        "{{page}} {{device}}",
                    ),
                    "s",
                    steps=LCP_BANDS,
                    width=9,
                ),
                bars(
                    "Worst p75 ratings of LCP, INP, CLS (15m)",
                    "The 10 worst p75 ratings (0 good, 1 needs improvement: warning, 2 poor: "
                    "critical) with their samples behind them in the alert's view.",
                    q(
                        f"topk(10, {CWV_RATING_15M})",
                        "{{vital}} {{page}} {{device}}",
                    ),
                    "short",
                    steps=RATING_BANDS,
                    min=0,
                    max=2,
                    width=9,
                ),
            ),
        ),
        Row(
            "Pipeline",
            (
                ts(
                    "Events per second by topic",
                    "Records accepted per second per input topic (all workers).",
                    q(
                        'sum by (topic) (rate(expmon_events_total{outcome="accepted"}'
                        "[$__rate_interval]))",
                        "{{topic}}",
                    ),
                    "cps",
                    width=8,
                ),
                ts(
                    "Invalid share by topic (5m)",
                    "Invalid / received records per topic over 5 minutes; the line is "
                    "InvalidEventRateHigh's 1 %.",
                    q(
                        ratio(
                            'rate(expmon_events_total{outcome="invalid"}[5m])',
                            "rate(expmon_events_total[5m])",
                            "topic",
                        ),
                        "{{topic}}",
                    ),
                    "percentunit",
                    steps=INVALID_ALERT,
                    width=8,
                ),
                ts(
                    "Watermark lag by topic",
                    "Wall clock minus the lowest partition watermark: how far event time "
                    "trails. Windows close this late (plus the 30 s lateness).",
                    q("max by (topic) (expmon_watermark_lag_seconds)", "{{topic}}"),
                    "s",
                    width=8,
                ),
            ),
        ),
    ),
)

# ---------------------------------------------------------------- page performance

PL = 'page=~"$page",device=~"$device",region=~"$region",window="$window"'
PL_REGIONS = 'page=~"$page",device=~"$device",region!="all",window="$window"'
HIST = 'page=~"$page",device=~"$device"'


def weighted(metric: str, by: str, selector: str = PL) -> str:
    """A per-window share summed over series, weighted by each series' loads."""
    return ratio(
        f"{metric}{{{selector}}} * expmon_page_load_window_loads{{{selector}}}",
        f"expmon_page_load_window_loads{{{selector}}}",
        by,
    )


PAGES = Dashboard(
    uid="expmon-pages",
    title="Experience Monitor / Page performance",
    description="Load time of pages by page, device and region: quantiles of each window "
    "view with the 3 s line, the share of slow loads, Apdex, bounce and volume. Region "
    "`all` is merged over regions.",
    variables=(
        WINDOW,
        Variable("page", "Page", "expmon_page_load_window_loads"),
        Variable("device", "Device", "expmon_page_load_window_loads"),
        Variable("region", "Region", "expmon_page_load_window_loads", default="all"),
    ),
    rows=(
        Row(
            "Load time",
            (
                ts(
                    "p95 load time by page and device",
                    "p95 of each page and device in the chosen window view (1 % relative "
                    "error sketches, merged over partitions and workers). Lines: 3 s "
                    "(PageLoadSlow warning) and 5 s (critical).",
                    q(
                        f'expmon_page_load_quantile_seconds{{quantile="0.95",{PL}}}',
                        "{{page}} {{device}} {{region}}",
                    ),
                    "s",
                    steps=SLOW_ALERT,
                ),
                ts(
                    "Quantiles of the slowest series",
                    "p50, p75, p95 and p99: the highest value over the selected pages, "
                    "devices and regions.",
                    q(
                        f"max by (quantile) (expmon_page_load_quantile_seconds{{{PL}}})",
                        "p{{quantile}}",
                    ),
                    "s",
                    steps=SLOW_ALERT,
                ),
                ts(
                    "p95 by region",
                    "Worst p95 of the selected pages and devices per region: a regional "
                    "incident (CDN, edge) shows as one line rising.",
                    q(
                        "max by (region) (expmon_page_load_quantile_seconds"
                        f'{{quantile="0.95",{PL_REGIONS}}})',
                        "{{region}}",
                    ),
                    "s",
                    steps=SLOW_ALERT,
                ),
                ts(
                    "p95 from the histogram (arrival time)",
                    "p95 per page from the `expmon_page_load_seconds` histogram over the rate "
                    "interval: by arrival, not event time, and only as fine as the bucket "
                    "edges (0.8, 1.8, 2.5, 3, 4, 5 s...).",
                    q(
                        "histogram_quantile(0.95, sum by (le, page) "
                        f"(rate(expmon_page_load_seconds_bucket{{{HIST}}}[$__rate_interval])))",
                        "{{page}}",
                    ),
                    "s",
                    steps=SLOW_ALERT,
                ),
            ),
        ),
        Row(
            "Experience",
            (
                ts(
                    "Slow share (> 3 s) by page",
                    "Share of loads over 3 s per page, weighted by loads over devices and regions.",
                    q(weighted("expmon_page_load_slow_ratio", "page"), "{{page}}"),
                    "percentunit",
                    min=0,
                ),
                ts(
                    "Apdex by page",
                    "(satisfied + tolerating / 2) / loads with T = 2.5 s, weighted by loads. "
                    "Lines at 0.7 (poor below) and 0.85 (good above).",
                    q(weighted("expmon_page_load_apdex", "page"), "{{page}}"),
                    "none",
                    steps=APDEX_BANDS,
                    base=RED,
                    min=0,
                    max=1,
                ),
                ts(
                    "Bounce rate by landing page",
                    "Sessions that viewed only their landing page / sessions that ended, in "
                    "the window; the line is BounceRateHigh's 40 %.",
                    q(
                        ratio(
                            f"expmon_bounce_window_bounces{{{PL}}}",
                            f"expmon_bounce_window_sessions{{{PL}}}",
                            "page",
                        ),
                        "{{page}}",
                    ),
                    "percentunit",
                    steps=BOUNCE_ALERT,
                ),
                bars(
                    "Loads in the window by page and device",
                    "Page loads counted in the latest window view (the volume behind the "
                    "quantiles; PageLoadSlow needs 30).",
                    q(
                        f"sum by (page, device) (expmon_page_load_window_loads{{{PL}}})",
                        "{{page}} {{device}}",
                    ),
                    "short",
                ),
                ts(
                    "Loads per second by device",
                    "Accepted page loads per second (histogram count, all workers).",
                    q(
                        "sum by (device) (rate(expmon_page_load_seconds_count"
                        f"{{{HIST}}}[$__rate_interval]))",
                        "{{device}}",
                    ),
                    "cps",
                    width=24,
                ),
            ),
        ),
    ),
)

# ---------------------------------------------------------------- Core Web Vitals

CWV = 'page=~"$page",device=~"$device",window="$window"'


def p75_panel(vital: str, name: str, bands: tuple[tuple[float, str], ...]) -> Panel:
    good, poor = bands[0][0], bands[1][0]
    return ts(
        f"p75 {name} by page and device",
        f"p75 of {name} per page and device in the window view (1 % sketches merged over "
        f"workers). Lines: good up to {good:g} s, poor over {poor:g} s.",
        q(f'expmon_web_vital_p75_seconds{{vital="{vital}",{CWV}}}', "{{page}} {{device}}"),
        "s",
        steps=bands,
    )


WEB_VITALS = Dashboard(
    uid="expmon-web-vitals",
    title="Experience Monitor / Core Web Vitals",
    description="Core Web Vitals of real page views (from the page-load events' ttfb_ms, "
    "fcp_ms, lcp_ms, inp_ms and cls): p75 per page and device with Google's thresholds, "
    "the share rated good / needs improvement / poor, and the Core Web Vitals assessment "
    "(LCP, INP and CLS all good at p75).",
    variables=(
        WINDOW_15M,
        Variable("page", "Page", "expmon_web_vital_window_samples"),
        Variable("device", "Device", "expmon_web_vital_window_samples"),
    ),
    rows=(
        Row(
            "Assessment",
            (
                bars(
                    "Core Web Vitals assessment by page and device",
                    "1 = passes (the p75 of LCP, INP and CLS are good; without INP samples, "
                    "LCP and CLS), 0 = fails. Pages without LCP or CLS samples are not "
                    "assessed and not shown.",
                    q(f"expmon_core_web_vitals_pass{{{CWV}}}", "{{page}} {{device}}"),
                    "short",
                    steps=((1, GREEN),),
                    base=RED,
                    min=0,
                    max=1,
                    width=8,
                ),
                bars(
                    "p75 rating of LCP, INP and CLS",
                    "0 good, 1 needs improvement (CoreWebVitalsPoor warning over 15m), 2 poor "
                    "(critical). Decided exactly from the rating counts.",
                    q(
                        f'expmon_web_vital_p75_rating{{vital=~"lcp|inp|cls",{CWV}}}',
                        "{{vital}} {{page}} {{device}}",
                    ),
                    "short",
                    steps=RATING_BANDS,
                    min=0,
                    max=2,
                    width=8,
                ),
                bars(
                    "Rating shares by vital",
                    "Share of samples rated good, needs improvement and poor per vital over "
                    "the selected pages and devices (weighted by samples).",
                    q(
                        "sum by (vital, rating) (expmon_web_vital_rating_ratio"
                        f"{{{CWV}}}\n  * ignoring(rating) group_left "
                        f"expmon_web_vital_window_samples{{{CWV}}})\n/ ignoring(rating) "
                        "group_left sum by (vital) "
                        f"(expmon_web_vital_window_samples{{{CWV}}})",
                        "{{vital}} {{rating}}",
                    ),
                    "percentunit",
                    min=0,
                    max=1,
                    width=8,
                ),
            ),
        ),
        Row(
            "p75",
            (
                p75_panel("lcp", "LCP (Largest Contentful Paint)", LCP_BANDS),
                p75_panel("inp", "INP (Interaction to Next Paint)", INP_BANDS),
                ts(
                    "p75 CLS (Cumulative Layout Shift) by page and device",
                    "p75 of CLS (unitless) per page and device; 0 is exact. Lines: good up "
                    "to 0.1, poor over 0.25.",
                    q(f"expmon_web_vital_cls_p75{{{CWV}}}", "{{page}} {{device}}"),
                    "none",
                    steps=CLS_BANDS,
                    min=0,
                ),
                p75_panel("fcp", "FCP (First Contentful Paint)", FCP_BANDS),
                p75_panel("ttfb", "TTFB (Time to First Byte)", TTFB_BANDS),
                ts(
                    "Poor share by vital",
                    "Share of samples rated poor per vital over the selected pages and "
                    "devices (weighted by samples): a tail the p75 may not show yet.",
                    q(
                        'sum by (vital) (expmon_web_vital_rating_ratio{rating="poor",'
                        f"{CWV}}}\n  * ignoring(rating) expmon_web_vital_window_samples"
                        f"{{{CWV}}})\n/ sum by (vital) (expmon_web_vital_window_samples"
                        f"{{{CWV}}})",
                        "{{vital}}",
                    ),
                    "percentunit",
                    min=0,
                ),
            ),
        ),
        Row(
            "Volume",
            (
                bars(
                    "Samples in the window by page, device and vital",
                    "Page views measuring each vital in the window view (CoreWebVitalsPoor "
                    "needs 50 over 15m).",
                    q(
                        f"sum by (page, device, vital) (expmon_web_vital_window_samples{{{CWV}}})",
                        "{{page}} {{device}} {{vital}}",
                    ),
                    "short",
                    width=24,
                ),
            ),
        ),
    ),
)

# ---------------------------------------------------------------- checkout and payments

FUNNEL_ALL = 'device="all",channel="all",user_type="all",window="$window"'
GROUPS = 'device=~"$device",channel=~"$channel",user_type!="all",window="$window"'
PAY = 'provider=~"$provider",method=~"$method",window="$window"'

CHECKOUT = Dashboard(
    uid="expmon-checkout",
    title="Experience Monitor / Checkout and payments",
    description="The checkout funnel, drop-off between steps, conversion, abandonment and "
    "payment failures by provider, method and reason, new vs returning buyers.",
    variables=(
        WINDOW,
        Variable("device", "Device", "expmon_checkout_window_started"),
        Variable("channel", "Channel", "expmon_checkout_window_started"),
        Variable("provider", "Provider", "expmon_payment_window_attempts"),
        Variable("method", "Method", "expmon_payment_window_attempts"),
    ),
    rows=(
        Row(
            "Funnel",
            (
                bars(
                    "Funnel: checkout events by step",
                    "Accepted checkout events per step over the dashboard's time range.",
                    q(
                        "sum by (step) (increase(expmon_checkout_steps_total[$__range]))",
                        "{{step}}",
                    ),
                    "short",
                    width=8,
                ),
                ts(
                    "Drop-off between steps",
                    "1 - reached(to) / reached(from) for consecutive steps, all devices and "
                    "channels, in the window view.",
                    q(
                        f"expmon_checkout_dropoff_ratio{{{FUNNEL_ALL}}}",
                        "{{from_step}} → {{to_step}}",
                    ),
                    "percentunit",
                    min=0,
                    max=1,
                    width=8,
                ),
                bars(
                    "Abandoned checkouts by last step",
                    "Checkouts without progress for 30 minutes over the time range, by the "
                    "last step they reached.",
                    q(
                        "sum by (last_step) (increase(expmon_checkout_abandoned_total[$__range]))",
                        "{{last_step}}",
                    ),
                    "short",
                    width=8,
                ),
                ts(
                    "Conversion: checkout_started → order_placed",
                    "Overall conversion in the window view. CheckoutDropOffSpike fires when "
                    "the 15m conversion falls 25 % below its trailing 24 h level.",
                    q(f"expmon_checkout_conversion_ratio{{{FUNNEL_ALL}}}", "all"),
                    "percentunit",
                    min=0,
                    max=1,
                ),
                ts(
                    "Conversion, new vs returning",
                    "Conversion per user type over the selected devices and channels "
                    "(orders placed / checkouts started, summed over groups).",
                    q(
                        ratio(
                            f"expmon_checkout_conversion_ratio{{{GROUPS}}}"
                            f" * expmon_checkout_window_started{{{GROUPS}}}",
                            f"expmon_checkout_window_started{{{GROUPS}}}",
                            "user_type",
                        ),
                        "{{user_type}}",
                    ),
                    "percentunit",
                    min=0,
                    max=1,
                ),
            ),
        ),
        Row(
            "Payments",
            (
                ts(
                    "Payment failure ratio by provider and method",
                    "Failed / attempted payments in the window view; the line is "
                    "PaymentFailureRateHigh's 3 % (5m view, 50 attempts).",
                    q(
                        ratio(
                            f'expmon_payment_window_failures{{user_type="all",{PAY}}}',
                            f'expmon_payment_window_attempts{{user_type="all",{PAY}}}',
                            "provider, method",
                        ),
                        "{{provider}} {{method}}",
                    ),
                    "percentunit",
                    steps=PAYMENT_ALERT,
                ),
                ts(
                    "Payment failure ratio, new vs returning",
                    "Failed / attempted payments per user type over the selected providers "
                    "and methods.",
                    q(
                        ratio(
                            f'expmon_payment_window_failures{{user_type!="all",{PAY}}}',
                            f'expmon_payment_window_attempts{{user_type!="all",{PAY}}}',
                            "user_type",
                        ),
                        "{{user_type}}",
                    ),
                    "percentunit",
                    steps=PAYMENT_ALERT,
                ),
                ts(
                    "Payment failures by reason",
                    "Failed payments per second by failure_reason (all providers): "
                    "provider_timeout points at the provider, card_declined at fraud rules.",
                    q(
                        "sum by (reason) (rate(expmon_payment_failures_total[$__rate_interval]))",
                        "{{reason}}",
                    ),
                    "cps",
                ),
                bars(
                    "Payment attempts in the window by provider and method",
                    "The volume behind the failure ratios (PaymentFailureRateHigh needs 50).",
                    q(
                        "sum by (provider, method) "
                        f'(expmon_payment_window_attempts{{user_type="all",{PAY}}})',
                        "{{provider}} {{method}}",
                    ),
                    "short",
                ),
            ),
        ),
    ),
)

# ---------------------------------------------------------------- logistics

WH = 'warehouse=~"$warehouse",carrier="all",window="$window"'
WH_CARRIER = 'warehouse=~"$warehouse",carrier=~"$carrier",carrier!="all",window="$window"'
CARRIER = 'carrier=~"$carrier"'

LOGISTICS = Dashboard(
    uid="expmon-logistics",
    title="Experience Monitor / Logistics",
    description="Shipping within 48 h by warehouse and carrier, stale tracking and delivery "
    "exceptions by carrier. Window views end at event time; deadlines count when the "
    "watermark passes them.",
    variables=(
        WINDOW_1H,
        Variable("warehouse", "Warehouse", "expmon_ship_window_decided"),
        Variable("carrier", "Carrier", "expmon_shipments_total"),
    ),
    rows=(
        Row(
            "Shipping (48 h SLA)",
            (
                ts(
                    "Shipped within 48 h by warehouse",
                    "Orders shipped within 48 h / orders decided (shipped or breached) in the "
                    "window; below the 95 % line ShippingSLABreach fires (1h view, 20 orders).",
                    q(f"expmon_ship_within_sla_ratio{{{WH}}}", "{{warehouse}}"),
                    "percentunit",
                    steps=SLA_OK,
                    base=RED,
                    max=1,
                ),
                ts(
                    "Shipped within 48 h by warehouse and carrier",
                    "The same share per warehouse and carrier.",
                    q(
                        f"expmon_ship_within_sla_ratio{{{WH_CARRIER}}}",
                        "{{warehouse}} {{carrier}}",
                    ),
                    "percentunit",
                    steps=SLA_OK,
                    base=RED,
                    max=1,
                ),
                bars(
                    "48 h breaches by warehouse",
                    "Orders not shipped 48 h after order_placed, over the time range.",
                    q(
                        "sum by (warehouse) (increase(expmon_shipping_sla_breaches_total"
                        '{warehouse=~"$warehouse"}[$__range]))',
                        "{{warehouse}}",
                    ),
                    "short",
                    width=8,
                ),
                ts(
                    "Breaches in the window by warehouse and carrier",
                    "Orders breaching 48 h in the window view (`expmon_ship_window_breaches`).",
                    q(
                        f"expmon_ship_window_breaches{{{WH_CARRIER}}}",
                        "{{warehouse}} {{carrier}}",
                    ),
                    "short",
                    width=16,
                ),
            ),
        ),
        Row(
            "Tracking and delivery",
            (
                ts(
                    "Stale tracking by carrier",
                    "Shipped, undelivered orders without an update for 24 h / those tracked, "
                    "summed over workers; the line is TrackingStale's 2 %.",
                    q(
                        ratio(
                            f"expmon_tracking_stale_orders{{{CARRIER}}}",
                            f"expmon_tracking_orders{{{CARRIER}}}",
                            "carrier",
                        ),
                        "{{carrier}}",
                    ),
                    "percentunit",
                    steps=STALE_ALERT,
                ),
                ts(
                    "Orders in transit by carrier",
                    "Shipped, undelivered orders held in state, and how many are stale.",
                    (
                        Query(
                            f"sum by (carrier) (expmon_tracking_orders{{{CARRIER}}})",
                            "{{carrier}} tracked",
                        ),
                        Query(
                            f"sum by (carrier) (expmon_tracking_stale_orders{{{CARRIER}}})",
                            "{{carrier}} stale",
                        ),
                    ),
                    "short",
                ),
                ts(
                    "Delivery exceptions by carrier",
                    "delivery_failed / (delivered + delivery_failed) in the window view; the "
                    "line is DeliveryExceptionRateHigh's 5 % (1h view, 20 deliveries).",
                    q(
                        f'expmon_delivery_exception_ratio{{{CARRIER},window="$window"}}',
                        "{{carrier}}",
                    ),
                    "percentunit",
                    steps=DELIVERY_ALERT,
                ),
                ts(
                    "On-time deliveries by carrier",
                    "Delivered by promised_by / delivered with a promise, in the window view.",
                    q(
                        f'expmon_delivery_on_time_ratio{{{CARRIER},window="$window"}}',
                        "{{carrier}}",
                    ),
                    "percentunit",
                    min=0,
                    max=1,
                ),
                ts(
                    "Logistics events per second by status",
                    "Accepted logistics events per second by status (selected carriers).",
                    q(
                        f"sum by (status) (rate(expmon_shipments_total{{{CARRIER}}}"
                        "[$__rate_interval]))",
                        "{{status}}",
                    ),
                    "cps",
                    width=24,
                ),
            ),
        ),
    ),
)

# ---------------------------------------------------------------- pipeline health

TOPIC = 'topic=~"$topic"'

PIPELINE = Dashboard(
    uid="expmon-pipeline",
    title="Experience Monitor / Pipeline health",
    description="Is the monitor itself healthy: workers up, events by outcome, dead "
    "letters, watermark and consumer lag, windows made final, state held, alerts and their "
    "notifications.",
    variables=(Variable("topic", "Input topic", "expmon_events_total"),),
    rows=(
        Row(
            "Input",
            (
                stat(
                    "Workers up",
                    "Worker metrics endpoints Prometheus scrapes successfully (job expmon).",
                    'sum(up{job="expmon"})',
                    "short",
                    base=RED,
                    steps=((1, GREEN),),
                ),
                stat(
                    "Consumer lag",
                    "Records on the broker not yet processed, all input topics and workers.",
                    f"sum(expmon_consumer_lag_messages{{{TOPIC}}})",
                    "short",
                    steps=((10_000, ORANGE), (100_000, RED)),
                ),
                stat(
                    "Highest watermark lag",
                    "Wall clock minus the lowest partition watermark, worst topic.",
                    f"max(expmon_watermark_lag_seconds{{{TOPIC}}})",
                    "s",
                    steps=((120, ORANGE), (300, RED)),
                ),
                stat(
                    "Invalid share (5m)",
                    "Invalid / received records over 5 minutes, selected topics.",
                    ratio(
                        f'rate(expmon_events_total{{outcome="invalid",{TOPIC}}}[5m])',
                        f"rate(expmon_events_total{{{TOPIC}}}[5m])",
                    ),
                    "percentunit",
                    steps=INVALID_ALERT,
                ),
                stat(
                    "Open sessions, checkouts, orders",
                    "Entities held in state for bounce, abandonment and the 48 h SLA.",
                    "sum(expmon_sessions_open) + sum(expmon_checkouts_open) "
                    "+ sum(expmon_orders_open)",
                    "short",
                    width=8,
                ),
                ts(
                    "Events per second by outcome",
                    "accepted + invalid + late + duplicate = received; nothing is dropped "
                    "silently.",
                    q(
                        "sum by (outcome) (rate(expmon_events_total"
                        f"{{{TOPIC}}}[$__rate_interval]))",
                        "{{outcome}}",
                    ),
                    "cps",
                ),
                ts(
                    "Dead letters per second by reason",
                    "Records sent to experience-dlq per second, by topic and reason header.",
                    q(
                        "sum by (topic, reason) (rate(expmon_dead_letters_total"
                        f"{{{TOPIC}}}[$__rate_interval]))",
                        "{{topic}} {{reason}}",
                    ),
                    "cps",
                ),
                ts(
                    "Watermark lag by topic",
                    "How far event time trails the wall clock; windows close this late.",
                    q(f"max by (topic) (expmon_watermark_lag_seconds{{{TOPIC}}})", "{{topic}}"),
                    "s",
                ),
                ts(
                    "Consumer lag by topic",
                    "Records not yet processed on the assigned partitions, summed over "
                    "workers. Growing lag: add workers (up to the partition count).",
                    q(f"sum by (topic) (expmon_consumer_lag_messages{{{TOPIC}}})", "{{topic}}"),
                    "short",
                ),
            ),
        ),
        Row(
            "Windows, state and alerts",
            (
                ts(
                    "Window views made final per second",
                    "Views made final by the merge stage, by family and view.",
                    q(
                        "sum by (family, window) (rate(expmon_windows_final_total"
                        "[$__rate_interval]))",
                        "{{family}} {{window}}",
                    ),
                    "cps",
                ),
                ts(
                    "State checkpoint writes per second",
                    "Changelog records written per family.",
                    q(
                        "sum by (family) (rate(expmon_state_writes_total[$__rate_interval]))",
                        "{{family}}",
                    ),
                    "cps",
                ),
                ts(
                    "Alerts firing by alert",
                    "Firing instances per rule and severity (stream engine).",
                    q(
                        "max by (alertname, severity) (expmon_alerts_firing)",
                        "{{alertname}} {{severity}}",
                    ),
                    "short",
                ),
                ts(
                    "Alert notifications by sink and outcome",
                    "Notifications per rate interval to Alertmanager, the alerts topic and the "
                    "log; any `failed` needs a look at the sink.",
                    q(
                        "sum by (sink, outcome) (increase(expmon_alert_notifications_total"
                        "[$__rate_interval]))",
                        "{{sink}} {{outcome}}",
                    ),
                    "short",
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, PAGES, WEB_VITALS, CHECKOUT, LOGISTICS, PIPELINE)

# Alert annotations on every dashboard: the stream engine's firing alerts, and the
# Prometheus twin's (with dimension labels).
ANNOTATIONS: tuple[tuple[str, str, str, str], ...] = (
    (
        "Alerts (stream engine)",
        "max by (alertname, severity) (expmon_alerts_firing) > 0",
        "red",
        "{{alertname}} ({{severity}})",
    ),
    (
        "Alerts (Prometheus twin)",
        'ALERTS{alertstate="firing"}',
        "orange",
        "{{alertname}} ({{severity}})",
    ),
)

# ---------------------------------------------------------------- JSON


def _thresholds(panel: Panel) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": panel.base, "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.steps]
    return {"mode": "absolute", "steps": steps}


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": _thresholds(panel)}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 0,
            "showPoints": "never",
            "spanNulls": False,
            # draw alert thresholds as lines; no lines when there are none
            "thresholdsStyle": {"mode": "line" if panel.steps else "off"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "timeseries":
        return {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {
            "reduceOptions": reduce,
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    if panel.kind == "bargauge":
        return {
            "reduceOptions": reduce,
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
        }
    return {
        "showHeader": True,
        "cellHeight": "sm",
        "sortBy": [{"displayName": "Value", "desc": True}],
    }


def _target(query: Query, ref: str, instant: bool, table_format: bool) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DS,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "instant": instant,
        "range": not instant,
        "format": "table" if table_format else "time_series",
    }


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": grid,
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
        "targets": [
            _target(query, chr(ord("A") + i), panel.instant, panel.kind == "table")
            for i, query in enumerate(panel.queries)
        ],
    }
    if panel.kind == "table":
        # one row per series: labels as columns, the Time column hidden
        out["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return out


def _layout(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Row headers and panels left to right, wrapping at the grid width."""
    panels: list[dict[str, Any]] = []
    y = 0
    panel_id = 1
    for row in rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                y += row_height
                x, row_height = 0, 0
            grid = {"h": panel.height, "w": panel.width, "x": x, "y": y}
            panels.append(_panel_json(panel, panel_id, grid))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return panels


def _variable_json(var: Variable) -> dict[str, Any]:
    common = {"name": var.name, "label": var.label, "hide": 0, "skipUrlSync": False}
    if var.options:
        return {
            **common,
            "type": "custom",
            "query": var.query,
            "multi": False,
            "includeAll": False,
            "current": {"selected": True, "text": var.default, "value": var.default},
            "options": [{"selected": o == var.default, "text": o, "value": o} for o in var.options],
        }
    # multi-value variables keep lists; "$__all" is Grafana's All, sent as allValue
    current = (
        {"selected": True, "text": [var.default], "value": [var.default]}
        if var.default
        else {"selected": True, "text": ["All"], "value": ["$__all"]}
    )
    return {
        **common,
        "type": "query",
        "datasource": DS,
        "definition": var.query,
        "query": {"query": var.query, "refId": f"{var.name}-values"},
        "refresh": 2,  # on time range change: label values follow what is exported
        "sort": 1,
        "multi": True,
        "includeAll": not var.default,
        "allValue": ".*",
        "current": current,
        "options": [],
        "regex": "",
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": DATASOURCE_VAR,
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "hide": 0,
        "skipUrlSync": False,
        "current": {"selected": True, "text": "Prometheus", "value": DATASOURCE_UID},
        "options": [],
        "regex": "",
        "refresh": 1,
    }


def _annotations() -> list[dict[str, Any]]:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return [builtin] + [
        {
            "name": name,
            "datasource": DS,
            "enable": True,
            "hide": False,
            "iconColor": color,
            "expr": expr,
            "step": "30s",
            "titleFormat": title,
            "tagKeys": "alertname,severity",
            "useValueForTime": False,
        }
        for name, expr, color, title in ANNOTATIONS
    ]


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["expmon"],
        "editable": True,
        "graphTooltip": 1,  # shared crosshair: line up a drop with its cause
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": dashboard.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {
                "title": "Experience Monitor",
                "type": "dashboards",
                "tags": ["expmon"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {"list": _annotations()},
        "templating": {
            "list": [_datasource_variable(), *(_variable_json(v) for v in dashboard.variables)]
        },
        "panels": _layout(dashboard.rows),
    }


def render(dashboard: Dashboard) -> str:
    return orjson.dumps(dashboard_json(dashboard), option=orjson.OPT_INDENT_2).decode() + "\n"


# ---------------------------------------------------------------- docs

DOCS_HEADER = """\
# Dashboards

<!-- Generated by `python -m expmon.dashboards` from expmon/dashboards/generate.py: edit there. -->

Five Grafana dashboards, provisioned by `docker compose up` (folder *Experience
Monitor*, <http://localhost:3000>) from `deploy/grafana/dashboards/*.json`. To use them
in your own Grafana, import the JSON files and pick your Prometheus in the *Data source*
drop-down. Every panel's query reads metrics the workers export (see
[operations.md](operations.md#metrics-reference)); `tests/integration/test_dashboards.py`
evaluates each one against a real Prometheus scraping a real worker during a simulated
incident and requires data.

On every dashboard: alert annotations (red: the stream engine's `expmon_alerts_firing`;
orange: the Prometheus twin's `ALERTS` with their labels), a shared crosshair, and a
drop-down linking the other dashboards. Template variables filter by label with regular
expressions (*All* = `.*`); `Window view` picks the rolling view (1m, 5m, 15m, 1h) of the
window gauges. Lines on time series are the alert thresholds of `alerts/defaults.yml`.
"""


KIND_NAMES = {"timeseries": "time series", "stat": "stat", "bargauge": "bars", "table": "table"}


def _docs_variables(dashboard: Dashboard) -> str:
    if not dashboard.variables:
        return "Variables: none (fixed windows, those of the alerts)."
    parts = []
    for var in dashboard.variables:
        source = f"values of `{var.metric}`" if var.metric else ", ".join(var.options)
        default = var.default or "All"
        parts.append(f"`${var.name}` ({source}; default {default})")
    return "Variables: " + "; ".join(parts) + "."


def render_docs(dashboards: Iterable[Dashboard] = DASHBOARDS) -> str:
    lines = [DOCS_HEADER]
    for dashboard in dashboards:
        lines += [
            f"## {dashboard.title.split(' / ', 1)[-1]}",
            "",
            f"`{OUT_DIR / dashboard.filename}` (uid `{dashboard.uid}`). {dashboard.description}",
            "",
            _docs_variables(dashboard),
            "",
        ]
        for row in dashboard.rows:
            lines += [f"**{row.title}**", ""]
            lines += [f"- *{p.title}* ({KIND_NAMES[p.kind]}): {p.description}" for p in row.panels]
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------- entry point


def outputs(root: Path) -> dict[Path, str]:
    """Every generated file (path under `root`) with its content."""
    files = {root / OUT_DIR / d.filename: render(d) for d in DASHBOARDS}
    files[root / DOCS] = render_docs()
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m expmon.dashboards",
        description="Write the Grafana dashboards and docs/dashboards.md.",
    )
    parser.add_argument("--root", type=Path, default=Path(), help="repository root (default .)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a committed file differs instead"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(args.root).items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "differs" if args.check else "written"
    for path in stale:
        sys.stdout.write(f"{verb}: {path}\n")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
