"""Pure parts of `expmon worker --processes N`: per-child ports, state dirs, command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from expmon.cli.supervise import child_argv, plan_children, supervise
from expmon.errors import UsageError


@pytest.mark.parametrize(
    ("processes", "base", "ports"),
    [
        (1, 9477, [9477]),
        (2, 9477, [9477, 9478]),
        (3, 65533, [65533, 65534, 65535]),
        (2, 0, [0, 0]),  # any free port, for each child
    ],
)
def test_each_child_gets_base_port_plus_index(processes: int, base: int, ports: list[int]) -> None:
    plans = plan_children(processes, base, Path("/s"))
    assert [p.metrics_port for p in plans] == ports
    assert [p.state_dir for p in plans] == [Path(f"/s/process-{i}") for i in range(processes)]


@pytest.mark.parametrize(("processes", "base"), [(0, 9477), (-1, 9477), (3, 65534)])
def test_impossible_plans_are_usage_errors(processes: int, base: int) -> None:
    with pytest.raises(UsageError):
        plan_children(processes, base, Path("/s"))


def test_child_env_names_its_port_and_state_dir() -> None:
    (plan,) = plan_children(1, 9000, Path("/s"))
    assert plan.env() == {"EXPMON_METRICS_PORT": "9000", "EXPMON_STATE_DIR": "/s/process-0"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["worker", "--processes", "2"], ["worker"]),
        (["--bootstrap", "b:9092", "worker", "--processes=2"], ["--bootstrap", "b:9092", "worker"]),
        (
            ["worker", "--metrics-port", "9500", "--processes", "3", "--app-id", "x"],
            ["worker", "--app-id", "x"],
        ),
        (["worker", "--metrics-port=9500", "--rules", "r.yml"], ["worker", "--rules", "r.yml"]),
        (["worker", "--metrics-host", "0.0.0.0"], ["worker", "--metrics-host", "0.0.0.0"]),
    ],
)
def test_child_argv_drops_the_per_child_flags(argv: list[str], expected: list[str]) -> None:
    assert child_argv(argv) == expected


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_child_that_dies_stops_the_others_with_a_non_zero_exit() -> None:
    sleeper = _child("import time; time.sleep(60)")
    dying = _child("raise SystemExit(3)")
    assert supervise([sleeper, dying], stop_grace_seconds=10, poll_seconds=0.05) == 3
    assert sleeper.returncode is not None  # stopped, not left behind
