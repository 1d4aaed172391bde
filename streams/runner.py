"""Glue between a faust agent and a stage: restore on assignment, process, publish in order.

Order of publication per batch: dead letters and window partials are sent and flushed
before the state checkpoint is written, and faust commits input offsets only after the
batch is done (and flushes the producer first). A crash at any point therefore repeats
work (idempotently: records at or below the checkpointed offset are skipped, partials
overwrite themselves) and never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from expmon.engine.merge import MergeOutput, WindowMerger
from expmon.engine.stage import RawRecord, StageOutput, WindowedStage
from expmon.engine.windows import partition_of_state_key
from schemas import codec
from streams.alerting import AlertRunner
from streams.runtime import Runtime
from streams.state import TableState

log = logging.getLogger(__name__)


class StageRunner:
    def __init__(self, runtime: Runtime, stage: WindowedStage[Any], state: TableState) -> None:
        self.runtime = runtime
        self.stage = stage
        self.state = state
        self.lock = asyncio.Lock()
        self.outcomes: dict[str, int] = {}
        self.last_telemetry = 0.0
        self.last_applied_wall = time.monotonic()  # when a record was last applied

    def _restore(self, partition: int) -> None:
        items = list(self.state.items(lambda key: partition_of_state_key(key) == partition))
        self.stage.assign(partition, items)
        windows = self.stage.partitions[partition]
        log.info(
            "%s[%d]: state restored (%d entries, applied offset %d, watermark %s, %d open windows)",
            self.stage.topic,
            partition,
            len(items),
            windows.offset,
            windows.watermark_ms,
            len(windows.windows),
        )

    async def handle(self, records: list[RawRecord]) -> None:
        async with self.lock:
            for partition in {r.partition for r in records} - self.stage.partitions.keys():
                self._restore(partition)
            out = self.stage.process(records)
            self.last_applied_wall = time.monotonic()
            await self._publish(out)

    async def tick(
        self,
        assigned: set[int] | None,
        idle: Mapping[int, int] | None = None,
        highwater: dict[int, int | None] | None = None,
    ) -> None:
        """Sync the assignment, send telemetry, show idle partitions up to their frontier.

        `assigned` is None while a rebalance is under way (nothing is synced or shown);
        `idle` maps broker-verified idle partitions to their frontier (see streams.health).
        """
        async with self.lock:
            if assigned is not None and highwater is not None:
                await self._send_telemetry(highwater)
            if assigned is not None:
                for partition in sorted(assigned - self.stage.partitions.keys()):
                    self._restore(partition)
                for partition in sorted(self.stage.partitions.keys() - assigned):
                    self.revoke(partition)
                if idle:
                    await self._publish(self.stage.tick(idle))

    async def _send_telemetry(self, highwater: dict[int, int | None]) -> None:
        """Input health for the alert engine: high-water marks, outcomes, tracking."""
        now = time.time()
        if now - self.last_telemetry < self.runtime.settings.telemetry_interval_seconds:
            return
        self.last_telemetry = now
        message: dict[str, Any] = {
            "family": str(self.stage.family),
            "kind": "telemetry",
            "topic": self.stage.topic,
            "highwater": {str(p): mark for p, mark in highwater.items()},
            "outcomes": self.outcomes,
        }
        tracking = getattr(self.stage, "tracking_by_partition", None)
        if tracking is not None:
            message["tracking"] = {
                str(p): {c: list(pair) for c, pair in per.items()} for p, per in tracking().items()
            }
        self.outcomes = {}
        await self.runtime.topics.partials.send(
            key=message["family"].encode(), value=codec.dumps(message)
        )

    async def revoke_partitions(self, partitions: set[int]) -> None:
        async with self.lock:
            for partition in sorted(partitions & self.stage.partitions.keys()):
                self.revoke(partition)

    def revoke(self, partition: int) -> None:
        self.stage.revoke(partition)
        self.state.forget(lambda key: partition_of_state_key(key) == partition)
        log.info("%s[%d]: revoked", self.stage.topic, partition)

    async def _publish(self, out: StageOutput) -> None:
        rt = self.runtime
        metrics = rt.metrics
        topic = self.stage.topic
        metrics.count_outcomes(topic, out.counts)
        for outcome, n in out.counts.items():
            if n:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        for letter in out.dead_letters:
            metrics.dead_letters.labels(topic, letter.reason).inc()
            await rt.topics.dlq.send(key=letter.key, value=letter.value, headers=letter.headers)
        for partial in out.partials:
            await rt.topics.partials.send(
                key=partial["family"].encode(), value=codec.dumps(partial)
            )
        if out.dead_letters or out.partials:
            await rt.flush()
        writes = 0
        for partition, checkpoint in sorted(out.checkpoints.items()):
            writes += await self.state.apply_checkpoint(partition, checkpoint)
        if writes:
            metrics.state_writes.labels(str(self.stage.family)).inc(writes)

    def applied_offset(self, partition: int) -> int:
        windows = self.stage.partitions.get(partition)
        return -1 if windows is None else windows.offset


class MergeRunner:
    def __init__(
        self,
        runtime: Runtime,
        merger: WindowMerger[Any],
        state: TableState,
        alerts: AlertRunner | None = None,
    ) -> None:
        self.runtime = runtime
        self.merger = merger
        self.state = state
        self.alerts = alerts  # evaluates each final view (None: alerting off)
        self.restored = False
        self.lock = asyncio.Lock()

    def _restore(self) -> None:
        self.merger.restore(self.state.items())
        self.restored = True
        log.info(
            "merge[%s]: state restored (final through %s, %d pending windows)",
            self.merger.family,
            self.merger.final_through,
            len(self.merger.pending),
        )

    async def handle(self, messages: list[dict[str, Any]]) -> None:
        async with self.lock:
            if not self.restored:
                self._restore()
            await self._publish(self.merger.apply(messages))

    def revoke(self) -> None:
        self.restored = False
        self.state.forget(lambda key: key.startswith(self.merger.family + "/"))

    def log_status(self) -> None:
        """Where emission stands and which partitions hold it back (an honest log line)."""
        if not self.restored:
            return
        m = self.merger

        def at(ms: int | None) -> str:
            return "-" if ms is None else time.strftime("%H:%M:%S", time.gmtime(ms / 1000))

        marks = {p: (m.progress.get(p), m.provisional.get(p)) for p in range(m.partitions or 0)}
        lowest = sorted(marks, key=lambda p: max(x for x in (*marks[p], -1) if x is not None))
        behind = ", ".join(
            f"{p} (data {at(marks[p][0])}, shown {at(marks[p][1])})" for p in lowest[:3]
        )
        log.info(
            "merge[%s]: views through %s, settled through %s, %d correctable; lowest: %s",
            m.family,
            at(m.final_through),
            at(m.settled_through()),
            len(m.correctable),
            behind or "no progress yet",
        )

    async def _publish(self, out: MergeOutput) -> None:
        rt = self.runtime
        for result in out.results:
            await rt.topics.windows.send(
                key=result.record_key.encode(), value=codec.dumps(result.to_dict())
            )
            rt.metrics.board.update(result)
            if result.revision:
                rt.metrics.window_revisions.labels(result.family).inc()
            else:
                rt.metrics.windows_final.labels(result.family, result.view).inc()
        expired = out.sealed_unsettled + out.expired_partials
        if expired:
            rt.metrics.corrections_expired.labels(self.merger.family).inc(expired)
        if out.results:
            await rt.flush()
            # Before the merge state moves on: a crash in between re-evaluates these views.
            if self.alerts is not None:
                await self.alerts.on_results(out.results)
        await self.state.apply(0, out.writes, out.deletes)


def register_stage(
    rt: Runtime, stage: WindowedStage[Any], agent_name: str, table_name: str
) -> StageRunner:
    """The stage's input topic on the bulk path (streams.consumer) and its state table.

    No agent: the topic is subscribed through the conductor, and the consumer hands each
    fetched partition batch to the runner in one call (`agent_name` names it in logs).
    """
    topic = rt.app.topic(stage.topic, key_serializer="raw", value_serializer="raw")
    # Same partition count as the input: faust then assigns changelog partition p with
    # input partition p, which is where stage 1 writes the state of partition p.
    table = rt.app.Table(
        table_name, partitions=stage.source_partitions, key_type=bytes, value_type=bytes
    )
    runner = StageRunner(rt, stage, TableState(table))
    limit = rt.settings.batch_max_records

    async def process(records: Sequence[Any]) -> None:
        raw = [RawRecord(r.partition, r.offset, r.key, r.value, r.timestamp) for r in records]
        for start in range(0, len(raw), limit):
            await runner.handle(raw[start : start + limit])

    rt.app.topics.add(topic)
    rt.app.bulk_handlers[stage.topic] = process
    log.debug("%s: stage %s on the bulk path", stage.topic, agent_name)
    return runner
