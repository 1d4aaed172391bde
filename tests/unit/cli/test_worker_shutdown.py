"""The worker's shutdown is bounded: a hung clean stop ends in an exit, not a SIGKILL."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from expmon.cli import worker


class HangingWorker:
    """Stands in for faust.Worker: its signal handlers start a stop that never ends."""

    def __init__(self) -> None:
        self.signals: list[str] = []

    def _on_sigterm(self) -> None:
        self.signals.append("TERM")

    def _on_sigint(self) -> None:
        self.signals.append("INT")


@pytest.mark.parametrize("handler", ["_on_sigterm", "_on_sigint"])
def test_a_shutdown_that_hangs_exits_after_the_grace_period(
    monkeypatch: pytest.MonkeyPatch, handler: str
) -> None:
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> Any:
        codes.append(code)
        exited.set()

    monkeypatch.setattr(worker, "SHUTDOWN_GRACE_SECONDS", 0.05)
    monkeypatch.setattr(worker.os, "_exit", fake_exit)
    bounded = worker._bounded_shutdown(HangingWorker)()
    getattr(bounded, handler)()
    assert bounded.signals == [handler.removeprefix("_on_sig").upper()]  # faust's own stop ran
    assert exited.wait(5), "the grace period passed without an exit"
    assert codes == [0]
