"""A real Alertmanager (Debian's prometheus-alertmanager) for tests, with a webhook receiver
that records every notification it sends."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.worker_process import free_port


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(
        "Alertmanager is not installed: run `make install` (Debian package prometheus-alertmanager)"
    )


class WebhookReceiver:
    """Collects Alertmanager webhook notifications: one entry per alert per notification."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.notifications.extend(body["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, run: str) -> list[dict[str, Any]]:
        with self.lock:
            return [n for n in self.notifications if n["labels"].get("run") == run]

    def close(self) -> None:
        self.server.shutdown()


class LocalAlertmanager:
    def __init__(self, workdir: Path, receiver: WebhookReceiver) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "alertmanager.yml"
        # Every alert its own group and no repeats within the test: each notification the
        # receiver sees is a real new page (or resolve), so duplicates are countable.
        self.config.write_text(
            "route:\n"
            "  receiver: hook\n"
            "  group_by: ['...']\n"
            "  group_wait: 1s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 4h\n"
            "receivers:\n"
            "  - name: hook\n"
            "    webhook_configs:\n"
            f"      - url: {receiver.url}\n"
            "        send_resolved: true\n"
        )

    def start(self, timeout: float = 30.0) -> LocalAlertmanager:
        log = (self.workdir / "alertmanager.log").open("ab")
        self.proc = subprocess.Popen(
            [
                alertmanager_binary(),
                f"--config.file={self.config}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"alertmanager not ready in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None

    def log_tail(self) -> str:
        path = self.workdir / "alertmanager.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:])

    def alerts(self, run: str) -> list[dict[str, Any]]:
        """Active alerts of one test run, from Alertmanager's own API."""
        query = urllib.parse.urlencode({"filter": f'run="{run}"'})
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as resp:
            alerts: list[dict[str, Any]] = json.loads(resp.read())
        return alerts
