"""The composition root of a worker: the faust app, its topics, one stage agent per
registered family, the merge agent, alerting, the tick and the HTTP endpoints.

Order matters and is the point of this module: app and topics first, then the runtime
(immutable), then the runners that hold it, then the agents that drive them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import KafkaError
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from expmon.alerting.rules import Rule
from expmon.exposition.metrics import Metrics
from expmon.families.registry import FAMILIES
from expmon.kafka import connection
from expmon.settings import Settings
from streams import http, window_partials
from streams.alerting import AlertRunner, build_sinks
from streams.consumer import BulkHandler, BulkTransport
from streams.runner import MergeRunner, StageRunner, register_stage
from streams.runtime import Runtime, Topics
from streams.state import TableState

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
PROBE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 5.0
STALL_SECONDS = 30.0  # lag on the broker and nothing applied this long: not consuming
STATUS_SECONDS = 30.0  # how often the merge owner logs where emission stands


@dataclass(frozen=True)
class Worker:
    """A worker's runtime and its runners, all built before the app starts."""

    runtime: Runtime
    stages: tuple[StageRunner, ...]  # one per registered family
    merges: tuple[MergeRunner, ...]  # one per registered family, in the merge agent
    alerts: AlertRunner | None  # None: alerting off (`rules=None`)

    @property
    def app(self) -> Any:
        return self.runtime.app


class KeepQueuedOnResume(FlowControlEvent):
    """faust's flow control, except that resuming a flow that is already running drops
    nothing.

    Every assignment resumes flow twice: once to read the changelogs, and again at the
    end of recovery, after the input partitions were resumed and seeked to the committed
    offsets. The stock `resume()` clears every stream queue each time, so the second one
    throws away records the consumer fetched after that seek: its position is already
    past them and nothing fetches them again. The worker silently skipped those offsets
    (events missing after a restart or a rebalance, and the commit stuck below them).

    Clearing is only right when flow comes back from a suspension, which faust does on
    revocation (where it also clears the queues itself). Records fetched before the seek
    may now arrive twice: the stages skip applied offsets and the merge overwrites by key
    (pipeline telemetry may count a repeat, as after any redelivery).
    """

    def resume(self) -> None:
        if self.is_active():
            return
        super().resume()


