"""The Prometheus twin: the same rules as Prometheus alerting rules over our metrics.

For teams that alert in Prometheus. The twin reads the exported window gauges, so it is
only as fresh as the scrape and evaluation intervals (minutes end to end, against the
seconds of the in-stream engine); `expmon bench` measures both.

Significance: every ratio signal exports its counts (or its ratio and volume, from which
the numerator follows), so the Wilson bound is written out in PromQL with `sqrt` as a
further `and` clause; `$value` stays the observed ratio. PromQL has no beta quantile, so
a `significance: jeffreys` rule gets the Wilson bound at the same confidence in the twin
(the two differ by a fraction of a point at alerting volumes); its `significance`
annotation says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from expmon.alerting.rules import Rule
from expmon.alerting.signals import format_value
from expmon.alerting.stats import z_for


def _selector(rule: Rule) -> str:
    return "".join(f',{k}="{v}"' for k, v in sorted(rule.match.items()))


def _by(rule: Rule) -> str:
    return f"sum by ({', '.join(rule.by)}) " if rule.by else "sum "


def _bare(expr: str) -> str:
    """`{,a="b"}` -> `{a="b"}` and `{}` -> `` for selectors with no fixed first matcher."""
    return expr.replace("{,", "{").replace("{}", "")


def wilson_bound(k: str, n: str, side: str, confidence: float) -> str:
    """PromQL of the Wilson score bound of `k of n` (vectors with the same labels):
    (k + z²/2 ∓ z·sqrt(k(n-k)/n + z²/4)) / (n + z²)."""
    z = z_for(confidence)
    sign = "-" if side == "lower" else "+"
    radicand = f"clamp_min({k} * ({n} - {k}) / {n}, 0) + {z * z / 4:.6g}"
    return f"({k} + {z * z / 2:.6g} {sign} {z:.6g} * sqrt({radicand})) / ({n} + {z * z:.6g})"


def _significant(rule: Rule, k: str, n: str, baseline: str | None = None) -> str:
    """` and <bound> op t` for a rule judged by its interval, else nothing."""
    if rule.significance == "none":
        return ""
    # `>` needs the lower bound of the ratio past the threshold; a baseline rule's value
    # falls as the ratio rises, so it uses the other end.
    side = "lower" if rule.op == ">" else "upper"
    if baseline is not None:
        side = "upper" if side == "lower" else "lower"
    bound = wilson_bound(k, n, side, rule.confidence)
    if baseline is not None:
        bound = f"(1 - {bound} / {baseline})"
    return f"\n  and {bound} {rule.op} {rule.threshold:g}"


def expression(rule: Rule) -> str:
    """PromQL that is non-empty exactly when the rule's condition holds."""
    signal = rule.signal
    sel = _selector(rule)
    window = rule.window or "5m"
    agg = _by(rule)
    op = rule.op
    t = f"{rule.threshold:g}"
    v = f"{rule.min_volume:g}"
    value_q = _bare(signal.prom_value.format(w=window, sel=sel))
    volume_q = _bare(signal.prom_volume.format(w=window, sel=sel))
    if signal.name == "seconds_since_last_event":
        seconds = int(rule.threshold)
        return f"{agg}(increase(expmon_events_total{_bare('{' + sel + '}')}[{seconds}s])) == 0"
    if signal.name == "kafka_unreachable_seconds":
        # The gauge says only whether; how long is the rule's `for` (see prometheus_rule).
        return "min(expmon_kafka_reachable) == 0"
    if signal.name == "invalid_ratio":
        volume = f"{agg}(increase({volume_q}[{window}]))"
        count = f"{agg}(increase({value_q}[{window}]))"
        return f"{count} / {volume} {op} {t}\n  and {volume} >= {v}" + _significant(
            rule, count, volume
        )
    if rule.baseline_ms is not None:
        hours = rule.baseline_ms // 3_600_000
        span = (
            f"{hours}h" if hours * 3_600_000 == rule.baseline_ms else f"{rule.baseline_ms // 1000}s"
        )
        max_by = agg.replace("sum", "max")
        now = f"{max_by}({value_q})"
        level = f"{max_by}(avg_over_time({value_q}[{span}] offset {window}))"
        volume = f"{max_by}({volume_q})"
        return f"(1 - {now} / {level}) {op} {t}\n  and {volume} >= {v}" + _significant(
            rule, f"{now} * {volume}", volume, baseline=level
        )
    if signal.additive:
        if signal.name == "page_load_slow_ratio":
            value_q = f"{value_q} * {volume_q}"
        volume = f"{agg}({volume_q})"
        count = f"{agg}({value_q})"
        return f"{count} / {volume} {op} {t}\n  and {volume} >= {v}" + _significant(
            rule, count, volume
        )
    max_by = agg.replace("sum", "max")
    return f"{max_by}({value_q}) {op} {t}\n  and {max_by}({volume_q}) >= {v}"


def _summary(rule: Rule) -> str:
    unit = "ratio" if rule.baseline_ms is not None else rule.signal.unit
    value = '{{ $value | printf "%.3g" }}'
    if unit == "ratio":
        value = "{{ $value | humanizePercentage }}"
    elif unit == "seconds":
        value = "{{ $value | humanizeDuration }}"
    elif unit == "rating":  # 0, 1, 2 as the engine's words
        value = (
            "{{ if eq $value 2.0 }}poor{{ else if eq $value 1.0 }}needs improvement"
            "{{ else }}good{{ end }}"
        )
    labels = ", ".join(f"{b}={{{{ $labels.{b} }}}}" for b in rule.by) or "all"
    if rule.signal.name in ("seconds_since_last_event", "kafka_unreachable_seconds"):
        value = "over " + format_value(rule.threshold, unit)  # the expression holds no age
    fields = {
        "alertname": rule.alert,
        "severity": rule.severity,
        "signal": rule.signal.name,
        "value": value,
        "threshold": format_value(rule.threshold, unit),
        "window": rule.window or "now",
        "volume": f">= {rule.min_volume:g}",
        "labels": labels,
    }
    return rule.summary.format(**fields)


def prometheus_rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"alert": rule.alert, "expr": expression(rule)}
    if rule.signal.name == "kafka_unreachable_seconds":
        out["for"] = f"{int(rule.threshold) + (rule.for_ms or 0) // 1000}s"
    elif rule.for_ms:
        out["for"] = f"{rule.for_ms // 1000}s"
    if rule.keep_firing_for_ms:
        out["keep_firing_for"] = f"{rule.keep_firing_for_ms // 1000}s"
    out["labels"] = {"severity": rule.severity, **rule.labels}
    annotations = {"summary": _summary(rule)}
    if rule.significance != "none":
        side = "lower" if rule.op == ">" else "upper"
        method = "Wilson" + (
            " (the twin's stand-in for Jeffreys)" * (rule.significance == "jeffreys")
        )
        annotations["significance"] = (
            f"fires only when the {rule.confidence * 100:g} % {method} {side} bound of the "
            f"ratio is {rule.op} {rule.threshold:g} as well"
        )
    if rule.runbook_url:
        annotations["runbook_url"] = rule.runbook_url
    out["annotations"] = annotations
    return out


def export(rules: Sequence[Rule], interval: str = "15s") -> str:
    doc = {
        "groups": [
            {"name": "expmon", "interval": interval, "rules": [prometheus_rule(r) for r in rules]}
        ]
    }
    header = "# Generated by `expmon rules export-prometheus` from the expmon alert rules.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)
