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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Row = Mapping[str, Any]
Unit = Literal["seconds", "ratio", "count"]


@dataclass(frozen=True)
class Signal:
    name: str
    description: str
    source: Literal["window", "pipeline"]
    labels: tuple[str, ...]
    unit: Unit
    family: str = ""
    # rows must carry these field values unless a rule's `where` says otherwise
    fixed: Mapping[str, str] = field(default_factory=dict)
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


def _f(name: str) -> Callable[[Row], float]:
    return lambda row: float(row.get(name) or 0)


def _sum(*names: str) -> Callable[[Row], float]:
    return lambda row: float(sum(row.get(n) or 0 for n in names))


def _seconds(name: str) -> Callable[[Row], float | None]:
    def read(row: Row) -> float | None:
        return float(row[name]) / 1000 if row.get("count") else None

    return read


def _quantile_signal(q: str) -> Signal:
    return Signal(
        name=f"page_load_p{q}_seconds",
        description=f"p{q} page load time of a page and device over the window",
        source="window",
        family="page_load",
        labels=("page", "device"),
        fixed={"region": "all"},
        unit="seconds",
        value=_seconds(f"p{q}"),
        volume=_f("count"),
        # doubled braces survive this f-string for the later .format(w=..., sel=...)
        prom_value=f'expmon_page_load_quantile_seconds{{{{quantile="0.{q}",window="{{w}}"{{sel}}}}}}',
        prom_volume='expmon_page_load_window_loads{{window="{w}"{sel}}}',
    )


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in (
        _quantile_signal("95"),
        _quantile_signal("99"),
        Signal(
            name="page_load_slow_ratio",
            description="share of page loads over 3 s",
            source="window",
            family="page_load",
            labels=("page", "device"),
            fixed={"region": "all"},
            unit="ratio",
            numerator=lambda row: float(row.get("slow_ratio") or 0) * float(row.get("count") or 0),
            denominator=_f("count"),
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
            numerator=_f("bounces"),
            denominator=_f("sessions"),
            prom_value='expmon_bounce_window_bounces{{window="{w}"{sel}}}',
            prom_volume='expmon_bounce_window_sessions{{window="{w}"{sel}}}',
        ),
        Signal(
            name="payment_failure_ratio",
            description="failed / attempted payments",
            source="window",
            family="checkout",
            kind="payment",
            labels=("provider", "method", "user_type"),
            fixed={"user_type": "all"},
            unit="ratio",
            numerator=_f("failures"),
            denominator=_f("attempts"),
            prom_value='expmon_payment_window_failures{{window="{w}"{sel}}}',
            prom_volume='expmon_payment_window_attempts{{window="{w}"{sel}}}',
        ),
        Signal(
            name="checkout_conversion_ratio",
            description=(
                "checkout_started -> order_placed conversion; with a rule `baseline`, its "
                "relative fall against the trailing baseline (1 - now/baseline)"
            ),
            source="window",
            family="checkout",
            kind="conversion",
            labels=("device", "channel", "user_type"),
            fixed={"device": "all", "channel": "all", "user_type": "all"},
            unit="ratio",
            numerator=_f("order_placed"),
            denominator=_f("checkout_started"),
            prom_value='expmon_checkout_conversion_ratio{{window="{w}"{sel}}}',
            prom_volume='expmon_checkout_window_started{{window="{w}"{sel}}}',
        ),
        Signal(
            name="not_shipped_within_sla_ratio",
            description="orders not shipped within 48 h / orders decided (shipped or breached)",
            source="window",
            family="logistics",
            kind="sla",
            labels=("warehouse", "carrier"),
            fixed={"carrier": "all"},
            unit="ratio",
            numerator=_f("breach"),
            denominator=_sum("within", "breach"),
            prom_value='expmon_ship_window_breaches{{window="{w}"{sel}}}',
            prom_volume='expmon_ship_window_decided{{window="{w}"{sel}}}',
        ),
        Signal(
            name="delivery_failed_ratio",
            description="delivery_failed / (delivered + delivery_failed)",
            source="window",
            family="logistics",
            kind="delivery",
            labels=("carrier",),
            unit="ratio",
            numerator=_f("failed"),
            denominator=_sum("delivered", "failed"),
            prom_value='expmon_delivery_window_failed{{window="{w}"{sel}}}',
            prom_volume='expmon_delivery_window_attempts{{window="{w}"{sel}}}',
        ),
        Signal(
            name="tracking_stale_ratio",
            description="in-transit orders without a tracking update for 24 h / in-transit orders",
            source="pipeline",
            labels=("carrier",),
            unit="ratio",
            needs_window=False,
            # summed per carrier over partitions (pipeline.py); here for the PromQL twin
            numerator=_f("stale"),
            denominator=_f("tracked"),
            prom_value="expmon_tracking_stale_orders{{{sel}}}",
            prom_volume="expmon_tracking_orders{{{sel}}}",
        ),
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
    )
}


def format_value(value: float, unit: Unit) -> str:
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    if unit == "seconds":
        return f"{value:.0f} s" if value >= 100 else f"{value:.2f} s"
    return f"{value:g}"
