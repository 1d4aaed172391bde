"""`expmon worker --processes N`: the plan of N worker processes and their supervision.

Policy: no silent restarts. If one child exits, the supervisor logs one line naming it
and its exit code, stops the others (SIGTERM, each child's shutdown is bounded) and exits
non-zero, so the service manager (systemd, Kubernetes, docker) that knows the restart
policy restarts the whole set. The children share one consumer group (the app id), so
the group rebalances the partitions over the ones left while that happens.

Start: the children join the consumer group together. Each one sets itself up (imports,
broker checks, topics, the app: seconds, and longer when the first child to finish already
takes a core), writes one byte to a shared "ready" pipe and waits on its own "go" pipe;
when all are ready the supervisor releases them at once (`release_when_ready`). Without
it a child ready seconds before the others took every partition, processed alone, and was
rebalanced as each of the others joined (on a 2-core machine the second joined 4-6 s
late; a broker's 3 s group.initial.rebalance.delay.ms does not cover that).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from expmon.errors import UsageError

log = logging.getLogger(__name__)

# flags the supervisor sets per child; the child's copy of the command line drops them
_PER_CHILD_FLAGS = ("--processes", "--metrics-port", "--start-barrier")
READY = b"r"
GO = b"g"
START_BARRIER_TIMEOUT_SECONDS = 120.0  # a child still not set up by then starts anyway


@dataclass(frozen=True)
class ChildPlan:
    index: int
    metrics_port: int
    state_dir: Path

    def env(self) -> dict[str, str]:
        """EXPMON_* overrides of this child (its own /metrics port and state directory)."""
        return {
            "EXPMON_METRICS_PORT": str(self.metrics_port),
            "EXPMON_STATE_DIR": str(self.state_dir),
        }


def plan_children(processes: int, base_port: int, state_dir: Path) -> list[ChildPlan]:
    """Child i serves /metrics on base_port + i and keeps its state under state_dir/process-i.

    Port 0 (any free port) stays 0 for every child.
    """
    if processes < 1:
        raise UsageError(f"--processes must be at least 1, not {processes}")
    last = base_port + processes - 1
    if base_port != 0 and last > 65535:
        raise UsageError(f"--metrics-port {base_port} + {processes} processes passes port 65535")
    return [
        ChildPlan(
            index=i,
            metrics_port=base_port + i if base_port else 0,
            state_dir=state_dir / f"process-{i}",
        )
        for i in range(processes)
    ]


def child_argv(argv: Sequence[str]) -> list[str]:
    """The command line without the flags the supervisor sets per child.

    Handles both `--flag VALUE` and `--flag=VALUE`.
    """
    out: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg in _PER_CHILD_FLAGS:
            skip_value = True
            continue
        if any(arg.startswith(flag + "=") for flag in _PER_CHILD_FLAGS):
            continue
        out.append(arg)
    return out


def first_exited(children: Sequence[subprocess.Popen[bytes]]) -> int | None:
    """Index of a child that has exited, or None while all run."""
    for i, child in enumerate(children):
        if child.poll() is not None:
            return i
    return None


def barrier_flag(ready_fd: int, go_fd: int) -> list[str]:
    """The child's hidden `--start-barrier READY,GO` (inherited pipe descriptors)."""
    return ["--start-barrier", f"{ready_fd},{go_fd}"]


def parse_barrier(value: str) -> tuple[int, int]:
    """`READY,GO` -> the two descriptors."""
    try:
        ready, go = (int(x) for x in value.split(","))
    except ValueError:
        raise UsageError(f"--start-barrier wants READY_FD,GO_FD, not {value!r}") from None
    return ready, go


def wait_for_release(ready_fd: int, go_fd: int, timeout_s: float) -> bool:
    """In a child, set up and about to join the group: say so, wait for the others.

    True when released; False on a timeout or when the supervisor is gone (EOF): the
    child then starts anyway (a late join costs a rebalance, not correctness).
    """
    try:
        os.write(ready_fd, READY)
    except OSError:
        return False
    finally:
        os.close(ready_fd)
    try:
        readable, _, _ = select.select([go_fd], [], [], timeout_s)
        return bool(readable) and os.read(go_fd, 1) == GO
    finally:
        os.close(go_fd)


def release_when_ready(
    ready_fd: int,
    go_fds: Sequence[int],
    children: Sequence[subprocess.Popen[bytes]],
    timeout_s: float,
    poll_seconds: float = 0.2,
) -> bool:
    """In the supervisor: wait until every child wrote its ready byte, then release all
    at once (and close the pipes). True if all were ready; False if one exited first or
    the timeout passed: the others are released anyway (`supervise` sees the exit)."""
    ready = 0
    deadline = time.monotonic() + timeout_s
    try:
        while ready < len(go_fds) and first_exited(children) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "%d of %d worker processes ready after %.0f s: starting them all",
                    ready, len(go_fds), timeout_s,
                )  # fmt: skip
                break
            readable, _, _ = select.select([ready_fd], [], [], min(poll_seconds, left))
            if readable:
                got = os.read(ready_fd, len(go_fds))
                if not got:  # every child closed its end
                    break
                ready += len(got)
        return ready >= len(go_fds)
    finally:
        for fd in go_fds:
            with contextlib.suppress(OSError):  # that child is gone
                os.write(fd, GO)
            os.close(fd)
        os.close(ready_fd)


def supervise(
    children: Sequence[subprocess.Popen[bytes]],
    stop_grace_seconds: float,
    poll_seconds: float = 0.2,
) -> int:
    """Wait until a child exits or a stop signal arrives; stop all; the exit code to return.

    A stop signal (SIGINT/SIGTERM) is forwarded to every child; exit 0 when all stop cleanly.
    A child exiting by itself is a failure of the set: exit 1 (or its own code).
    """
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping:
            died = first_exited(children)
            if died is not None:
                code = children[died].returncode
                log.error(
                    "worker process %d (pid %d) exited with code %s: stopping the other %d "
                    "(no restart here; the service manager restarts the set)",
                    died,
                    children[died].pid,
                    code,
                    len(children) - 1,
                )
                _stop_all(children, signal.SIGTERM, stop_grace_seconds)
                return code if code else 1
            time.sleep(poll_seconds)
        log.info("signal %d: stopping %d worker processes", stopping[0], len(children))
        codes = _stop_all(children, signal.Signals(stopping[0]), stop_grace_seconds)
        return 0 if all(c in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes) else 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stop_all(
    children: Sequence[subprocess.Popen[bytes]], signum: int, grace_seconds: float
) -> list[int]:
    for child in children:
        if child.poll() is None:
            child.send_signal(signum)
    deadline = time.monotonic() + grace_seconds
    codes: list[int] = []
    for child in children:
        try:
            codes.append(child.wait(timeout=max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            log.warning(
                "worker process pid %d still running after %.0f s: killed", child.pid, grace_seconds
            )
            child.kill()
            codes.append(child.wait())
    return codes