class ExpmonApp(faust.App):
    """faust.App with `KeepQueuedOnResume` as its flow control and the bulk consumer
    (streams.consumer) for the stages' input topics."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepQueuedOnResume(loop=self.loop)

    @cached_property
    def bulk_handlers(self) -> dict[str, BulkHandler]:
        return {}

    def _new_transport(self) -> Any:
        return BulkTransport(self.conf.broker_consumer, self)


def new_faust_app(settings: Settings) -> Any:
    datadir = settings.state_dir / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    return ExpmonApp(
        settings.app_id,
        broker=connection.faust_brokers(settings),
        broker_credentials=connection.faust_credentials(settings),
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        # resolved at start (expmon.kafka.admin.replication_factor): checkpoints must
        # survive a broker loss on a real cluster
        topic_replication_factor=settings.replication_factor or 1,
        topic_partitions=1,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 3),
        # dead letters carry whole oversize records (up to the broker's limit) plus headers
        producer_max_request_size=4 * 1024 * 1024,
        consumer_auto_offset_reset="earliest",
        **connection.faust_consumer_tuning(settings),
        stream_buffer_maxsize=8192,
        table_standby_replicas=0,
        datadir=str(datadir),
    )


def _raw_topic(app: Any, name: str, **kwargs: Any) -> Any:
    return app.topic(name, key_serializer="raw", value_serializer="raw", **kwargs)


def build_worker(
    settings: Settings,
    metrics: Metrics,
    source_partitions: dict[str, int],
    live: bool = True,
    rules: list[Rule] | None = None,
) -> Worker:
    """The faust app with every processor; `rules=None` runs without alerting."""
    app = new_faust_app(settings)
    topics = Topics(
        dlq=_raw_topic(app, settings.topic_dlq),
        partials=_raw_topic(app, settings.topic_window_partials, partitions=1),
        windows=_raw_topic(app, settings.topic_windows),
        alerts=_raw_topic(app, settings.topic_alerts),
    )
    rt = Runtime(settings, metrics, app, topics, source_partitions, live=live)
    stages = []
    for family in FAMILIES:
        stage = family.new_stage(settings, source_partitions[family.topic(settings)], live=live)
        metrics.attach(stage)
        stages.append(register_stage(rt, stage, agent_name=family.agent, table_name=family.table))
    # The merge stage and the alert engine share one changelogged table (alert state moves
    # with the merge partition to its next owner).
    merge_state = TableState(
        app.Table(window_partials.TABLE, partitions=1, key_type=bytes, value_type=bytes)
    )
    alerts = None if rules is None else AlertRunner(rt, rules, build_sinks(rt), merge_state)
    merges = tuple(
        MergeRunner(rt, family.new_merger(settings), merge_state, alerts) for family in FAMILIES
    )
    window_partials.register(rt, merges, alerts)
    worker = Worker(rt, tuple(stages), merges, alerts)

    async def tick() -> None:
        await _tick(worker)

    async def tick_alerts() -> None:
        await _tick_alerts(worker)

    async def probe() -> None:
        await _probe(worker)

    async def export_lags() -> None:
        _export_lags(worker)

    async def merge_status() -> None:
        for merge in worker.merges:
            merge.log_status()

    # Separate timers, not one: stage ticks may wait on the broker, the probe waits at most
    # PROBE_TIMEOUT_SECONDS, and pipeline rules must run whatever the broker does.
    app.timer(TICK_SECONDS)(tick)
    app.timer(TICK_SECONDS)(tick_alerts)
    app.timer(PROBE_SECONDS)(probe)
    app.timer(TICK_SECONDS)(export_lags)
    app.timer(STATUS_SECONDS)(merge_status)

    async def serve_http() -> None:
        await http.serve(rt, alerts)

    app.task(serve_http)

    async def on_revoked(_sender: Any, revoked: set[Any], **_kwargs: Any) -> None:
        # Drop a revoked partition's in-memory state now, not at the next tick: if it comes
        # back between two ticks, another worker may have moved it on meanwhile, and the
        # state must come from the changelog (faust re-reads it on every assignment).
        for stage_runner in worker.stages:
            gone = {tp.partition for tp in revoked if tp.topic == stage_runner.stage.topic}
            if gone:
                await stage_runner.revoke_partitions(gone)
        if any(tp.topic == settings.topic_window_partials for tp in revoked):
            for runner in worker.merges:
                runner.revoke()
            if worker.alerts is not None:
                worker.alerts.revoke()

    app.on_partitions_revoked.connect(on_revoked)

    async def stop_alert_sinks(_sender: Any, **_kwargs: Any) -> None:
        if worker.alerts is not None:
            await worker.alerts.stop()

    app.on_before_shutdown.connect(stop_alert_sinks)
    return worker


async def _probe(worker: Worker) -> None:
    """Ask the broker for the input partitions' high-water marks, never waiting long.

    One question at a time: while the broker is away a question can hang for the client's
    request timeout, and piling them up would only queue more.
    """
    rt = worker.runtime
    app = rt.app
    consumer = app.consumer
    now = time.monotonic()
    inputs = {runner.stage.topic for runner in worker.stages}
    if consumer is None:
        return
    tps = [tp for tp in consumer.assignment() if tp.topic in inputs]
    rt.probe.forget({(tp.topic, tp.partition) for tp in tps})
    if not tps:
        return
    try:
        marks = await asyncio.wait_for(consumer.highwaters(*tps), PROBE_TIMEOUT_SECONDS)
    except (TimeoutError, KafkaError, OSError) as exc:
        if rt.probe.first_failure is None:
            log.warning(
                "broker did not answer within %.0f s (%s): windows wait, nothing is lost",
                PROBE_TIMEOUT_SECONDS,
                type(exc).__name__,
            )
        rt.probe.failed(now)
    else:
        if not rt.probe.reachable(now) and rt.probe.last_ok is not None:
            log.info("broker answers again (away %.0f s)", rt.probe.unreachable_seconds(now))
        rt.probe.record({(tp.topic, tp.partition): mark for tp, mark in marks.items()}, now)
    rt.metrics.kafka_reachable.set(1 if rt.probe.reachable(time.monotonic()) else 0)


def _applied_offsets(runner: StageRunner, assignment: Iterable[Any]) -> dict[int, int]:
    """The stage's assigned input partitions, ascending, each with the offset it applied."""
    topic = runner.stage.topic
    partitions = sorted(tp.partition for tp in assignment if tp.topic == topic)
    return {p: runner.applied_offset(p) for p in partitions}


