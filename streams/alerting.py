"""The alert processor: the engine fed by final windows and telemetry, and its sinks.

It runs in whichever worker owns the (single) window-partials partition, beside the merge
stage, and keeps its state in the merge stage's table: the worker that takes the
partition over restores the firing alerts and carries on without paging again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from expmon.alerting.engine import AlertEngine, EngineOutput
from expmon.alerting.pipeline import PipelineTelemetry
from expmon.alerting.rules import Rule
from expmon.alerting.sinks import AlertmanagerSink, AlertSink, LogSink, TopicSink
from expmon.engine.merge import ViewResult
from expmon.families.registry import topics_by_family
from streams.runtime import Runtime
from streams.state import TableState

log = logging.getLogger(__name__)


class AlertRunner:
    def __init__(
        self, rt: Runtime, rules: Sequence[Rule], sinks: Sequence[AlertSink], state: TableState
    ) -> None:
        self.rt = rt
        self.engine = AlertEngine(rules, topics_by_family(rt.settings))
        self.telemetry = PipelineTelemetry()
        self.sinks = list(sinks)
        self.state = state
        self.owner = False
        self.lock = asyncio.Lock()
        self._newest: dict[tuple[str, str], int] = {}  # (family, view) -> newest end evaluated
        self._last_write: asyncio.Task[None] | None = None  # alert-state writes, in order

    async def take_ownership(self) -> None:
        """Restore alert state from the table and hand the active set to the sinks."""
        if self.owner:
            return
        stored = list(self.state.items(lambda key: key.startswith("alerts/")))
        self.engine.restore(stored)
        self.telemetry.restore_growth(stored)
        active = self.engine.notifiable()
        for sink in self.sinks:
            await sink.start(active)
        self.owner = True
        firing = sum(1 for i in active if i.state == "firing")
        log.info("alerts: %d rules, %d firing restored", len(self.engine.rules), firing)
        self.rt.metrics.set_firing(self.engine.firing_counts())

    async def stop(self) -> None:
        """At shutdown, before faust flushes its producer: the sinks send what they queued
        (the alerts topic's outbox) within their bounds, then stop."""
        for sink in self.sinks:
            await sink.stop()

    def revoke(self) -> None:
        self.owner = False
        self.telemetry = PipelineTelemetry()
        # like the merge stage: the next owner (maybe us again) restores from the changelog
        self.state.forget(lambda key: key.startswith("alerts/"))
        # The new owner exports the counts now; ours would linger as stale "firing" series.
        self.rt.metrics.alerts_firing.clear()
        for sink in self.sinks:
            if isinstance(sink, AlertmanagerSink):
                sink.replace([])  # the new owner re-sends them

    async def on_results(self, results: Sequence[ViewResult]) -> None:
        async with self.lock:
            await self.take_ownership()
            out = EngineOutput()
            for result in results:
                if self._current(result):
                    out.extend(self.engine.evaluate_view(result))
            written = await self._deliver(out)
        # The merge state moves on only once this alert state is stored (a crash in between
        # re-evaluates these views); waited for outside the lock, so that the pipeline rules
        # are evaluated meanwhile.
        if written is not None:
            await asyncio.wait([written])

    def _current(self, result: ViewResult) -> bool:
        """First emissions always count; a revision only of the newest view evaluated (an
        older one was superseded: re-evaluating it would step alert state back in time)."""
        key = (result.family, result.view)
        newest = self._newest.get(key)
        if newest is None or result.end_ms > newest:
            self._newest[key] = result.end_ms
            return True
        return result.end_ms == newest and result.revision > 0

    def add_telemetry(self, messages: Sequence[dict[str, Any]]) -> None:
        now_ms = int(time.time() * 1000)
        for message in messages:
            self.telemetry.add(message, now_ms)

    async def tick(self) -> None:
        """Evaluate the pipeline rules; never waits for the broker to store their state
        (that is when `KafkaUnreachable` must fire)."""
        if not self.owner:
            return
        async with self.lock:
            out = self.engine.evaluate_pipeline(self.telemetry, int(time.time() * 1000))
            out.writes.update(self.telemetry.growth_writes())
            await self._deliver(out)

    async def _deliver(self, out: EngineOutput) -> asyncio.Task[None] | None:
        """Notify the sinks now; store the alert state after every earlier write (the task
        that does it, None when nothing changed)."""
        if out.transitions:
            for sink in self.sinks:
                await sink.notify(out.transitions)
            self.rt.metrics.set_firing(self.engine.firing_counts())
        if not (out.writes or out.deletes):
            return None
        task = asyncio.ensure_future(self._write_after(self._last_write, out))
        task.add_done_callback(_log_write_failure)
        self._last_write = task
        return task

    async def _write_after(self, previous: asyncio.Task[None] | None, out: EngineOutput) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # order only: its failure is logged by itself
        await self.state.apply(0, out.writes, out.deletes)


def _log_write_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("alerts: storing alert state failed: %s", task.exception())


def build_sinks(rt: Runtime) -> list[AlertSink]:
    settings = rt.settings
    count = rt.metrics.count_notifications
    sinks: list[AlertSink] = [LogSink(count)]

    async def send(key: bytes, value: bytes) -> Any:
        return await rt.topics.alerts.send(key=key, value=value)

    sinks.append(TopicSink(send, count))
    if settings.alertmanager_urls:
        generator = (
            settings.external_url or f"http://{settings.metrics_host}:{settings.metrics_port}"
        )
        sinks.append(
            AlertmanagerSink(
                settings.alertmanager_urls,
                resend_seconds=settings.alert_resend_seconds,
                expiry_seconds=settings.alert_expiry_seconds,
                generator_url=generator,
                count=count,
            )
        )
    return sinks
