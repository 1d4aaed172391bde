"""`expmon demo`: the embedded default, everything local, one command.

Starts a local Kafka (or uses --bootstrap), creates the topics, runs `expmon simulate`
with incidents and `expmon worker` as child processes, and shows the incident from the
worker's /metrics and /alerts (expmon.local.demo_view: a live view on a terminal, a line
per event otherwise) until Ctrl-C, SIGTERM or --duration; then stops the children and the
broker and removes its folder (unless --keep), whichever way it ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console, RenderableType
from rich.live import Live

from expmon.errors import DemoChildError
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.reach import preflight
from expmon.local.demo_view import (
    SLOW_SECONDS,
    DequeHandler,
    LiveView,
    PlainView,
    Snapshot,
    final_summary,
    scrape,
    worst_rows,
)
from expmon.local.kafka.broker import LocalKafka
from expmon.local.procs import stop_processes, wait_ready
from expmon.settings import Settings, default_cache_dir

log = logging.getLogger(__name__)

# Demo traffic is a few hundred events/s: far fewer payments per provider and method than
# a shop's. An operator's override (no code) lowers the volume the payment rule needs.
DEMO_RULES = """\
rules:
  - alert: PaymentFailureRateHigh
    min_volume: 40
"""
REFRESH_SECONDS = 2.0
TAIL_LINES = 15


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = TAIL_LINES) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check(self) -> None:
        """DemoChildError (with its last log lines) if it has exited on its own."""
        code = self.proc.poll()
        if code is not None:
            raise DemoChildError(self.name, code, self.tail())


class Children:
    """The demo's child processes, each in its own process group, output to its log file
    (never to the terminal the view owns)."""

    def __init__(self) -> None:
        self.started: list[Child] = []

    def start(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> Child:
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Child(name, proc, log_path)
        self.started.append(started)
        return started


@contextlib.contextmanager
def children() -> Iterator[Children]:
    """Children stopped together on exit: SIGTERM to all, one grace for all, then SIGKILL
    (one after another the graces would add up past what a user or a supervisor waits)."""
    kids = Children()
    try:
        yield kids
    finally:
        stop_processes([(c.proc, c.name) for c in kids.started], grace_s=20, group=True)


class Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop as Ctrl-C does (a KeyboardInterrupt, so every `finally`
    on the way out runs: children, broker, folder)."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP raise Stop; a second signal while stopping is ignored, so the
    clean-up it interrupts still finishes. SIGINT is Python's KeyboardInterrupt already."""
    stopping = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise Stop(signal.Signals(signum).name)

    def quiet_sigint(signum: int, frame: FrameType | None) -> None:
        if not stopping:
            handler(signum, frame)

    previous = {
        sig: signal.signal(sig, handler if sig != signal.SIGINT else quiet_sigint)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    }
    try:
        yield
    finally:
        stopping = True  # from here on only clean-up runs; further signals wait for it
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(
    *,
    log_level: str,
    bootstrap: str | None,
    rate: float,
    duration_s: float | None,
    metrics_port: int,
    incident: list[str],
    keep: bool = False,
    debug: bool = False,
    plain: bool | None = None,
) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="expmon-demo-"))
    kafka: LocalKafka | None = None
    try:
        with stop_on_signals():
            try:
                if bootstrap is None:
                    log.info("starting a local Kafka 4.1.1 (first run fetches its jars with mvn)")
                    kafka = LocalKafka(default_cache_dir(), data_dir=workdir / "kafka")
                    kafka.start(timeout=120)
                    bootstrap = kafka.bootstrap
                settings = Settings.from_env(
                    kafka_bootstrap=bootstrap,
                    app_id="expmon-demo",
                    metrics_port=metrics_port,
                    state_dir=workdir / "state",
                    log_level=log_level,
                )
                preflight(settings)
                _run_children(settings, workdir, rate, duration_s, incident, debug, plain)
            except KeyboardInterrupt as exc:
                how = "Ctrl-C" if not isinstance(exc, Stop) else str(exc)
                log.info("%s: stopping the worker, the simulator and Kafka...", how)
            finally:
                if kafka is not None:
                    kafka.stop()
                    log.info("stopped local Kafka")
        return 0
    finally:
        if keep:
            log.info("kept the demo's folder (logs, state): %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run_children(
    settings: Settings,
    workdir: Path,
    rate: float,
    duration_s: float | None,
    incident: list[str],
    debug: bool,
    plain: bool | None,
) -> None:
    rules_path = workdir / "demo-rules.yml"
    rules_path.write_text(DEMO_RULES)
    for report in ensure_topics(settings, default_topic_specs(settings)):
        log.info("topic %s: %s", report.name, report.status)
    env = {
        **os.environ,
        "EXPMON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "EXPMON_APP_ID": settings.app_id,
        "EXPMON_METRICS_PORT": str(settings.metrics_port),
        "EXPMON_STATE_DIR": str(settings.state_dir),
        "EXPMON_RULES_FILES": str(rules_path),
    }
    cli = [sys.executable, "-m", "expmon.cli", "--log-level", settings.log_level]
    cli += ["--debug"] if debug else []
    port = settings.metrics_port
    log.info("worker and simulator logs: %s (kept with --keep)", workdir)
    with children() as kids:
        worker = kids.start("worker", [*cli, "worker"], env, workdir / "worker.log")
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", worker.proc, "worker", 90, poll_s=0.5)
        except Exception:
            worker.check()  # it exited: say why, from its log
            raise
        log.info("worker ready: http://127.0.0.1:%d/metrics", port)
        simulate = [*cli, "simulate", "--rate", str(rate), "--duration", str(duration_s or 86_400)]
        simulate += ["--batch-size", "1"]
        for spec in incident:
            simulate += ["--incident", spec]
        simulator = kids.start("simulator", simulate, env, workdir / "simulate.log")
        watch(
            port,
            " ; ".join(incident),
            settings.allowed_lateness_seconds,
            duration_s,
            (worker, simulator),
            plain=not sys.stdout.isatty() if plain is None else plain,
        )
    log.info("stopped worker and simulator")


