"""Run `expmon collect` as a real subprocess for tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from expmon.local.procs import free_port, stop_process, wait_ready
from expmon.settings import Settings
from tests.integration.worker_process import settings_env


class CollectorProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"collect_port": self.port})
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> CollectorProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "expmon.cli", "collect"],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_ready(
            f"{self.url}/healthz", self.proc, "collector", timeout, lambda: f":\n{self.log_tail()}"
        )
        return self

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        if self.proc is None:
            return 0
        return stop_process(self.proc, "collector", grace_s=30)
