"""TLS and SASL_SSL end to end: `expmon topics`, `simulate` and a worker on the secure
listeners of a real broker (a throw-away CA, a SCRAM-SHA-512 user).

Every client library is on the path: kafka-python (`topics`, the read-back), aiokafka
(`simulate`'s producer, which once failed on any TLS cluster with `unexpected keyword
argument 'ssl_cafile'`) and faust (the worker). All take their arguments from
`expmon.kafka.connection`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from expmon.kafka.connection import kafka_python_kwargs
from expmon.local.kafka.broker import ScramUser, SecureProtocol
from expmon.settings import Settings
from expmon.sim.truth.base import read_truth
from schemas import codec
from tests.integration.conftest import SECURE_USER, SecureSettingsFactory
from tests.integration.worker_process import WorkerProcess, read_topic, settings_env

CLI_TIMEOUT_S = 120


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`expmon ARGS` as a user runs it, configured by EXPMON_* variables only."""
    return subprocess.run(
        [sys.executable, "-m", "expmon.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def simulate(settings: Settings, truth: Path) -> int:
    """A few seconds of page loads through `expmon simulate`; the events it sent."""
    created = cli(settings, "topics", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    sent = cli(
        settings,
        "simulate", "--fast", "--rate", "400", "--duration", "5", "--seed", "11",
        "--families", "page_load", "--ground-truth", str(truth),
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "unexpected keyword" not in sent.stderr
    # the truth counts every valid page load once (region "all" rows of the base view)
    rows = [r for r in read_truth(truth) if r["view"] == "1m" and r["region"] == "all"]
    return sum(int(r["count"]) for r in rows)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_simulate_produces_every_event_over_tls(
    protocol: SecureProtocol, secure_settings_factory: SecureSettingsFactory, tmp_path: Path
) -> None:
    settings = secure_settings_factory(protocol)
    expected = simulate(settings, tmp_path / "truth.json")
    assert expected > 1000
    # read back over the same listener (kafka-python with the CA file)
    records = read_topic(settings, settings.topic_page_loads)
    events = [codec.loads(r.value) for r in records]
    # the truth counts page loads; vital-only beacons (no load_ms) are sent beside them
    assert len({e["event_id"] for e in events if "load_ms" in e}) == expected


def test_sasl_ssl_rejects_a_wrong_password(
    secure_settings_factory: SecureSettingsFactory,
) -> None:
    """The listener really authenticates: the same client with a wrong password gets in
    nowhere (so the tests above prove SCRAM, not an open door)."""
    good = secure_settings_factory("SASL_SSL")
    admin = KafkaAdminClient(**kafka_python_kwargs(good), request_timeout_ms=10_000)
    try:
        assert admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    bad = secure_settings_factory("SASL_SSL", user=ScramUser(SECURE_USER.name, "wrong"))
    with pytest.raises(Exception):  # noqa: B017 - kafka-python reports it as a timeout
        KafkaAdminClient(**kafka_python_kwargs(bad), request_timeout_ms=5000)


def test_worker_counts_every_event_over_sasl_ssl(
    secure_settings_factory: SecureSettingsFactory, tmp_path: Path
) -> None:
    settings = secure_settings_factory("SASL_SSL")
    created = cli(settings, "topics", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    worker = WorkerProcess(settings, tmp_path / "worker.log").start(timeout=90)
    try:
        assert simulate(settings, tmp_path / "truth.json") > 1000
        # every event sent (page loads and vital-only beacons), once
        held = read_topic(settings, settings.topic_page_loads)
        expected = len({codec.loads(r.value)["event_id"] for r in held})
        deadline = time.monotonic() + 60
        while worker.events_total("accepted") < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.events_total("accepted") == expected, worker.log_tail()
        assert worker.events_total() == expected  # nothing invalid, late or duplicate
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    password = settings.kafka_sasl_password
    assert password is not None and password.get_secret_value() not in log
    assert "effective settings:" in log and "kafka_sasl_password=***" in log
