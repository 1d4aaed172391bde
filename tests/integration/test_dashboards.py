"""Every Grafana panel's query returns data from a real Prometheus scraping a real worker.

A simulated incident (slow pages, a payment outage, a warehouse backlog, a carrier delay
and bad records) goes through the real broker and an `expmon worker` subprocess while a
real Prometheus (Debian's package) scrapes it every second and evaluates the exported
twin rules. Then each target of each dashboard is sent to Prometheus the way Grafana sends
it: range queries over the run, or instant queries for targets marked instant (tables,
`$__range` figures), template variables set to their saved defaults (All = `.*`). Each
must parse and return at least one finite value; failures are reported all at once, by
panel title.

Event time lies 40 minutes in the past with the logistics lifecycle compressed 3600x (48 h
-> 48 s), as in test_journeys: once the data stops, the idle-partition fallback moves
every watermark to the wall clock, so all windows close and every deadline (48 h SLA,
24 h staleness, abandonment, bounce) passes within seconds.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from expmon.cli import main
from expmon.dashboards.generate import DASHBOARDS, dashboard_json
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.local.procs import LocalPrometheus
from expmon.settings import Settings
from expmon.sim.encoding import encode_records
from expmon.sim.incidents import parse_incidents
from expmon.sim.journeys import TrafficGenerator
from schemas.events import EventFamily
from tests.integration.worker_process import WorkerProcess, final_views

MINUTE = 60_000
DATA_MINUTES = 10
INCIDENTS = (
    # through the end of the data, so the last window views still hold them
    "slow_pages@2m+8m:page=/checkout,factor=4",
    "payment_outage@2m+8m:provider=adyen",
    "warehouse_backlog@2m+4m:warehouse=ams-1",
    "carrier_delay@1m+9m:carrier=ups,failure_rate=0.3",
    "bad_records@1m+2m:rate=3",
    "lcp_regression@2m+8m:page=/product/:id,device=mobile,factor=4",
)
WORKER_SETTINGS: dict[str, Any] = {
    "topic_partitions": 3,
    "idle_partition_timeout_seconds": 3.0,
    # compressed time, like the simulator's lifecycles (3600x): 48 h -> 48 s, 24 h -> 24 s
    "ship_sla_seconds": 48.0,
    "tracking_stale_seconds": 24.0,
    "checkout_abandon_seconds": 120.0,
    "bounce_seconds": 120.0,
}
# Simulated volumes are small (as in test_alerting): ask for clear incidents instead.
RULE_OVERRIDES = """\
rules:
  - alert: PaymentFailureRateHigh
    threshold: 0.15
    min_volume: 20
  - alert: InvalidEventRateHigh
    window: 90s
    min_volume: 50
  - alert: EventSourceSilent
    enabled: false
"""
RATE_INTERVAL = "1m"  # what Grafana makes of $__rate_interval with a 15 s scrape interval
STEP_SECONDS = 2


# ---------------------------------------------------------------- the scenario


def produce_in_minutes(settings: Settings) -> int:
    """Produce the incident minute by minute (event time), so counters grow across
    scrapes the way live traffic makes them grow; returns the end of the data."""
    now = int(time.time() * 1000)
    start = now - now % MINUTE - 40 * MINUTE
    generator = TrafficGenerator(
        seed=7, rate=100, start_ms=start, duration_s=DATA_MINUTES * 60,
        incidents=parse_incidents(INCIDENTS), lifecycle_compression=3600,
        mix={"page_load": 0.5, "checkout": 0.3, "logistics": 0.2},
    )  # fmt: skip
    records = list(
        encode_records(
            generator, batch_size=20, duplicate_ratio=0.01, seed=7,
            partitions=dict.fromkeys(EventFamily, WORKER_SETTINGS["topic_partitions"]),
        )
    )  # fmt: skip
    assert any(r.bad is not None for r in records), "the bad-record burst must be in the data"
    topics = {
        EventFamily.PAGE_LOAD: settings.topic_page_loads,
        EventFamily.CHECKOUT: settings.topic_checkout,
        EventFamily.LOGISTICS: settings.topic_logistics,
    }
    producer = KafkaProducer(**kafka_python_kwargs(settings), linger_ms=5)
    try:
        for minute in range(DATA_MINUTES + 1):
            low, high = start + minute * MINUTE, start + (minute + 1) * MINUTE
            for r in records:
                if low <= r.time_ms < high:
                    producer.send(topics[r.family], key=r.key.encode(), value=r.value)
            producer.flush()
            time.sleep(0.7)  # shorter than the idle timeout: no partition counts as idle
    finally:
        producer.close()
    return start + DATA_MINUTES * MINUTE


# ---------------------------------------------------------------- Grafana's side


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each template variable's saved value as Grafana interpolates it into a regex."""
    values: dict[str, str] = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] == "datasource":
            continue
        current = var["current"]["value"]
        chosen = current if isinstance(current, list) else [current]
        if "$__all" in chosen:
            values[var["name"]] = var.get("allValue") or ".*"
        else:
            values[var["name"]] = "|".join(chosen)
    return values


def expand(expr: str, values: dict[str, str], range_s: int) -> str:
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", f"{range_s}s")
    for name in sorted(values, key=len, reverse=True):  # $region before $reg...
        out = out.replace(f"${name}", values[name])
    leftover = re.findall(r"\$\w+", out)
    assert not leftover, f"undefined variables {leftover} in {expr}"
    return out


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target


