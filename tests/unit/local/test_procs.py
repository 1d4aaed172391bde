"""Stopping child processes: SIGTERM to all at once, SIGKILL for whoever ignores it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from expmon.local.procs import stop_processes

# Writes its marker file on SIGTERM; `ignore` keeps running after it, otherwise exits 0.
CHILD = """
import signal, sys, time
marker, ignore = sys.argv[1], sys.argv[2] == "ignore"
def on_term(signum, frame):
    open(marker, "w").close()
    if not ignore:
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(marker + ".ready", "w").close()
while True:
    time.sleep(0.05)
"""


def spawn(tmp_path: Path, name: str, ignore: bool) -> tuple[subprocess.Popen[bytes], Path]:
    marker = tmp_path / name
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), "ignore" if ignore else "obey"],
        start_new_session=True,
    )
    ready = tmp_path / f"{name}.ready"
    for _ in range(200):
        if ready.exists():
            break
        time.sleep(0.05)
    return proc, marker


def test_every_child_gets_sigterm_and_the_stubborn_one_is_killed(tmp_path: Path) -> None:
    stubborn, stubborn_marker = spawn(tmp_path, "stubborn", ignore=True)
    polite, polite_marker = spawn(tmp_path, "polite", ignore=False)

    codes = stop_processes([(stubborn, "stubborn"), (polite, "polite")], grace_s=1, group=True)

    assert codes == [-signal.SIGKILL, 0]
    assert stubborn_marker.exists() and polite_marker.exists()  # both were asked first


def test_a_child_that_already_exited_keeps_its_code(tmp_path: Path) -> None:
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    done.wait()
    polite, _ = spawn(tmp_path, "polite", ignore=False)

    assert stop_processes([(done, "done"), (polite, "polite")], grace_s=5) == [3, 0]
