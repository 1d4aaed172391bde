"""The merge agent: per-partition window partials into final windows and views.

One agent on the (single-partition) partials topic feeds every family's merge runner,
and the alert runner with the workers' telemetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas import codec
from streams.alerting import AlertRunner
from streams.runner import MergeRunner
from streams.runtime import Runtime

AGENT = "window-partials"
TABLE = "window-merge-state"  # merge state and alert state (stable: names the changelog)


def register(rt: Runtime, runners: Sequence[MergeRunner], alerts: AlertRunner | None) -> None:
    settings = rt.settings

    async def window_partials(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_max_records, settings.batch_within_seconds
        ):
            messages = [codec.loads(e.message.value) for e in events]
            telemetry = [m for m in messages if m.get("kind") == "telemetry"]
            if telemetry and alerts is not None:
                alerts.add_telemetry(telemetry)
            for runner in runners:
                await runner.handle(messages)

    rt.app.agent(rt.topics.partials, name=AGENT, concurrency=1)(window_partials)
