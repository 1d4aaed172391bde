"""Replay against the live run: real broker, a real worker, a real Alertmanager.

The live worker processes a simulated incident; then `expmon replay` re-runs the same
topic range. Its closed windows and alert times must equal the live ones, a recording of
the range must replay to the same report bytes, and nothing live may move: consumer-group
offsets, the worker's metrics, Alertmanager's alerts and the windows topic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from expmon.cli import main
from expmon.families.registry import input_topics
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.local.procs import LocalAlertmanager
from expmon.replay.run import ReplayOptions, run_replay
from expmon.replay.session import canonical
from expmon.settings import Settings
from schemas import codec
from schemas.eventtime import format_ms
from tests.integration.alertmanager import WebhookReceiver
from tests.integration.test_alerting import (
    INCIDENT_RULES,
    MINUTE,
    alerting_settings,
    future_start,
    produce,
    traffic,
    wait_for,
)
from tests.integration.worker_process import WorkerProcess, final_views, read_topic

VIEW_ALERTS = {"PageLoadSlow", "PaymentFailureRateHigh", "BounceRateHigh", "CheckoutDropOffSpike"}


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    admin = KafkaAdminClient(**kafka_python_kwargs(settings))
    try:
        offsets = admin.list_group_offsets(settings.app_id)[settings.app_id]
    finally:
        admin.close()
    # Input topics only: the worker's own telemetry keeps the partials topic moving.
    return {
        (tp.topic, tp.partition): meta.offset
        for tp, meta in offsets.items()
        if tp.topic in input_topics(settings)
    }


def live_metrics(worker: WorkerProcess) -> dict[Any, float]:
    # (not notifications: the worker re-sends firing alerts every couple of seconds)
    wanted = ("expmon_events_total", "expmon_windows_final", "expmon_dead_letters_total")
    return {k: v for k, v in worker.metrics().items() if k[0].startswith(wanted)}


def live_transitions(settings: Settings) -> list[tuple[int, str, str, str]]:
    found = []
    for record in read_topic(settings, settings.topic_alerts):
        alert = codec.loads(record.value)
        if alert["alert"] not in VIEW_ALERTS:
            continue  # pipeline rules watch the live pipeline's wall clock: not replayed
        at = alert["fired_at_ms"] if alert["state"] == "firing" else alert["resolved_at_ms"]
        found.append((at, alert["state"], alert["alert"], alert["fingerprint"]))
    return sorted(found)


def rows(view: dict[str, Any]) -> list[Any]:
    return sorted((canonical(r) for r in view["rows"]), key=codec.dumps)


def test_replay_equals_the_live_run_and_touches_nothing_live(
    settings_factory: Any,
    tmp_path: Path,
    alertmanager: LocalAlertmanager,
    receiver: WebhookReceiver,
    unique: str,
) -> None:
    alertmanager.start()
    settings, _rules = alerting_settings(
        settings_factory, alertmanager, tmp_path, unique,
        {**INCIDENT_RULES, "InvalidEventRateHigh": "enabled: false"}, topic_partitions=3,
    )  # fmt: skip
    start = future_start()
    produce(
        settings,
        traffic(
            start, 12,
            ("slow_pages@2m+5m:page=/checkout,factor=4", "payment_outage@2m+5m:provider=adyen"),
        ),
    )  # fmt: skip
    live_through = start + 11 * MINUTE  # the data's watermark closes windows this far

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        wait_for(
            "the live windows",
            lambda: all(
                f"{family}/1m/{live_through}" in final_views(settings)
                for family in ("page_load", "checkout")
            ),
            120,
            worker,
        )
        wait_for(
            "the incident alerts in Alertmanager",
            lambda: len(alertmanager.alerts(f'run="{unique}"')) >= 2,
            60,
            worker,
        )
        before = (
            committed_offsets(settings),
            live_metrics(worker),
            sorted((a["fingerprint"], a["startsAt"]) for a in alertmanager.alerts()),
            len(read_topic(settings, settings.topic_windows)),
        )
        live = final_views(settings)
        transitions = live_transitions(settings)

        # The live settings, Alertmanager URL included: a replay must not use it.
        kafka_report = tmp_path / "from-kafka.json"
        options = ReplayOptions(report=kafka_report, markdown=tmp_path / "r.md", progress=False)
        assert run_replay(settings, options) == 0

        recording = tmp_path / "range.ndjson.gz"
        topics = [a for t in input_topics(settings) for a in ("--topic", t)]
        argv = ["--bootstrap", settings.kafka_bootstrap, "record", "dump", *topics]
        assert main([*argv, "--from", "earliest", "-o", str(recording), "--no-progress"]) == 0
        file_report = tmp_path / "from-file.json"
        options = ReplayOptions(file=recording, report=file_report, progress=False)
        assert run_replay(settings, options) == 0

        after = (
            committed_offsets(settings),
            live_metrics(worker),
            sorted((a["fingerprint"], a["startsAt"]) for a in alertmanager.alerts()),
            len(read_topic(settings, settings.topic_windows)),
        )
    finally:
        assert worker.stop() == 0, worker.log_tail()

    assert after == before, "a replay must leave live offsets, metrics, alerts and windows be"
    assert file_report.read_bytes() == kafka_report.read_bytes()

    report = codec.loads(kafka_report.read_bytes())
    replayed = {f"{w['family']}/{w['view']}/{w['end_ms']}": w for w in report["windows"]}
    compared = 0
    for key, view in live.items():
        if view["end_ms"] <= live_through:
            assert key in replayed, key
            assert rows(replayed[key]) == rows(view), key
            compared += 1
    assert compared > 50
    # Core Web Vitals rows (p75 sketches, rating counts, assessment) among them
    vital_rows = [r for v in live.values() for r in v["rows"] if r.get("kind") == "web_vital"]
    assert {r["vital"] for r in vital_rows} == {"lcp", "inp", "cls", "fcp", "ttfb"}
    # Replay closes the rest at the end of the range; live still holds the last window open.
    assert max(w["end_ms"] for w in report["windows"]) > live_through

    replay_transitions = sorted(
        (e["at_ms"], e["state"], e["alertname"], e["fingerprint"])
        for e in report["alerts"]
        if e["at_ms"] <= live_through
    )
    assert {t[2] for t in transitions} >= {"PageLoadSlow", "PaymentFailureRateHigh"}
    assert replay_transitions == [t for t in transitions if t[0] <= live_through]
    assert "PaymentFailureRateHigh" in (tmp_path / "r.md").read_text()


def test_bad_ranges_give_one_clear_line_each(
    settings_factory: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_factory()
    ensure_topics(settings, default_topic_specs(settings))
    monkeypatch.setenv("EXPMON_TOPIC_PAGE_LOADS", settings.topic_page_loads)  # empty
    monkeypatch.setenv("EXPMON_TOPIC_LOGISTICS", "no-such-topic")  # an input topic, not there
    base = ["--bootstrap", settings.kafka_bootstrap, "replay", "--no-progress"]
    report = ["--report", str(tmp_path / "r.json")]
    cases = {
        "is after --to": ["--from", "-1h", "--to", "-2h"],
        "not an input topic": ["--topic", "some-other-topic"],
        "unknown topic 'no-such-topic'": ["--topic", "no-such-topic"],
        "holds no records": ["--topic", settings.topic_page_loads],
        "use max, 1x, 10x": ["--speed", "fast"],
    }
    for expected, argv in cases.items():
        caplog.clear()
        capsys.readouterr()
        with caplog.at_level(logging.ERROR, logger="expmon"):
            assert main([*base, *argv, *report]) == 2, expected
        # one `expmon: error: ...` line on stderr (the CLI's one-line errors), nothing logged
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(errors) == 1 and expected in errors[0], (expected, errors)
        assert errors[0].startswith("expmon: error: ")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not (tmp_path / "r.json").exists()


def test_record_dump_then_load_reproduces_the_records(
    settings_factory: Any, tmp_path: Path, unique: str
) -> None:
    settings = settings_factory()
    ensure_topics(settings, default_topic_specs(settings))
    topic = settings.topic_page_loads
    producer = KafkaProducer(**kafka_python_kwargs(settings))
    base_ms = future_start() - 60 * MINUTE
    for i in range(60):
        value = b"\xff not utf-8" if i == 7 else codec.dumps({"n": i})
        producer.send(
            topic, key=f"k{i % 5}".encode(), value=value, partition=i % 3,
            timestamp_ms=base_ms + i * 1000, headers=[("h", bytes([i]))],
        )  # fmt: skip
    producer.flush()
    producer.close()
    recording = tmp_path / "one.ndjson"
    cli = ["--bootstrap", settings.kafka_bootstrap, "record"]
    from_ = f"--from={format_ms(base_ms + 10_000)}"  # by timestamp: the first 10 stay out
    assert main([*cli, "dump", "--topic", topic, from_, "-o", str(recording), "--no-progress"]) == 0
    copy = f"copy-{unique}"
    assert main([*cli, "load", "-i", str(recording), "--into", copy, "--no-progress"]) == 0

    def seen(name: str) -> list[tuple[Any, ...]]:
        return sorted(
            (r.partition, r.timestamp, r.key, r.value, tuple(r.headers))
            for r in read_topic(settings, name)
            if r.timestamp >= base_ms + 10_000
        )

    original = seen(topic)
    assert len(original) == 50
    assert seen(copy) == original
    assert len(read_topic(settings, copy)) == 50  # nothing from before --from
