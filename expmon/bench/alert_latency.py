"""Alert latency: from producing the event that reveals a breach to Alertmanager holding it.

Both routes are measured on the same incidents, same worker, same Alertmanager:

* in-stream: the worker's engine evaluates the window the moment the merge stage makes
  it final and posts to Alertmanager;
* Prometheus twin: a real Prometheus scrapes the worker's window gauges and evaluates the
  exported rules, then posts to the same Alertmanager (its alerts carry
  `route="prometheus"` as an external label, so the two are told apart).

A sample: a batch of slow loads (6 s) on a page of its own fills one 1-minute window in
event time; then one fast event 31 s past the window's end is produced — the event whose
arrival moves the watermark past the window (lateness 30 s) and so reveals the breach.
The clock starts when that event is acknowledged by the broker and stops when
Alertmanager's `GET /api/v2/alerts` lists the alert. Rules: PageLoadSlow over the 1m
view, `for: 0s`, min volume 5, on both routes.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from expmon.alerting.promrules import export
from expmon.alerting.rules import load_rules
from expmon.errors import ExpmonError
from expmon.families.registry import SIGNALS
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.local.procs import (
    LocalAlertmanager,
    LocalPrometheus,
    free_port,
    stop_process,
    wait_ready,
)
from expmon.settings import Settings
from schemas import codec

log = logging.getLogger(__name__)

MINUTE = 60_000
ALERT_RULES = """\
rules:
  - alert: PageLoadSlow
    window: 1m
    for: 0s
    min_volume: 5
    critical_threshold: null
