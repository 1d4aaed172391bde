"""Local Alertmanager and Prometheus processes (Debian's packages) for tests and `bench`.

Each runs on a free loopback port with its own config and data directory, and says why
when it cannot start (missing binary, early exit with its log tail).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from expmon.errors import ExpmonError

log = logging.getLogger(__name__)


class LocalProcessError(ExpmonError):
    """A local Alertmanager or Prometheus could not be found or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(
    proc: subprocess.Popen[bytes], name: str, grace_s: float = 15.0, group: bool = False
) -> int:
    """SIGTERM, then SIGKILL if it is still running after `grace_s`; its exit code.

    `group`: signal the whole process group (for a child started with
    `start_new_session=True`, whose own children must stop with it).
    """
    return stop_processes([(proc, name)], grace_s, group)[0]


def stop_processes(
    procs: Sequence[tuple[subprocess.Popen[bytes], str]], grace_s: float = 15.0, group: bool = False
) -> list[int]:
    """`stop_process` for several at once: all get SIGTERM together and share one grace
    period (stopping them one after another would add up the graces); their exit codes."""

    def send(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    running = [(proc, name) for proc, name in procs if proc.poll() is None]
    for proc, _name in running:
        send(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc, name in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %s) ignored SIGTERM for %.0f s; killing it", name, proc.pid, grace_s
            )
            send(proc, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    return [proc.wait() for proc, _name in procs]


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise LocalProcessError(
        f"{names[0]} is not installed: run `make install` (Debian packages prometheus, "
        "prometheus-alertmanager)"
    )


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    name: str,
    timeout: float,
    detail: Callable[[], str] = lambda: "",
    poll_s: float = 0.3,
) -> None:
    """Until GET `url` answers 200; LocalProcessError (with `detail()`, e.g. a log tail or
    where the log is) if the process exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalProcessError(f"{name} exited ({proc.returncode}){detail()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(poll_s)
    raise LocalProcessError(f"{name} not ready in {timeout:.0f} s{detail()}")


class _Local:
    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> Any:
        with (self.workdir / f"{self.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        wait_ready(
            f"{self.url}/-/ready",
            self.proc,
            self.name,
            timeout,
            lambda: f":\n{self.log_tail()}",
            poll_s=0.2,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, self.name)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / f"{self.name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def get_json(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        query = urllib.parse.urlencode(params or [])
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=5) as resp:
            return json.loads(resp.read())


class LocalAlertmanager(_Local):
    """Alertmanager with each alert in its own group and no repeats for hours, so each
    notification a webhook receives is a page (or a resolve) of its own."""

    name = "alertmanager"

    def __init__(self, workdir: Path, webhook_url: str | None = None) -> None:
        super().__init__(workdir)
        receiver = "  - name: hook\n"
        if webhook_url:
            receiver += (
                f"    webhook_configs:\n      - url: {webhook_url}\n        send_resolved: true\n"
            )
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(
            "route:\n  receiver: hook\n  group_by: ['...']\n  group_wait: 1s\n"
            "  group_interval: 1s\n  repeat_interval: 4h\nreceivers:\n" + receiver
        )

    def command(self) -> list[str]:
        return [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={self.config}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def alerts(self, *matchers: str) -> list[dict[str, Any]]:
        """Active alerts from Alertmanager's own API, filtered by matchers (`run="x"`)."""
        params = [("filter", m) for m in matchers]
        alerts: list[dict[str, Any]] = self.get_json("/api/v2/alerts", params)
        return alerts


class LocalPrometheus(_Local):
    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        rule_files: list[Path],
        *,
        interval: str = "1s",
        alertmanager_url: str | None = None,
        external_labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": interval,
                "evaluation_interval": interval,
                "external_labels": external_labels or {},
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "expmon", "static_configs": [{"targets": targets}]}],
        }
        if alertmanager_url:
            host = alertmanager_url.split("://", 1)[-1].rstrip("/")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps(config))

    def command(self) -> list[str]:
        return [
            binary("prometheus"),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def api(self, path: str, **params: str) -> Any:
        body = self.get_json(f"/api/v1/{path}", list(params.items()))
        if body.get("status") != "success":
            raise LocalProcessError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result
