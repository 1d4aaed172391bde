"""`expmon demo`: the embedded default, everything local, one command.

Starts a local Kafka (or uses --bootstrap), creates the topics, runs `expmon simulate`
with a slow-page incident and `expmon worker` as child processes, and draws the worst
windows from the worker's /metrics until Ctrl-C (or --duration), then stops them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from expmon.errors import ExpmonError
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.local.kafka.broker import LocalKafka
from expmon.local.procs import stop_process, wait_ready
from expmon.settings import Settings, default_cache_dir
from schemas import codec

log = logging.getLogger(__name__)

SLOW_SECONDS = 3.0
# Demo traffic is a few hundred events/s: far fewer payments per provider and method than
# a shop's. An operator's override (no code) lowers the volume the payment rule needs.
DEMO_RULES = """\
rules:
  - alert: PaymentFailureRateHigh
    min_volume: 40
"""
REFRESH_SECONDS = 2.0


@dataclass(frozen=True)
class WindowRow:
    page: str
    device: str
    region: str
    window: str
    p50: float
    p95: float
    p99: float
    slow_ratio: float
    apdex: float
    loads: float


@dataclass
class Snapshot:
    events: dict[str, float]
    rows: list[WindowRow]
    watermark_lag: float | None
    alerts: list[dict[str, Any]] = field(default_factory=list)


def fetch_alerts(port: int) -> list[dict[str, Any]]:
    """The alert instances the worker's engine holds (pending, firing, recently resolved)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/alerts", timeout=3) as resp:
        alerts: list[dict[str, Any]] = codec.loads(resp.read())["alerts"]
    return alerts


def scrape(port: int) -> Snapshot:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    events: dict[str, float] = {}
    figures: dict[tuple[str, str, str, str], dict[str, float]] = {}
    lag: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "expmon_events_total":
                events[labels["outcome"]] = events.get(labels["outcome"], 0.0) + sample.value
            elif sample.name == "expmon_watermark_lag_seconds":
                lag = sample.value if lag is None else max(lag, sample.value)
            elif sample.name.startswith("expmon_page_load_") and "window" in labels:
                key = (labels["page"], labels["device"], labels["region"], labels["window"])
                entry = figures.setdefault(key, {})
                if sample.name == "expmon_page_load_quantile_seconds":
                    entry[f"q{labels['quantile']}"] = sample.value
                else:
                    entry[sample.name.removeprefix("expmon_page_load_")] = sample.value
    rows = [
        WindowRow(
            *key,
            p50=f.get("q0.5", 0.0),
            p95=f.get("q0.95", 0.0),
            p99=f.get("q0.99", 0.0),
            slow_ratio=f.get("slow_ratio", 0.0),
            apdex=f.get("apdex", 0.0),
            loads=f.get("window_loads", 0.0),
        )
        for key, f in figures.items()
    ]
    return Snapshot(events, rows, lag)


def worst_rows(snapshot: Snapshot, window: str, limit: int = 12) -> list[WindowRow]:
    rows = [r for r in snapshot.rows if r.window == window and r.region != "all" and r.loads >= 20]
    return sorted(rows, key=lambda r: r.p95, reverse=True)[:limit]


def render(snapshot: Snapshot | None, started: float, incident: str) -> Group | Panel:
    elapsed = time.monotonic() - started
    if snapshot is None:
        return Panel(f"starting... {elapsed:.0f}s", title="expmon demo")
    ev = snapshot.events
    outcomes = ("accepted", "invalid", "late", "duplicate")
    counts = "  ".join(f"{o} {ev.get(o, 0):,.0f}" for o in outcomes)
    header = (
        f"[b]t+{elapsed:.0f}s[/b]  incident: {incident}  |  events {counts}"
        f"  |  watermark lag {snapshot.watermark_lag or 0:.0f}s"
    )
    tables = []
    for window in ("1m", "5m"):
        table = Table(
            title=f"worst page loads, last closed {window} window (p95 > {SLOW_SECONDS:g}s in red)"
        )
        table.add_column("page", no_wrap=True, min_width=17)
        for column in ("device", "region"):
            table.add_column(column, no_wrap=True)
        for column in ("loads", "p50 s", "p95 s", "p99 s", "slow %", "apdex"):
            table.add_column(column, justify="right")
        for r in worst_rows(snapshot, window):
            style = "bold red" if r.p95 > SLOW_SECONDS else None
            table.add_row(
                r.page,
                r.device,
                r.region,
                f"{r.loads:.0f}",
                f"{r.p50:.2f}",
                f"{r.p95:.2f}",
                f"{r.p99:.2f}",
                f"{100 * r.slow_ratio:.1f}",
                f"{r.apdex:.2f}",
                style=style,
            )
        if not table.rows:
            table.add_row(
                "(waiting for the first window to close: window end + 30 s lateness)", *[""] * 8
            )
        tables.append(table)
    return Group(header, alerts_table(snapshot.alerts), *tables)