def report_incident(snapshot: Snapshot, seen: set[tuple[str, ...]]) -> None:
    """Log each slow (page, device, region) and each alert state change once: the demo's
    evidence in the log (the live view's log panel, or stderr)."""
    for alert in snapshot.alerts:
        key = ("alert", alert["fingerprint"], alert["state"])
        if alert["state"] != "pending" and key not in seen:
            seen.add(key)
            log.warning(
                "alert %s: %s %s: %s",
                alert["state"],
                alert["severity"],
                alert["alert"],
                alert["annotations"].get("summary", ""),
            )
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


@contextlib.contextmanager
def logs_into(handler: logging.Handler) -> Iterator[None]:
    """Every log record into `handler` alone while the live view owns the terminal."""
    root = logging.getLogger()
    others = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    for h in others:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for h in others:
            root.addHandler(h)


def watch(
    port: int,
    incidents: str,
    lateness_s: float,
    duration_s: float | None,
    children: tuple[Child, ...],
    plain: bool,
) -> None:
    """Refresh the view every REFRESH_SECONDS until --duration; a child that dies ends it
    with DemoChildError. Ctrl-C and SIGTERM arrive here as KeyboardInterrupt."""
    started = time.monotonic()
    seen: set[tuple[str, ...]] = set()
    snapshot: Snapshot | None = None
    previous: Snapshot | None = None

    def step() -> None:
        nonlocal snapshot, previous
        for c in children:
            c.check()
        with contextlib.suppress(OSError):
            fresh = scrape(port)
            previous, snapshot = snapshot, fresh
            report_incident(fresh, seen)

    def running() -> bool:
        return duration_s is None or time.monotonic() - started < duration_s

    if plain:
        view = PlainView(sys.stdout, lateness_s)
        while running():
            step()
            if snapshot is not None:
                view.update(snapshot, previous)
            time.sleep(REFRESH_SECONDS)
        return

    console = Console()
    logs = DequeHandler()
    live_view = LiveView(incidents, lateness_s, logs)

    def frame() -> RenderableType:
        width, height = console.size
        return live_view.render(snapshot, previous, width, height)

    try:
        with (
            logs_into(logs),
            Live(
                frame(),
                console=console,
                screen=True,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            ) as live,
        ):
            while running():
                step()
                live.update(frame(), refresh=True)
                time.sleep(REFRESH_SECONDS)
    finally:
        final_summary(snapshot, console)
