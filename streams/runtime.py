"""What the agents of one worker share, built whole before any agent exists.

Nothing here is filled in later: the composition root (`app.py`) makes the faust app and
the topics first, then the runtime, then the runners that hold it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from expmon.exposition.metrics import Metrics
from expmon.settings import Settings
from streams.health import BrokerProbe


@dataclass(frozen=True)
class Topics:
    """The output topics of a worker (faust topics: `await topic.send(...)`)."""

    dlq: Any
    partials: Any  # window partials, progress and telemetry, read by the merge stage
    windows: Any
    alerts: Any


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    metrics: Metrics
    app: Any  # the faust app (its producer, consumer and rebalance state)
    topics: Topics
    source_partitions: Mapping[str, int]  # input topic -> partition count
    live: bool = True
    started_wall: float = field(default_factory=time.time)
    probe: BrokerProbe = field(default_factory=BrokerProbe)  # filled by the probe timer
    stalled: set[str] = field(default_factory=set)  # input topics with lag and no progress

    async def flush(self) -> None:
        """Until the broker has everything sent so far."""
        await self.app.producer.flush()

    def ready(self) -> bool:
        """The assignment is settled: consuming, not rebalancing or recovering."""
        app = self.app
        return bool(
            app.consumer is not None
            and not app.rebalancing
            and not getattr(app, "in_recovery", False)
            and app.consumer.assignment()
        )

    def readiness(self) -> tuple[bool, str]:
        """Ready to serve true figures, and why not (for /readyz)."""
        app = self.app
        now = time.monotonic()
        if app.consumer is None or not app.consumer.assignment():
            return False, "no partitions assigned yet"
        if app.rebalancing or getattr(app, "in_recovery", False):
            return False, "rebalancing or restoring state"
        if not self.probe.reachable(now):
            return False, f"broker unreachable for {self.probe.unreachable_seconds(now):.0f} s"
        if self.stalled:
            return False, "not consuming: lag on " + ", ".join(sorted(self.stalled))
        return True, "consuming"