def alerts_table(alerts: list[dict[str, Any]]) -> Table:
    table = Table(title="alerts (in-stream engine; also sent to Alertmanager when configured)")
    for column in ("state", "alert", "severity", "where", "summary"):
        table.add_column(column, no_wrap=column != "summary")
    order = {"firing": 0, "pending": 1, "resolved": 2}
    for alert in sorted(alerts, key=lambda a: (order.get(a["state"], 3), a["alert"])):
        labels = alert["labels"]
        where = ", ".join(
            f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity")
        )
        style = {"firing": "bold red", "pending": "yellow"}.get(alert["state"])
        table.add_row(
            alert["state"],
            alert["alert"],
            alert["severity"],
            where,
            alert["annotations"].get("summary", ""),
            style=style,
        )
    if not table.rows:
        table.add_row("(none yet)", "", "", "", "")
    return table


@contextlib.contextmanager
def child(
    args: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own process group, stopped with SIGTERM (then SIGKILL) on exit."""
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_process(proc, Path(args[0]).name, grace_s=20, group=True)


def report_incident(snapshot: Snapshot, seen: set[tuple[str, ...]]) -> None:
    """Log each slow (page, device, region) and each alert state change once: the demo's
    evidence outside the live view."""
    for alert in snapshot.alerts:
        key = ("alert", alert["fingerprint"], alert["state"])
        if alert["state"] != "pending" and key not in seen:
            seen.add(key)
            log.warning("alert %s: %s", alert["state"], alert["annotations"].get("summary", ""))
    for r in worst_rows(snapshot, "1m", limit=100):
        key = (r.page, r.device, r.region)
        if r.p95 > SLOW_SECONDS and key not in seen:
            seen.add(key)
            log.warning(
                "slow pages: p95 %.2fs (p99 %.2fs, %.0f%% over 3 s) on %s %s %s in the last 1m "
                "window",
                r.p95,
                r.p99,
                100 * r.slow_ratio,
                r.page,
                r.device,
                r.region,
            )


def run_demo(
    *,
    log_level: str,
    bootstrap: str | None,
    rate: float,
    duration_s: float | None,
    metrics_port: int,
    incident: list[str],
) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="expmon-demo-"))
    kafka: LocalKafka | None = None
    if bootstrap is None:
        log.info("starting a local Kafka 4.1.1 (first run fetches its jars with mvn)...")
        kafka = LocalKafka(default_cache_dir())
        kafka.start(timeout=120)
        bootstrap = kafka.bootstrap
    try:
        settings = Settings.from_env(
            kafka_bootstrap=bootstrap,
            app_id="expmon-demo",
            metrics_port=metrics_port,
            state_dir=workdir / "state",
            log_level=log_level,
        )
        rules_path = workdir / "demo-rules.yml"
        rules_path.write_text(DEMO_RULES)
        for report in ensure_topics(settings, default_topic_specs(settings)):
            log.info("topic %s: %s", report.name, report.status)
        env = {
            **os.environ,
            "EXPMON_KAFKA_BOOTSTRAP": bootstrap,
            "EXPMON_APP_ID": "expmon-demo",
            "EXPMON_METRICS_PORT": str(metrics_port),
            "EXPMON_STATE_DIR": str(workdir / "state"),
            "EXPMON_RULES_FILES": codec.dumps([str(rules_path)]).decode(),
        }
        cli = [sys.executable, "-m", "expmon.cli", "--log-level", log_level]
        worker_log, sim_log = workdir / "worker.log", workdir / "simulate.log"
        log.info("worker and simulator logs: %s", workdir)
        with child([*cli, "worker"], env, worker_log) as worker:
            wait_ready(
                f"http://127.0.0.1:{metrics_port}/readyz",
                worker,
                "worker",
                90,
                lambda: f"; see {worker_log}",
                poll_s=0.5,
            )
            log.info("worker ready: http://127.0.0.1:%d/metrics", metrics_port)
            simulate = [
                *cli,
                "simulate",
                "--rate",
                str(rate),
                "--duration",
                str(duration_s or 86_400),
                "--batch-size",
                "1",
            ]
            for spec in incident:
                simulate += ["--incident", spec]
            with child(simulate, env, sim_log) as simulator:
                watch(metrics_port, " ; ".join(incident), duration_s, worker, simulator)
        log.info("stopped worker and simulator")
        return 0
    finally:
        if kafka is not None:
            kafka.stop()
            log.info("stopped local Kafka")


def watch(
    port: int,
    incident: str,
    duration_s: float | None,
    worker: subprocess.Popen[bytes],
    simulator: subprocess.Popen[bytes],
) -> None:
    started = time.monotonic()
    console = Console()
    seen: set[tuple[str, ...]] = set()
    snapshot: Snapshot | None = None
    try:
        with Live(
            render(None, started, incident), console=console, refresh_per_second=1, transient=False
        ) as live:
            while duration_s is None or time.monotonic() - started < duration_s:
                for name, proc in (("worker", worker), ("simulator", simulator)):
                    if proc.poll() is not None:
                        raise ExpmonError(f"{name} exited with code {proc.returncode}")
                with contextlib.suppress(OSError):
                    snapshot = scrape(port)
                    snapshot.alerts = fetch_alerts(port)
                    report_incident(snapshot, seen)
                live.update(render(snapshot, started, incident))
                time.sleep(REFRESH_SECONDS)
    except KeyboardInterrupt:
        log.info("Ctrl-C: stopping...")
