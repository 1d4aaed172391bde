"""A real scrape of a worker fed by `expmon simulate` (every family, every incident, and
hostile page values) passes `promtool check metrics` (Debian's prometheus package)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.settings import Settings
from schemas import codec
from tests.integration.worker_process import WorkerProcess, expmon_cli

INCIDENTS = (
    "slow_pages@1m+6m:page=/checkout,factor=4",
    "payment_outage@1m+6m:provider=adyen",
    "carrier_delay@1m+6m:carrier=ups",
    "checkout_stall@2m+3m",
    "warehouse_backlog@1m+3m:warehouse=ams-1",
    "bad_records@1m+2m:rate=3",
)
# what a hostile or careless client sends as a page: CR/LF/NUL, PII in a query string
HOSTILE_PAGES = ("/p\r\nexpmon_fake 1", "/nul\x00", "/search?email=a@b.example", "/cart#pay")


def send_hostile_pages(settings: Settings) -> None:
    now = int(time.time() * 1000)
    producer = KafkaProducer(**kafka_python_kwargs(settings))
    try:
        for i, page in enumerate(HOSTILE_PAGES):
            event: dict[str, Any] = {
                "event_id": f"hostile-{i}", "occurred_at": now - 5 * 60_000,
                "schema_version": 1, "session_id": f"hostile-{i}", "device": "mobile",
                "platform": "web", "region": "eu-west", "page": page, "load_ms": 900,
            }  # fmt: skip
            producer.send(settings.topic_page_loads, key=b"hostile", value=codec.dumps(event))
        producer.flush()
    finally:
        producer.close()


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )


def test_a_real_scrape_passes_promtool(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory(idle_partition_timeout_seconds=3.0)
    assert all(r.ok for r in ensure_topics(settings, default_topic_specs(settings)))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        args = ["simulate", "--fast", "--rate", "200", "--duration", "420", "--seed", "3"]
        for incident in INCIDENTS:
            args += ["--incident", incident]
        sent = expmon_cli(settings, *args)
        assert sent.returncode == 0, sent.stderr[-3000:]
        send_hostile_pages(settings)
        wanted = (
            "expmon_page_load_quantile_seconds_count",
            "expmon_payment_failure_ratio",
            "expmon_checkout_dropoff_ratio",
            "expmon_shipments_total",
        )
        deadline = time.monotonic() + 120
        while True:
            text = worker.scrape()
            seen = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
            reasons = {
                s.labels.get("reason")
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "expmon_dead_letters_total"
            }
            if all(w in seen for w in wanted) and "control_characters:page" in reasons:
                break
            assert time.monotonic() < deadline, (
                f"missing {[w for w in wanted if w not in seen]}, reasons {reasons}\n"
                + worker.log_tail()
            )
            time.sleep(1)
        checked = promtool_check(text)
        assert checked.returncode == 0, (checked.stdout + checked.stderr)[:3000]
        assert checked.stdout + checked.stderr == ""
        pages = {
            s.labels["page"]
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if "page" in s.labels
        }
        assert "/search" in pages and "/cart" in pages
        assert not any("?" in p or "#" in p or not p.isprintable() for p in pages), pages
    finally:
        assert worker.stop() == 0, worker.log_tail()
