"""Builds the faust app of a worker: topics, processors, the tick, and the HTTP endpoints."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
from aiohttp import web
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from expmon.alerting.rules import Rule
from expmon.exposition.metrics import Metrics
from expmon.kafka import connection
from expmon.settings import Settings
from schemas import codec
from streams import checkout, logistics, page_load, window_partials
from streams.alerting import AlertRunner
from streams.runner import MergeRunner, StageRunner

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


@dataclass
class Runtime:
    """What the agents of one worker share."""

    settings: Settings
    metrics: Metrics
    app: Any
    source_partitions: dict[str, int]
    live: bool = True
    dlq_topic: Any = None
    partials_topic: Any = None
    windows_topic: Any = None
    alerts_topic: Any = None
    rules: list[Rule] | None = None
    alert_runner: AlertRunner | None = None
    stage_runners: list[StageRunner] = field(default_factory=list)
    merge_runners: list[MergeRunner] = field(default_factory=list)
    started_wall: float = field(default_factory=time.time)
    last_final_wall: float | None = None

    def ready(self) -> bool:
        app = self.app
        return bool(
            app.consumer is not None
            and not app.rebalancing
            and not getattr(app, "in_recovery", False)
            and app.consumer.assignment()
        )


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
    """faust.App with `KeepQueuedOnResume` as its flow control."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepQueuedOnResume(loop=self.loop)


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
        topic_replication_factor=1,
        topic_partitions=1,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 3),
        # dead letters carry whole oversize records (up to the broker's limit) plus headers
        producer_max_request_size=4 * 1024 * 1024,
        consumer_auto_offset_reset="earliest",
        # Fewer, larger hand-overs from faust's consumer thread to the event loop.
        broker_max_poll_records=10_000,
        consumer_max_fetch_size=16 * 1024 * 1024,
        stream_buffer_maxsize=8192,
        table_standby_replicas=0,
        datadir=str(datadir),
    )


def build_runtime(
    settings: Settings,
    metrics: Metrics,
    source_partitions: dict[str, int],
    live: bool = True,
    rules: list[Rule] | None = None,
) -> Runtime:
    """The faust app with every processor; `rules=None` runs without alerting."""
    app = new_faust_app(settings)
    rt = Runtime(settings, metrics, app, source_partitions, live=live, rules=rules)
    rt.dlq_topic = app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")
    rt.partials_topic = app.topic(
        settings.topic_window_partials, key_serializer="raw", value_serializer="raw", partitions=1
    )
    rt.windows_topic = app.topic(
        settings.topic_windows, key_serializer="raw", value_serializer="raw"
    )
    rt.alerts_topic = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
    rt.stage_runners.append(page_load.register(rt))
    rt.stage_runners.append(checkout.register(rt))
    rt.stage_runners.append(logistics.register(rt))
    rt.merge_runners.extend(window_partials.register(rt))

    async def tick() -> None:
        await _tick(rt)

    app.timer(TICK_SECONDS)(tick)

    async def serve_http() -> None:
        await _serve_http(rt)

    app.task(serve_http)

    async def on_revoked(_sender: Any, revoked: set[Any], **_kwargs: Any) -> None:
        # Drop a revoked partition's in-memory state now, not at the next tick: if it comes
        # back between two ticks, another worker may have moved it on meanwhile, and the
        # state must come from the changelog (faust re-reads it on every assignment).
        for stage_runner in rt.stage_runners:
            gone = {tp.partition for tp in revoked if tp.topic == stage_runner.stage.topic}
            if gone:
                await stage_runner.revoke_partitions(gone)
        if any(tp.topic == settings.topic_window_partials for tp in revoked):
            for runner in rt.merge_runners:
                runner.revoke()
            if rt.alert_runner is not None:
                rt.alert_runner.revoke()

    app.on_partitions_revoked.connect(on_revoked)
    return rt


async def _tick(rt: Runtime) -> None:
    """Sync assignment, advance idle partitions, export watermark lag."""
    app = rt.app
    settled = rt.ready()
    assignment = app.consumer.assignment() if app.consumer is not None else set()
    now = time.time()
    for runner in rt.stage_runners:
        topic = runner.stage.topic
        highwater = {
            tp.partition: app.consumer.highwater(tp) for tp in assignment if tp.topic == topic
        }
        lags = _partition_lags(runner, highwater) if settled else {}
        assigned = set(highwater) if settled else None
        backlogged = frozenset(p for p, lag in lags.items() if lag > 0)
        await runner.tick(assigned, backlogged, highwater if settled else None)
        watermarks = [w for w in runner.stage.watermarks().values() if w is not None]
        if watermarks:
            rt.metrics.watermark_lag.labels(topic).set(max(0.0, now - min(watermarks) / 1000))
        if settled:
            rt.metrics.consumer_lag.labels(topic).set(sum(lags.values()))
    await _tick_alerts(rt, assignment if settled else None)


async def _tick_alerts(rt: Runtime, assignment: set[Any] | None) -> None:
    """The owner of the merge stage evaluates pipeline rules, even with no input at all."""
    runner = rt.alert_runner
    if runner is None or assignment is None:
        return
    if any(tp.topic == rt.settings.topic_window_partials for tp in assignment):
        await runner.take_ownership()
        await runner.tick()


def _partition_lags(runner: StageRunner, highwater: dict[int, int | None]) -> dict[int, int]:
    """Records on the broker past what the stage applied, per assigned partition.

    A partition whose high-water mark is not known yet counts as backlogged (1).
    """
    lags: dict[int, int] = {}
    for partition, mark in highwater.items():
        windows = runner.stage.partitions.get(partition)
        applied = windows.offset if windows is not None else -1
        lags[partition] = 1 if mark is None else max(0, mark - applied - 1)
    return lags


async def _serve_http(rt: Runtime) -> None:
    async def metrics_view(request: web.Request) -> web.Response:
        # `?name[]=...` as in prometheus_client's own exposition: only those families
        # (a cheap poll of one counter; the full page costs the event loop tens of ms).
        names = request.query.getall("name[]", [])
        registry = rt.metrics.registry
        body = generate_latest(registry.restricted_registry(names) if names else registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "uptime_seconds": round(time.time() - rt.started_wall, 1)}
        )

    async def alerts(request: web.Request) -> web.Response:
        runner = rt.alert_runner
        if runner is None or not runner.owner:
            body = {"owner": False, "alerts": []}
        else:
            wanted = request.query.get("fingerprint")
            body = {
                "owner": True,
                "alerts": [
                    i.to_dict()
                    for i in runner.engine.instances.values()
                    if wanted is None or i.fingerprint == wanted
                ],
            }
        return web.Response(body=codec.dumps(body), content_type="application/json")

    async def readyz(_request: web.Request) -> web.Response:
        ready = rt.ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    web_app = web.Application()
    web_app.add_routes(
        [
            web.get("/metrics", metrics_view),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/alerts", alerts),
        ]
    )
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, rt.settings.metrics_host, rt.settings.metrics_port)
    await site.start()
    # With port 0 the OS picked one: report the real address.
    port = runner.addresses[0][1] if runner.addresses else rt.settings.metrics_port
    log.info(
        "metrics on http://%s:%s/metrics (also /healthz, /readyz)", rt.settings.metrics_host, port
    )
