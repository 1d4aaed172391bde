"""Sinks: the Alertmanager sink against a local HTTP receiver that fails, then recovers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web

from expmon.alerting.engine import AlertInstance, Transition
from expmon.alerting.sinks import AlertmanagerSink, LogSink, MemorySink, TopicSink
from schemas import codec


def instance(state: str = "firing", fp: str = "abc") -> AlertInstance:
    return AlertInstance(
        fingerprint=fp,
        alert="PageLoadSlow",
        severity="warning",
        labels={"alertname": "PageLoadSlow", "severity": "warning", "page": "/p"},
        annotations={"summary": "slow"},
        state=state,  # type: ignore[arg-type]
        active_since_ms=0,
        value=4.0,
        volume=100,
        starts_at=1000.0,
        ends_at=2000.0 if state == "resolved" else None,
    )


class Receiver:
    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.posts: list[list[dict[str, Any]]] = []
        self.failed = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.failed < self.fail_first:
            self.failed += 1
            return web.Response(status=503, text="down")
        self.posts.append(codec.loads(await request.read()))
        return web.Response(status=200)


async def serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes([web.post("/api/v2/alerts", receiver.handle)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def test_alertmanager_sink_retries_resends_and_resolves() -> None:
    async def scenario() -> tuple[Receiver, list[tuple[str, str, int]]]:
        receiver = Receiver(fail_first=2)
        runner, url = await serve(receiver)
        counts: list[tuple[str, str, int]] = []
        sink = AlertmanagerSink(
            [url],
            resend_seconds=0.3,
            generator_url="http://w:9477",
            count=lambda s, o, n: counts.append((s, o, n)),
            max_backoff_seconds=0.2,
            clock=lambda: 2100.0,
        )
        await sink.start([])
        started = asyncio.get_running_loop().time()
        await sink.notify([Transition("firing", instance(), "PageLoadSlow:warning")])
        # notify returned at once although the receiver is failing
        assert asyncio.get_running_loop().time() - started < 0.05
        while len(receiver.posts) < 2:  # first good post, then a periodic re-send
            await asyncio.sleep(0.05)
        await sink.notify([Transition("resolved", instance("resolved"), "PageLoadSlow:warning")])
        while receiver.posts[-1][0]["endsAt"] != "1970-01-01T00:33:20.000Z":
            await asyncio.sleep(0.05)
        await sink.stop()
        await runner.cleanup()
        return receiver, counts

    receiver, counts = asyncio.run(scenario())
    first = receiver.posts[0][0]
    assert first["labels"]["page"] == "/p"
    assert first["startsAt"] == "1970-01-01T00:16:40.000Z"
    assert first["generatorURL"] == "http://w:9477/alerts?fingerprint=abc"
    assert receiver.failed == 2
    assert ("alertmanager", "failed", 1) in counts and ("alertmanager", "sent", 1) in counts


def test_log_memory_and_topic_sinks(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[tuple[bytes, bytes]] = []

    async def send(key: bytes, value: bytes) -> None:
        sent.append((key, value))

    async def scenario() -> MemorySink:
        memory = MemorySink()
        t = [Transition("firing", instance(), "r")]
        for sink in (memory, LogSink(), TopicSink(send)):
            await sink.start([])
            await sink.notify(t)
            await sink.stop()  # the topic sink sends from its outbox: drained at stop
        return memory

    with caplog.at_level(logging.WARNING):
        memory = asyncio.run(scenario())
    assert len(memory.transitions) == 1
    assert "ALERT FIRING PageLoadSlow[warning]{page=/p}: slow" in caplog.text
    assert sent[0][0] == b"abc"
    assert codec.loads(sent[0][1])["state"] == "firing"


def test_each_alertmanager_gets_every_alert_even_if_another_is_down() -> None:
    async def scenario() -> tuple[Receiver, Receiver]:
        up, down = Receiver(fail_first=0), Receiver(fail_first=10**6)
        (up_runner, up_url), (down_runner, down_url) = await serve(up), await serve(down)
        sink = AlertmanagerSink([down_url, up_url], resend_seconds=5, max_backoff_seconds=0.2)
        await sink.start([instance()])  # restored at start: sent without a new transition
        while not up.posts:
            await asyncio.sleep(0.02)
        await sink.stop()
        await up_runner.cleanup()
        await down_runner.cleanup()
        return up, down

    up, down = asyncio.run(scenario())
    assert [a["labels"]["page"] for a in up.posts[0]] == ["/p"]
    assert down.failed >= 1 and not down.posts


def test_alertmanager_payload_carries_the_absolute_runbook_url() -> None:
    from expmon.alerting.engine import AlertEngine
    from expmon.alerting.rules import load_rules
    from expmon.engine.merge import ViewResult
    from expmon.families.registry import SIGNALS

    base = "https://git.example.test/shop/expmon/-/blob/main/"
    rules = [
        r
        for r in load_rules(signals=SIGNALS, runbook_base_url=base)
        if r.alert == "PaymentFailureRateHigh"
    ]
    engine = AlertEngine(rules, clock=lambda: 1000.0)
    row = {"kind": "payment", "provider": "adyen", "method": "card", "user_type": "all",
           "attempts": 500, "failures": 100}  # fmt: skip
    out = engine.evaluate_view(ViewResult("checkout", "5m", 0, 300_000, [row]))
    assert [t.state for t in out.transitions] == ["firing"]
    sink = AlertmanagerSink(["http://127.0.0.1:9"])
    sink.replace(engine.notifiable())
    [alert] = sink.payload()
    assert alert["annotations"]["runbook_url"] == f"{base}docs/runbooks.md#paymentfailureratehigh"
    assert alert["annotations"]["evidence"].startswith("20.0 % (100 of 500)")


def transitions(n: int) -> list[Transition]:
    return [Transition("firing", instance(fp=f"fp-{i}"), "r") for i in range(n)]


def test_topic_sink_never_waits_on_the_broker_and_keeps_the_order() -> None:
    sent: list[bytes] = []
    broker_back = asyncio.Event()

    async def send(key: bytes, _value: bytes) -> None:
        await broker_back.wait()  # a send to a broker that is away
        sent.append(key)

    async def scenario() -> tuple[int, list[bytes]]:
        sink = TopicSink(send)
        await sink.start([])
        await asyncio.wait_for(sink.notify(transitions(3)), timeout=1)
        await asyncio.wait_for(sink.notify(transitions(5)[3:]), timeout=1)
        queued_while_away = sink.queued
        broker_back.set()
        await sink.stop()
        return queued_while_away, sent

    queued, sent_keys = asyncio.run(scenario())
    assert queued == 5
    assert sent_keys == [f"fp-{i}".encode() for i in range(5)]


def test_topic_sink_retries_a_failed_send_in_order_and_counts_it() -> None:
    sent: list[bytes] = []
    failures = iter([True, True, False, False])
    counts: list[tuple[str, str, int]] = []

    async def send(key: bytes, _value: bytes) -> None:
        if next(failures, False):
            raise ConnectionError("broker away")
        sent.append(key)

    async def scenario() -> None:
        sink = TopicSink(send, lambda *c: counts.append(c), max_backoff_seconds=0.01)
        await sink.notify(transitions(2))
        await sink.stop()

    asyncio.run(scenario())
    assert sent == [b"fp-0", b"fp-1"]
    assert counts.count(("topic", "failed", 1)) == 2
    assert counts.count(("topic", "sent", 1)) == 2


def test_topic_sink_drops_the_oldest_beyond_its_bound_and_what_stop_cannot_send() -> None:
    counts: list[tuple[str, str, int]] = []

    async def never(_key: bytes, _value: bytes) -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        sink = TopicSink(never, lambda *c: counts.append(c), max_queued=3, drain_seconds=0.1)
        await sink.notify(transitions(5))
        assert sink.queued == 3
        await sink.stop()
        assert sink.queued == 0

    asyncio.run(scenario())
    assert counts == [("topic", "dropped", 2), ("topic", "dropped", 3)]