async def _tick(worker: Worker) -> None:
    """Sync assignment, show broker-verified idle partitions early (lags: `_export_lags`).

    Runs on its own timer, apart from the alert tick: publishing may wait on the broker.
    """
    rt = worker.runtime
    app = rt.app
    settings = rt.settings
    settled = rt.ready()
    assignment = app.consumer.assignment() if app.consumer is not None else set()
    now = time.monotonic()
    wall = time.time()
    frontier = int(wall * 1000) - settings.lateness_ms
    idle_after = settings.idle_partition_timeout_seconds
    for runner in worker.stages:
        topic = runner.stage.topic
        applied = _applied_offsets(runner, assignment)
        partitions = list(applied)
        idle = {
            p: frontier
            for p, offset in applied.items()
            if settled and rt.probe.idle((topic, p), offset, idle_after, now)
        }
        highwater = {p: rt.probe.marks.get((topic, p)) for p in partitions}
        reachable = rt.probe.reachable(now)
        await runner.tick(
            set(partitions) if settled else None, idle, highwater if settled and reachable else None
        )


def _export_lags(worker: Worker) -> None:
    """Watermark and consumer lag, and stall detection, on a timer of their own: a stage
    tick may wait on the broker (a batch holds its lock while flushing to it), and these
    must move meanwhile, outages above all. Reads only; never awaits."""
    rt = worker.runtime
    consumer = rt.app.consumer
    assignment = consumer.assignment() if consumer is not None else set()
    settled = rt.ready()
    now = time.monotonic()
    wall = time.time()
    reachable = rt.probe.reachable(now)
    for runner in worker.stages:
        topic = runner.stage.topic
        applied = _applied_offsets(runner, assignment)
        lags = [rt.probe.lag((topic, p), offset) for p, offset in applied.items()]
        watermarks = [w for w in runner.stage.watermarks().values() if w is not None]
        if watermarks:
            # Grows on its own while nothing arrives (an outage, a stall): wall clock based.
            rt.metrics.watermark_lag.labels(topic).set(max(0.0, wall - min(watermarks) / 1000))
        known = [lag for lag in lags if lag is not None]
        if settled and not reachable:
            # The broker's marks are stale: the lag is unknown, not its last value (NaN:
            # no comparison holds; KafkaUnreachable says why).
            rt.metrics.consumer_lag.labels(topic).set(math.nan)
        elif settled and known:
            rt.metrics.consumer_lag.labels(topic).set(sum(known))
        stalled = any(known) and now - runner.last_applied_wall > STALL_SECONDS
        if stalled and settled:
            rt.stalled.add(topic)
        else:
            rt.stalled.discard(topic)


async def _tick_alerts(worker: Worker) -> None:
    """The owner of the merge stage evaluates pipeline rules, even with no input at all,
    and even while the broker is away (that is when `KafkaUnreachable` must fire): once
    owner, it goes on evaluating whatever the consumer's state, until a revocation."""
    runner = worker.alerts
    rt = worker.runtime
    if runner is None or rt.app.consumer is None:
        return
    if not runner.owner:
        if not rt.ready():
            return
        assignment = rt.app.consumer.assignment()
        if not any(tp.topic == rt.settings.topic_window_partials for tp in assignment):
            return
        await runner.take_ownership()
    runner.telemetry.kafka_unreachable_seconds = rt.probe.unreachable_seconds(time.monotonic())
    await runner.tick()
