"""`expmon demo` as a new user runs it: its own Kafka, the incident on screen, nothing left."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from expmon.local.procs import free_port

# The acceptance bound: slow pages on screen within 2 minutes of start. The watch lasts
# a little longer than the worst phase of the minute needs (~110 s).
WITHIN_S = 120.0
WATCH_S = 115


def _processes_with_env(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if marker.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_demo_shows_slow_pages_within_two_minutes_and_leaves_no_process(tmp_path: Path) -> None:
    port = free_port()
    # A user's shell: no EXPMON_* from the test session, so the demo starts its own Kafka.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPMON_")}
    env["COLUMNS"] = "160"
    output = tmp_path / "demo.out"
    cmd = [sys.executable, "-m", "expmon.cli", "demo", "--duration", str(WATCH_S),
           "--metrics-port", str(port)]  # fmt: skip
    started = time.monotonic()
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    first_slow: float | None = None
    try:
        while proc.poll() is None and time.monotonic() - started < WATCH_S + 120:
            if first_slow is None and re.search(
                r"slow pages: p95 \S+s .* eu-west", output.read_text(errors="replace")
            ):
                first_slow = time.monotonic() - started
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = output.read_text(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert first_slow is not None, text[-3000:]
    assert first_slow <= WITHIN_S, f"slow pages first shown {first_slow:.0f} s after start"
    # only the incident's region is slow
    slow_regions = set(re.findall(r"slow pages: .* on \S+ \S+ (\S+) in the last", text))
    assert slow_regions == {"eu-west"}, slow_regions

    # nothing left behind: the broker (its pid is logged) and every child of the demo
    kafka = re.search(r"local Kafka 4\.1\.1 ready at \S+ \(pid (\d+)\)", text)
    assert kafka is not None, text[:2000]
    assert not Path(f"/proc/{kafka[1]}").exists(), "the demo's Kafka is still running"
    assert _processes_with_env(f"EXPMON_METRICS_PORT={port}") == []
