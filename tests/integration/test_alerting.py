"""Alerts end to end: real broker, real worker processes, real Alertmanager.

Event times lie a little in the future, so the windows close on the data's own watermark
and not on the wall-clock idle fallback: the test decides when an incident's windows
close by deciding when to produce the rest of the traffic.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from expmon.alerting.rules import load_rules
from expmon.cli import main
from expmon.families.registry import SIGNALS
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.local.procs import LocalAlertmanager, LocalPrometheus
from expmon.settings import Settings
from expmon.sim.encoding import Record, encode_records
from expmon.sim.incidents import parse_incidents
from expmon.sim.journeys import TrafficGenerator
from schemas.events import EventFamily
from tests.integration.alertmanager import WebhookReceiver
from tests.integration.worker_process import WorkerProcess, final_views

MINUTE = 60_000
ALERTS = tuple(
    dict.fromkeys(rule.alert for rule in load_rules(signals=SIGNALS))
)  # every default alert


def rules_file(path: Path, run: str, overrides: dict[str, str]) -> Path:
    """Tag every alert with `run` (to find this test's alerts) and apply overrides."""
    lines = ["rules:"]
    for alert in ALERTS:
        lines += [f"  - alert: {alert}", f"    labels: {{run: {run}}}"]
        lines += [f"    {line}" for line in overrides.get(alert, "").splitlines() if line]
    path.write_text("\n".join(lines) + "\n")
    return path


RUNBOOKS = "https://git.example.test/shop/expmon/-/blob/main/"


def alerting_settings(
    settings_factory: Any,
    alertmanager: LocalAlertmanager,
    tmp_path: Path,
    run: str,
    rule_overrides: dict[str, str],
    **extra: Any,
) -> tuple[Settings, Path]:
    """Settings for a worker that alerts to `alertmanager` with this run's rules."""
    rules = rules_file(tmp_path / "rules.yml", run, rule_overrides)
    values: dict[str, Any] = {
        "idle_partition_timeout_seconds": 3.0,
        "alertmanager_url": alertmanager.url,
        "alert_resend_seconds": 2.0,
        "rules_files": (rules,),
        "runbook_base_url": RUNBOOKS,
        # the traffic is dated from 10 minutes ahead (fresh windows), produced now
        "max_clock_skew_seconds": 86_400.0,
    }
    return settings_factory(**{**values, **extra}), rules


def traffic(
    start_ms: int, minutes: int, incidents: tuple[str, ...], mix: dict[str, float] | None = None
) -> list[Record]:
    generator = TrafficGenerator(
        seed=11, rate=60, start_ms=start_ms, duration_s=minutes * 60,
        incidents=parse_incidents(incidents), mix=mix or {"page_load": 0.6, "checkout": 0.4},
    )  # fmt: skip
    return list(encode_records(generator, batch_size=1, seed=11, partitions=None))


def produce(settings: Settings, records: list[Record]) -> None:
    ensure_topics(settings, default_topic_specs(settings))
    topics = {
        EventFamily.PAGE_LOAD: settings.topic_page_loads,
        EventFamily.CHECKOUT: settings.topic_checkout,
        EventFamily.LOGISTICS: settings.topic_logistics,
    }
    producer = KafkaProducer(
        **kafka_python_kwargs(settings), linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    for record in records:
        producer.send(topics[record.family], key=record.key.encode(), value=record.value)
    producer.flush()
    producer.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{worker.log_tail()}"
        time.sleep(0.5)


def names(alerts: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    keep = ("alertname", "page", "provider", "topic")
    return {tuple(a["labels"].get(k, "") for k in keep) for a in alerts}


def future_start() -> int:
    now = int(time.time() * 1000)
    return now - now % MINUTE + 10 * MINUTE


INCIDENT_RULES = {
    # Simulated volumes are small: 20 attempts at a 1.5 % base rate would page on one
    # unlucky failure at 3 %, so the test asks for a clear outage (40 % failing).
    "PaymentFailureRateHigh": "threshold: 0.15\nmin_volume: 20",
    "InvalidEventRateHigh": "window: 90s\nmin_volume: 50",
    "EventSourceSilent": "enabled: false",
}


# The restarted worker takes the invalid-rate alert over with empty counts: it may resolve
# it only once a whole window has passed since its start (no second page), so the window is
# what the test waits for at the end. 30 s still holds the first worker's whole burst.
RESTART_RULES = {**INCIDENT_RULES, "InvalidEventRateHigh": "window: 30s\nmin_volume: 50"}


def test_incidents_page_once_survive_restart_and_resolve(
    settings_factory: Any,
    tmp_path: Path,
    alertmanager: LocalAlertmanager,
    receiver: WebhookReceiver,
    unique: str,
) -> None:
    alertmanager.start()
    settings, _rules = alerting_settings(
        settings_factory, alertmanager, tmp_path, unique, RESTART_RULES,
        topic_partitions=3, kafka_session_timeout_seconds=8.0,
    )  # fmt: skip
    start = future_start()
    records = traffic(
        start,
        14,
        (
            "slow_pages@2m+6m:page=/checkout,factor=4",
            "payment_outage@2m+6m:provider=adyen",
            "bad_records@1m+3m:family=page_load,rate=3",
        ),
    )
    split = start + 7 * MINUTE
    first = [r for r in records if r.time_ms < split]
    rest = [r for r in records if r.time_ms >= split]
    assert any(r.bad is not None for r in first)
    produce(settings, first)

    worker = WorkerProcess(settings, tmp_path / "w1.log").start()
    expected = {
        ("PageLoadSlow", "/checkout", "", ""),
        ("PaymentFailureRateHigh", "", "adyen", ""),
        ("InvalidEventRateHigh", "", "", settings.topic_page_loads),
    }
    restarted: WorkerProcess | None = None
    try:
        wait_for(
            "the incident alerts in Alertmanager",
            lambda: names(alertmanager.alerts(f'run="{unique}"')) >= expected,
            120,
            worker,
        )
        firing = alertmanager.alerts(f'run="{unique}"')
        assert names(firing) == expected, firing
        for alert in firing:
            annotations = alert["annotations"]
            # EXPMON_RUNBOOK_BASE_URL makes the rules' relative links absolute (clickable)
            name = alert["labels"]["alertname"]
            assert annotations["runbook_url"] == f"{RUNBOOKS}docs/runbooks.md#{name.lower()}"
            assert alert["labels"]["severity"] in {"warning", "critical"}
            assert "over" in annotations["summary"]
            if alert["labels"]["alertname"] != "InvalidEventRateHigh":
                assert annotations["replay"].startswith("expmon replay --topic ")
                assert annotations["sample_event_ids"], "evidence: a few event ids"
            assert alert["generatorURL"].startswith("http://127.0.0.1:")

        # SIGKILL while firing; the restarted worker restores the alerts and re-sends them.
        worker.kill()
        restarted = WorkerProcess(settings, tmp_path / "w2.log").start()
        time.sleep(6)  # several re-send intervals and Alertmanager group intervals
        assert names(alertmanager.alerts(f'run="{unique}"')) >= expected - {
            ("InvalidEventRateHigh", "", "", settings.topic_page_loads)
        }

        produce(settings, rest)
        wait_for(
            "every alert resolved",
            lambda: (
                not alertmanager.alerts(f'run="{unique}"')
                and {
                    a["fingerprint"] for a in receiver.received(unique) if a["status"] == "resolved"
                }
                >= {a["fingerprint"] for a in receiver.received(unique)}
            ),
            180,
            restarted,
        )
        wanted = f"page_load/5m/{start + 13 * MINUTE}"
        assert wanted in final_views(settings), "windows must have closed through the end"
    finally:
        for w in (worker, restarted):
            if w is not None:
                w.stop()

    notes = receiver.received(unique)
    per_alert = Counter((n["fingerprint"], n["status"]) for n in notes)
    fingerprints = {n["fingerprint"] for n in notes}
    # exactly one page and one resolve per alert, despite the SIGKILL and the re-sends
    history = "\n".join(
        f"{n['fingerprint']} {n['status']} {n['startsAt']} {n['endsAt']} "
        + ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items()) if k != "run")
        for n in notes
    )
    assert per_alert == Counter(
        {(fp, s): 1 for fp in fingerprints for s in ("firing", "resolved")}
    ), history
    assert names([{"labels": n["labels"]} for n in notes]) == expected


def test_quiet_traffic_raises_nothing(
    settings_factory: Any,
    tmp_path: Path,
    alertmanager: LocalAlertmanager,
    receiver: WebhookReceiver,
    unique: str,
) -> None:
    alertmanager.start()
    settings, rules = alerting_settings(
        settings_factory, alertmanager, tmp_path, unique, INCIDENT_RULES
    )
    start = future_start()
    produce(settings, traffic(start, 9, ()))
    worker = WorkerProcess(settings, tmp_path / "w.log").start()
    twin = tmp_path / "twin.yml"
    assert main(["rules", "export-prometheus", "--rules", str(rules), "-o", str(twin)]) == 0
    prometheus = LocalPrometheus(tmp_path / "prometheus", [f"127.0.0.1:{worker.port}"], [twin])
    prometheus.start()
    try:
        wanted = f"page_load/5m/{start + 8 * MINUTE}"
        wait_for("windows to close", lambda: wanted in final_views(settings), 120, worker)
        time.sleep(5)
        assert worker.events_total() > 20_000
        assert alertmanager.alerts(f'run="{unique}"') == []
        assert receiver.received(unique) == []
        firing = {k: v for k, v in worker.metrics().items() if k[0] == "expmon_alerts_firing"}
        assert firing and not any(firing.values())

        # The Prometheus twin: a real Prometheus scrapes the worker and evaluates the
        # exported rules over its metrics; they load healthy and stay quiet too.
        wait_for(
            "Prometheus to scrape window gauges",
            lambda: bool(prometheus.query('expmon_page_load_quantile_seconds{window="5m"}')),
            30,
            worker,
        )

        def twin_rules() -> list[dict[str, Any]]:
            return [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]

        wait_for(
            "every twin rule evaluated",
            lambda: all(r["health"] != "unknown" for r in twin_rules()),
            30,
            worker,
        )
        rules_seen = twin_rules()
        assert len(rules_seen) >= 9
        bad = [
            (r["name"], r["health"], r.get("lastError")) for r in rules_seen if r["health"] != "ok"
        ]
        assert not bad
        assert prometheus.query('ALERTS{alertstate="firing"}') == []
    finally:
        prometheus.stop()
        worker.stop()


def test_silent_source_fires_and_resolves_and_survives_alertmanager_outage(
    settings_factory: Any,
    tmp_path: Path,
    alertmanager: LocalAlertmanager,
    receiver: WebhookReceiver,
    unique: str,
) -> None:
    """EventSourceSilent through an Alertmanager that is down when it fires."""
    only_silence = {a: "enabled: false" for a in ALERTS if a != "EventSourceSilent"}
    settings, _rules = alerting_settings(
        settings_factory, alertmanager, tmp_path, unique,
        {**only_silence, "EventSourceSilent": "threshold: 12"},
    )  # fmt: skip
    start = future_start()
    produce(settings, traffic(start, 1, ()))
    down_since = time.monotonic()
    worker = WorkerProcess(settings, tmp_path / "w.log").start()  # Alertmanager is down
    try:
        topics = {settings.topic_page_loads, settings.topic_checkout}
        everything = {*topics, settings.topic_logistics}

        def engine_firing() -> set[str]:
            import json
            import urllib.request

            url = f"http://127.0.0.1:{worker.port}/alerts"
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = json.loads(resp.read())
            return {a["labels"]["topic"] for a in body["alerts"] if a["state"] == "firing"}

        wait_for("silence detected", lambda: engine_firing() == everything, 60, worker)
        failed_before = worker.metrics().get(
            ("expmon_alert_notifications_total", (("outcome", "failed"), ("sink", "alertmanager")))
        )
        assert failed_before, "posts to the dead Alertmanager must have failed and been counted"
        # Alertmanager stays down; processing goes on: logistics events arrive and their
        # topic's silence resolves in the engine while the other two stay firing.
        produced = worker.events_total()
        produce(settings, traffic(start, 1, (), mix={"logistics": 1.0}))
        wait_for("new events processed", lambda: worker.events_total() > produced, 30, worker)
        wait_for("logistics silence resolved", lambda: engine_firing() == topics, 30, worker)
        time.sleep(max(0.0, 60 - (time.monotonic() - down_since)))  # down for a full minute

        alertmanager.start()
        wait_for(
            "silent alerts delivered after Alertmanager came back",
            lambda: (
                {a["labels"]["topic"] for a in alertmanager.alerts(f'run="{unique}"')} >= topics
            ),
            60,
            worker,
        )
        produce(settings, traffic(start + MINUTE, 1, (), mix={"page_load": 1.0}))
        # (logistics may have gone quiet again meanwhile and fire a second time)

        def notes() -> Counter[tuple[str, str]]:
            return Counter((n["labels"]["topic"], n["status"]) for n in receiver.received(unique))

        wait_for(
            "page-loads silence resolved once events flow",
            lambda: notes()[(settings.topic_page_loads, "resolved")] >= 1,
            60,
            worker,
        )
        assert notes()[(settings.topic_page_loads, "firing")] == 1
        assert notes()[(settings.topic_page_loads, "resolved")] == 1
        assert notes()[(settings.topic_checkout, "firing")] == 1
    finally:
        worker.stop()


JOURNEY_RULES = {
    # A 10-minute baseline instead of 24 h: the scenario runs for half an hour.
    "CheckoutDropOffSpike": "window: 5m\nbaseline: 10m\nbaseline_min_volume: 100\nmin_volume: 20",
    "ShippingSLABreach": "window: 5m\nmin_volume: 5",
    # normal tracking gaps leave a few % stale on test-size volumes; the stall leaves most
    "TrackingStale": "threshold: 0.3\nmin_volume: 20",
    "PaymentFailureRateHigh": "threshold: 0.15\nmin_volume: 20",
    # the simulator's base failure rate on small per-carrier volumes is not what this tests
    "DeliveryExceptionRateHigh": "threshold: 0.25",
    "EventSourceSilent": "enabled: false",
}


def test_journey_incidents_fire_and_resolve(
    settings_factory: Any,
    tmp_path: Path,
    alertmanager: LocalAlertmanager,
    receiver: WebhookReceiver,
    unique: str,
) -> None:
    """Checkout stall, warehouse backlog and a carrier's stalled tracking, in compressed
    time (48 h -> 48 s, as in the journeys test)."""
    alertmanager.start()
    settings, _rules = alerting_settings(
        settings_factory, alertmanager, tmp_path, unique, JOURNEY_RULES,
        ship_sla_seconds=48.0, tracking_stale_seconds=24.0, checkout_abandon_seconds=120.0,
    )  # fmt: skip
    start = future_start()
    generator = TrafficGenerator(
        seed=5, rate=40, start_ms=start, duration_s=28 * 60, lifecycle_compression=3600,
        mix={"checkout": 0.5, "logistics": 0.5},
        incidents=parse_incidents((
            "warehouse_backlog@8m+10m:warehouse=ams-1",
            "carrier_delay@8m+11m:carrier=dhl,stall=true",
            "checkout_stall@10m+9m:dropoff=0.9",
        )),
    )  # fmt: skip
    records = list(encode_records(generator, batch_size=1, seed=5, partitions=None))
    split = start + 18 * MINUTE
    produce(settings, [r for r in records if r.time_ms < split])
    worker = WorkerProcess(settings, tmp_path / "w.log").start()
    expected = {
        ("CheckoutDropOffSpike", "", "", ""),
        ("ShippingSLABreach", "", "", ""),
        ("TrackingStale", "", "", ""),
    }

    def current() -> list[dict[str, Any]]:
        return alertmanager.alerts(f'run="{unique}"')

    try:
        wait_for(
            "journey alerts in Alertmanager", lambda: names(current()) >= expected, 120, worker
        )
        time.sleep(3)
        firing = current()
        assert names(firing) == expected, firing
        dims = {a["labels"]["alertname"]: a["labels"] for a in firing}
        assert dims["ShippingSLABreach"]["warehouse"] == "ams-1"
        breach = next(a for a in firing if a["labels"]["alertname"] == "ShippingSLABreach")
        # evidence: order_placed events of orders that missed 48 h
        assert breach["annotations"]["sample_event_ids"], breach["annotations"]
        assert dims["TrackingStale"]["carrier"] == "dhl"
        assert dims["CheckoutDropOffSpike"]["severity"] == "critical"
        produce(settings, [r for r in records if r.time_ms >= split])
        wait_for("journey alerts resolved", lambda: not current(), 180, worker)
    finally:
        worker.stop()
    notes = receiver.received(unique)
    per_alert = Counter((n["labels"]["alertname"], n["status"]) for n in notes)
    assert per_alert == Counter(
        {(name, status): 1 for name, *_ in expected for status in ("firing", "resolved")}
    ), notes
