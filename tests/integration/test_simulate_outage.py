"""`expmon simulate` through a 60 s broker outage: the broker is SIGKILLed mid-run and
restarted on the same data dir and port; the simulator rides it out, exits 0, and its
ground truth equals the figures computed from what the broker holds (read back)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.local.kafka.broker import LocalKafka
from expmon.local.procs import free_port
from expmon.settings import Settings, default_cache_dir
from expmon.sim.truth.base import read_truth
from expmon.sim.truth.page_load import settings_rows
from schemas import codec
from tests.integration.worker_process import read_topic, settings_env

OUTAGE_S = 60
BEFORE_S = 10  # traffic before the kill
# the run outlasts the outage and the broker's restart (about 10 s): traffic after it too
SIM_S = BEFORE_S + OUTAGE_S + 20


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of this test alone (it gets killed), on a fixed data dir and port."""
    kafka = LocalKafka(
        default_cache_dir(), data_dir=tmp_path / "kafka", port=free_port(),
        controller_port=free_port(),
    )  # fmt: skip
    kafka.start(timeout=120)
    try:
        yield kafka
    finally:
        kafka.stop()


def test_simulate_rides_out_a_broker_outage(own_kafka: LocalKafka, tmp_path: Path) -> None:
    settings = Settings.from_env(
        kafka_bootstrap=own_kafka.bootstrap, topic_page_loads="page-loads-outage",
        topic_partitions=3, sim_delivery_timeout_seconds=150,
    )  # fmt: skip
    assert all(r.ok for r in ensure_topics(settings, default_topic_specs(settings)))
    truth = tmp_path / "truth.json"
    log = (tmp_path / "simulate.log").open("wb")
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "expmon.cli", "simulate", "--rate", "100",
            "--duration", str(SIM_S), "--families", "page_load", "--seed", "5",
            "--ground-truth", str(truth),
        ],
        env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(BEFORE_S)
        assert sim.poll() is None, (tmp_path / "simulate.log").read_text()[-3000:]
        pid = own_kafka.pid
        assert pid is not None
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        time.sleep(OUTAGE_S)
        own_kafka.start(timeout=120)  # same data dir, same port, same cluster id
        rc = sim.wait(timeout=240)
    finally:
        if sim.poll() is None:
            sim.kill()
        log.close()
    output = (tmp_path / "simulate.log").read_text()
    assert rc == 0, output[-3000:]
    assert "Traceback" not in output
    held = [codec.loads(r.value) for r in read_topic(settings, settings.topic_page_loads)]
    unique = {e["event_id"]: e for e in held}  # a re-send may land twice: counted once
    expected = codec.loads(codec.dumps(settings_rows(list(unique.values()), settings)))
    written = read_truth(truth)
    assert len(written) > 100
    assert written == expected
