"""`expmon simulate` through a 60 s broker outage, run in the background.

The broker (its own) is SIGKILLed mid-run and restarted on the same data dir and port; the
simulator should ride it out and exit 0. A thread does the whole run and reads back what
the broker holds, then stops the broker; test_simulate_outage asserts on the result.

Most of the run is waiting (the outage), so the session fixture `simulate_outage` starts it
from the two-minute broker outage test (test_event_time_faults), whose own wait it then
shares: the two outages, each on a broker of its own, overlap instead of adding up.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.local.kafka.broker import LocalKafka
from expmon.local.procs import free_port
from expmon.settings import Settings, default_cache_dir
from schemas import codec
from tests.integration.worker_process import read_topic, settings_env

OUTAGE_S = 60
BEFORE_S = 10  # traffic before the kill
# the run outlasts the outage and the broker's restart (about 10 s): traffic after it too
SIM_S = BEFORE_S + OUTAGE_S + 20


@dataclass
class SimOutageRun:
    """What happened: the simulator's exit status and log, what the broker held after."""

    alive_at_kill: bool = False
    returncode: int | None = None
    output: str = ""
    held: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""  # the harness's own failure (broker start, read back), if any


class SimOutage:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.truth = tmp / "truth.json"
        self.log_path = tmp / "simulate.log"
        self.run = SimOutageRun()
        self.settings: Settings | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> SimOutage:
        self.thread.start()
        return self

    def result(self, timeout: float = 600.0) -> SimOutageRun:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the simulate outage run did not finish"
        return self.run

    def _main(self) -> None:
        kafka = LocalKafka(
            default_cache_dir(), data_dir=self.tmp / "kafka", port=free_port(),
            controller_port=free_port(),
        )  # fmt: skip
        try:
            kafka.start(timeout=120)
            self._outage(kafka)
            assert self.settings is not None
            self.run.held = [
                codec.loads(r.value) for r in read_topic(self.settings, "page-loads-outage")
            ]
        except Exception as exc:  # reported by the test, with the broker's log
            self.run.error = f"{type(exc).__name__}: {exc}\n{kafka.log_tail()}"
        finally:
            kafka.stop()

    def _outage(self, kafka: LocalKafka) -> None:
        self.settings = settings = Settings.from_env(
            kafka_bootstrap=kafka.bootstrap, topic_page_loads="page-loads-outage",
            topic_partitions=3, sim_delivery_timeout_seconds=150,
        )  # fmt: skip
        reports = ensure_topics(settings, default_topic_specs(settings))
        assert all(r.ok for r in reports), reports
        with self.log_path.open("wb") as log:
            sim = subprocess.Popen(
                [
                    sys.executable, "-m", "expmon.cli", "simulate", "--rate", "100",
                    "--duration", str(SIM_S), "--families", "page_load", "--seed", "5",
                    "--ground-truth", str(self.truth),
                ],
                env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            time.sleep(BEFORE_S)
            self.run.alive_at_kill = sim.poll() is None
            kafka.kill()  # SIGKILL, as a crash would; same data dir and port for the restart
            time.sleep(OUTAGE_S)
            kafka.start(timeout=120)
            self.run.returncode = sim.wait(timeout=240)
        finally:
            if sim.poll() is None:
                sim.kill()
                sim.wait(10)
            self.run.output = self.log_path.read_text(errors="replace")