"""
OTHER_ALERTS = (
    "BounceRateHigh", "PaymentFailureRateHigh", "CheckoutDropOffSpike", "ShippingSLABreach",
    "TrackingStale", "DeliveryExceptionRateHigh", "EventSourceSilent", "InvalidEventRateHigh",
    "CoreWebVitalsPoor", "KafkaUnreachable",
)  # fmt: skip


@dataclass
class LatencyReport:
    stream_ms: list[float] = field(default_factory=list)
    prometheus_ms: list[float] = field(default_factory=list)
    prometheus_interval: str = "15s"

    @staticmethod
    def summary(values: list[float]) -> dict[str, float | int | None]:
        if not values:
            return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return {
            "n": len(values),
            "p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(p99, 1),
            "max_ms": round(ordered[-1], 1),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_stream": self.summary(self.stream_ms),
            "prometheus_twin": self.summary(self.prometheus_ms),
            "prometheus_scrape_and_evaluation_interval": self.prometheus_interval,
        }


def _rules_text() -> str:
    others = "".join(f"  - alert: {name}\n    enabled: false\n" for name in OTHER_ALERTS)
    return ALERT_RULES + others


def _page_load(page: str, at_ms: int, load_ms: int) -> bytes:
    return codec.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "occurred_at": at_ms,
            "schema_version": 1,
            "session_id": uuid.uuid4().hex,
            "device": "desktop",
            "platform": "web",
            "region": "eu-west",
            "page": page,
            "load_ms": load_ms,
        }
    )


def _wait_alert(am: LocalAlertmanager, matchers: tuple[str, ...], timeout_s: float) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if am.alerts(*matchers):
            return time.monotonic()
        time.sleep(0.02)
    return None


def measure_alert_latency(
    settings: Settings,
    workdir: Path,
    *,
    samples: int = 20,
    prometheus_samples: int = 5,
    prometheus_interval: str = "15s",
) -> LatencyReport:
    """Run the worker, Alertmanager and Prometheus locally and time both routes."""
    run = uuid.uuid4().hex[:8]
    rules_file = workdir / "latency-rules.yml"
    rules_file.write_text(_rules_text())
    twin_file = workdir / "latency-twin.yml"
    twin_file.write_text(export(load_rules([rules_file], settings.views, signals=SIGNALS)))
    settings = settings.model_copy(
        update={
            "app_id": f"expmon-latency-{run}",
            "topic_page_loads": f"latency-page-loads-{run}",
            "topic_checkout": f"latency-checkout-{run}",
            "topic_logistics": f"latency-logistics-{run}",
            "topic_alerts": f"latency-alerts-{run}",
            "topic_dlq": f"latency-dlq-{run}",
            "topic_window_partials": f"latency-partials-{run}",
            "topic_windows": f"latency-windows-{run}",
            "topic_partitions": 1,
            "state_dir": workdir / "state",
            "metrics_port": free_port(),
        }
    )
    ensure_topics(settings, default_topic_specs(settings))
    report = LatencyReport(prometheus_interval=prometheus_interval)
    am = LocalAlertmanager(workdir / "alertmanager").start()
    env = {
        "EXPMON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "EXPMON_APP_ID": settings.app_id,
        "EXPMON_METRICS_PORT": str(settings.metrics_port),
        "EXPMON_STATE_DIR": str(settings.state_dir),
        "EXPMON_RULES_FILES": codec.dumps([str(rules_file)]).decode(),
        "EXPMON_ALERTMANAGER_URL": am.url,
        "EXPMON_LOG_LEVEL": "WARNING",
        # historical event time: never let the wall clock close windows
        "EXPMON_IDLE_PARTITION_TIMEOUT_SECONDS": "1000000",
        **{
            f"EXPMON_TOPIC_{name.upper()}": getattr(settings, f"topic_{name}")
            for name in ("page_loads", "checkout", "logistics", "alerts", "dlq")
        },
        "EXPMON_TOPIC_WINDOW_PARTIALS": settings.topic_window_partials,
        "EXPMON_TOPIC_WINDOWS": settings.topic_windows,
    }
    log_path = workdir / "latency-worker.log"
    with log_path.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "expmon.cli", "worker"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("EXPMON_")}, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prometheus = LocalPrometheus(
        workdir / "prometheus",
        [f"127.0.0.1:{settings.metrics_port}"],
        [twin_file],
        interval=prometheus_interval,
        alertmanager_url=am.url,
        external_labels={"route": "prometheus"},
    )
    producer = KafkaProducer(**kafka_python_kwargs(settings), linger_ms=0, acks=1)
    try:
        wait_ready(
            f"http://127.0.0.1:{settings.metrics_port}/readyz",
            worker,
            "latency worker",
            90,
            lambda: f"; see {log_path}",
        )
        prometheus.start()
        now = int(time.time() * 1000)
        base = now - now % MINUTE - 6 * 60 * MINUTE
        total = samples + prometheus_samples
        for i in range(total):
            window = base + i * 2 * MINUTE
            page = f"/latency/{i}"
            for k in range(20):
                producer.send(
                    settings.topic_page_loads, value=_page_load(page, window + k * 1000, 6000)
                )
            producer.flush()
            time.sleep(0.3)  # let the batch land before the revealing event
            reveal = _page_load("/latency/reveal", window + MINUTE + 31_000, 200)
            future = producer.send(settings.topic_page_loads, value=reveal)
            producer.flush()
            future.get(timeout=10)
            started = time.monotonic()
            stream_at = _wait_alert(am, (f'page="{page}"', 'route!="prometheus"'), 30)
            if stream_at is None:
                raise ExpmonError(f"in-stream alert for {page} not seen in 30 s; see {log_path}")
            if i < samples:
                report.stream_ms.append((stream_at - started) * 1000)
                continue
            report.stream_ms.append((stream_at - started) * 1000)
            prom_at = _wait_alert(am, (f'page="{page}"', 'route="prometheus"'), 180)
            if prom_at is None:
                raise ExpmonError(f"Prometheus-route alert for {page} not seen in 180 s")
            report.prometheus_ms.append((prom_at - started) * 1000)
            log.info("sample %d: in-stream %.0f ms, Prometheus %.0f ms", i,
                     report.stream_ms[-1], report.prometheus_ms[-1])  # fmt: skip
    finally:
        producer.close()
        prometheus.stop()
        stop_process(worker, "latency worker", grace_s=30)
        am.stop()
    return report
