"""Pure parts of `expmon worker --processes N`: per-child ports, state dirs, command line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from expmon.cli.supervise import (
    barrier_flag,
    child_argv,
    parse_barrier,
    plan_children,
    release_when_ready,
    supervise,
    wait_for_release,
)
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


class FakeChild:
    def __init__(self, code: int | None = None) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode


def test_the_barrier_flag_is_a_per_child_flag() -> None:
    assert parse_barrier(barrier_flag(5, 7)[1]) == (5, 7)
    assert child_argv(["worker", "--start-barrier", "5,7", "--processes", "2"]) == ["worker"]
    with pytest.raises(UsageError):
        parse_barrier("5")


def test_children_are_released_together_once_all_are_ready() -> None:
    ready_r, ready_w = os.pipe()
    gos = [os.pipe() for _ in range(2)]
    children: Any = [FakeChild(), FakeChild()]
    results: list[bool] = []
    ends = [os.dup(ready_w), os.dup(ready_w)]  # each child's inherited copy
    os.close(ready_w)

    def child(ready: int, go_r: int) -> None:
        results.append(wait_for_release(ready, go_r, timeout_s=10))

    first = threading.Thread(target=child, args=(ends[0], gos[0][0]))
    first.start()
    time.sleep(0.3)
    assert results == []  # the first waits for the second
    second = threading.Thread(target=child, args=(ends[1], gos[1][0]))
    second.start()
    assert release_when_ready(ready_r, [w for _, w in gos], children, timeout_s=10)
    first.join(5)
    second.join(5)
    assert results == [True, True]


def test_a_child_that_exits_before_ready_releases_the_others() -> None:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    children: Any = [FakeChild(), FakeChild(code=3)]
    os.write(ready_w, b"r")  # one ready, the other exited
    started = time.monotonic()
    assert not release_when_ready(ready_r, [go_w], children, timeout_s=10)
    assert time.monotonic() - started < 2
    assert os.read(go_r, 1) == b"g"  # released anyway
    os.close(go_r)
    os.close(ready_w)


def test_a_timeout_releases_and_a_child_without_supervisor_starts_anyway() -> None:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    children: Any = [FakeChild()]
    assert not release_when_ready(ready_r, [go_w], children, timeout_s=0.3)
    assert os.read(go_r, 1) == b"g"
    os.close(go_r)
    # the supervisor gone: its end of "go" closed, the child reads EOF and goes on
    go_r, go_w = os.pipe()
    os.close(go_w)
    assert not wait_for_release(ready_w, go_r, timeout_s=5)
