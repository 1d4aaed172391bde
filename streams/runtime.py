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

    async def flush(self) -> None:
        """Until the broker has everything sent so far."""
        await self.app.producer.flush()

    def ready(self) -> bool:
        app = self.app
        return bool(
            app.consumer is not None
            and not app.rebalancing
            and not getattr(app, "in_recovery", False)
            and app.consumer.assignment()
        )