class PromQuery:
    """Prometheus HTTP API calls that return errors as text instead of raising."""

    def __init__(self, prometheus: LocalPrometheus, since: float) -> None:
        self.url = prometheus.url
        self.since = since

    def get(self, path: str, params: list[tuple[str, str]]) -> tuple[Any, str]:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return None, f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}"
        if body.get("status") != "success":
            return None, str(body)[:300]
        return body["data"], ""

    def evaluate(self, expr: str, instant: bool) -> str:
        """'' when the query parses and returns a finite value, else why not."""
        now = time.time()
        if instant:
            data, error = self.get("query", [("query", expr), ("time", f"{now:.3f}")])
            samples = [r["value"] for r in (data or {}).get("result", [])]
        else:
            params = [
                ("query", expr),
                ("start", f"{self.since:.3f}"),
                ("end", f"{now:.3f}"),
                ("step", str(STEP_SECONDS)),
            ]
            data, error = self.get("query_range", params)
            samples = [v for r in (data or {}).get("result", []) for v in r["values"]]
        if error:
            return error
        if not any(math.isfinite(float(value)) for _t, value in samples):
            return f"no data ({len(samples)} samples, none finite)"
        return ""

    def label_values(self, query: str) -> list[str]:
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
        assert match, f"not a label_values(metric, label) query: {query}"
        metric, label = match.groups()
        data, error = self.get(
            f"label/{label}/values", [("match[]", metric), ("start", f"{self.since:.3f}")]
        )
        assert not error, error
        values: list[str] = data
        return values


def failures(prom: PromQuery) -> list[str]:
    """Every panel target, annotation and variable query that fails, with its reason."""
    problems: list[str] = []
    range_s = max(60, int(time.time() - prom.since))
    for board in map(dashboard_json, DASHBOARDS):
        values = variable_values(board)
        for title, target in panel_targets(board):
            expr = expand(target["expr"], values, range_s)
            why = prom.evaluate(expr, instant=target["instant"])
            if why:
                problems.append(f"{board['title']} / {title} [{target['refId']}]: {why}\n  {expr}")
        for note in board["annotations"]["list"]:
            if "expr" in note:
                why = prom.evaluate(expand(note["expr"], values, range_s), instant=False)
                if why:
                    problems.append(f"{board['title']} / annotation {note['name']}: {why}")
        for var in board["templating"]["list"]:
            if var["type"] == "query" and not prom.label_values(var["definition"]):
                problems.append(f"{board['title']} / variable ${var['name']}: no values")
    return problems


# ---------------------------------------------------------------- the test


@pytest.fixture
def prometheus_for() -> Iterator[list[LocalPrometheus]]:
    started: list[LocalPrometheus] = []
    yield started
    for prom in started:
        prom.stop()


def test_every_panel_query_returns_data(
    settings_factory: Any, tmp_path: Path, prometheus_for: list[LocalPrometheus]
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULE_OVERRIDES)
    settings = settings_factory(**WORKER_SETTINGS, rules_files=(rules,))
    assert all(r.ok for r in ensure_topics(settings, default_topic_specs(settings)))
    twin = tmp_path / "twin.yml"
    assert main(["rules", "export-prometheus", "--rules", str(rules), "-o", str(twin)]) == 0
    # evaluate the twin at the scrape interval: the incident's views pass in seconds here
    twin.write_text(twin.read_text().replace("interval: 15s", "interval: 1s"))

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    prometheus = LocalPrometheus(
        tmp_path / "prometheus", [f"127.0.0.1:{worker.port}"], [twin], interval="1s"
    )
    prometheus_for.append(prometheus)
    prometheus.start()
    since = time.time()
    try:
        worker.start()
        end = produce_in_minutes(settings)
        # the last minute of data is final once the idle fallback moves the watermarks
        wanted = [f"{family}/1m/{end}" for family in ("page_load", "checkout", "logistics")]
        deadline = time.monotonic() + 90
        while not all(key in final_views(settings) for key in wanted):
            assert time.monotonic() < deadline, f"no final views\n{worker.log_tail()}"
            time.sleep(1)
        prom = PromQuery(prometheus, since)
        # Scrapes, the twin's evaluation and the deadline-driven figures (breaches, stale
        # orders, abandonment) land within seconds; retry until they have, then report.
        deadline = time.monotonic() + 60
        while (problems := failures(prom)) and time.monotonic() < deadline:
            time.sleep(3)
    finally:
        code = worker.stop()
    assert not problems, "panels without data:\n" + "\n".join(problems)
    assert code == 0, worker.log_tail()
    # the data is the incident's, not just any data: it fired, in the stream and the twin
    for expr in (
        'max_over_time(expmon_alerts_firing{alertname="PageLoadSlow"}[10m]) > 0',
        'max_over_time(expmon_alerts_firing{alertname="PaymentFailureRateHigh"}[10m]) > 0',
        'max_over_time(ALERTS{alertname="PaymentFailureRateHigh",provider="adyen",'
        'alertstate="firing"}[10m])',
        'max_over_time(expmon_page_load_quantile_seconds{page="/checkout",quantile="0.95",'
        'window="5m",region="all"}[10m]) > 3',
        'max_over_time(expmon_shipping_sla_breaches_total{warehouse="ams-1"}[10m]) > 0',
    ):
        assert prometheus.query(expr), expr


def test_a_broken_query_is_reported(tmp_path: Path, prometheus_for: list[LocalPrometheus]) -> None:
    """The harness can fail: a parse error and a metric nobody exports are both caught."""
    prometheus = LocalPrometheus(tmp_path / "prometheus", ["127.0.0.1:1"], [], interval="1s")
    prometheus_for.append(prometheus)
    prometheus.start()
    prom = PromQuery(prometheus, time.time() - 60)
    assert prom.evaluate("sum by (page (expmon_events_total)", instant=True).startswith("HTTP 400")
    assert prom.evaluate("expmon_no_such_metric", instant=False).startswith("no data")
    assert prom.evaluate("vector(1)", instant=True) == ""
