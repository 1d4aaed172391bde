"""The collector's HTTP edge on the real aiohttp app: every status, what reaches the topics
and the dead-letter topic, and the counters."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from expmon.collect.app import Collector
from schemas import codec
from tests.unit.collect.conftest import Harness, RecordingProducer

NOW_MS = time.time_ns() // 1_000_000
MakeHarness = Callable[..., Harness]
Client = TestClient[Any, Any]
JSON = {"Content-Type": "application/json"}


def page_load(event_id: str = "e1", **fields: Any) -> dict[str, Any]:
    event = {
        "event_id": event_id,
        "occurred_at": NOW_MS,
        "schema_version": 1,
        "session_id": f"s-{event_id}",
        "device": "desktop",
        "platform": "web",
        "region": "eu-west",
        "page": "/product/:id",
        "load_ms": 812.5,
    }
    event.update(fields)
    return event


def checkout(event_id: str = "c1") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": NOW_MS,
        "schema_version": 1,
        "session_id": "s1",
        "device": "mobile",
        "platform": "ios",
        "region": "us-east",
        "checkout_id": "co-7",
        "step": "cart_viewed",
    }


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def header(message: Any, name: str) -> str:
    return dict(message.headers)[name].decode()


def test_one_event_is_produced_keyed_by_session_as_sent(harness: MakeHarness) -> None:
    event = page_load("e1")

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        resp = await client.post("/v1/page-loads", json=event)
        return resp.status, await resp.json()

    h = harness()
    status, body = h.run(scenario)
    assert status == 202
    assert body == {"accepted": 1, "duplicate": 0, "invalid": 0, "ignored": 0}
    [message] = h.producer.on("page-loads")
    assert message.key == b"s-e1"
    assert codec.loads(message.value) == event  # no annotations, nothing added
    assert h.producer.on("experience-dlq") == []


@pytest.mark.parametrize(
    ("route", "topic", "key"),
    [
        ("/v1/checkout-events", "checkout-events", b"co-7"),
        ("/v1/logistics-events", "logistics-events", b"o-9"),
    ],
)
def test_each_family_route_keys_by_its_contract_key(
    harness: MakeHarness, route: str, topic: str, key: bytes
) -> None:
    if topic == "checkout-events":
        event = checkout()
    else:
        event = {**checkout(), "order_id": "o-9", "status": "packed", "carrier": "dhl",
                 "warehouse": "w1"}  # fmt: skip
        del event["checkout_id"], event["step"]

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> int:
        return (await client.post(route, json=[event])).status

    h = harness()
    assert h.run(scenario) == 202
    assert [m.key for m in h.producer.on(topic)] == [key]


def test_a_bad_event_in_a_batch_is_dead_lettered_and_the_good_ones_produced(
    harness: MakeHarness,
) -> None:
    bad = page_load("e2", load_ms=-5)
    batch = [page_load("e1"), bad, page_load("e3"), "not an object"]

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        resp = await client.post("/v1/page-loads", data=codec.dumps(batch), headers=JSON)
        return resp.status, await resp.json(), collector.metrics.registry

    h = harness()
    status, body, registry = h.run(scenario)
    assert status == 202
    assert (body["accepted"], body["invalid"]) == (2, 2)
    assert [e["reason"] for e in body["errors"]] == ["negative_value:load_ms", "not_object"]
    assert h.producer.values("page-loads") == [batch[0], batch[2]]  # as sent, no annotations
    dlq = h.producer.on("experience-dlq")
    assert [header(m, "expmon-reason") for m in dlq] == ["negative_value:load_ms", "not_object"]
    assert [header(m, "expmon-batch-index") for m in dlq] == ["1", "3"]
    assert codec.loads(dlq[0].value) == bad and dlq[0].key == b"s-e2"
    assert header(dlq[0], "expmon-source-topic") == "page-loads"
    assert header(dlq[0], "expmon-source") == "collect:/v1/page-loads"
    events = "expmon_collector_events_total"
    assert sample(registry, events, family="page_load", outcome="accepted") == 2
    assert sample(registry, events, family="page_load", outcome="invalid") == 2
    assert (
        sample(registry, "expmon_collector_requests_total", route="/v1/page-loads", code="202") == 1
    )


def test_malformed_json_is_400_and_dead_lettered_as_sent(harness: MakeHarness) -> None:
    raw = b'{"event_id": "e1", '

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        resp = await client.post(
            "/v1/page-loads", data=raw, headers={"Content-Type": "application/json"}
        )
        return resp.status, await resp.json(), collector.metrics.registry

    h = harness()
    status, body, registry = h.run(scenario)
    assert status == 400
    assert body["errors"][0]["reason"] == "not_json"
    [letter] = h.producer.on("experience-dlq")
    assert letter.value == raw and header(letter, "expmon-reason") == "not_json"
    assert h.producer.on("page-loads") == []
    assert (
        sample(registry, "expmon_collector_events_total", family="page_load", outcome="invalid")
        == 1
    )


def test_a_request_with_only_invalid_events_is_400(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> int:
        resp = await client.post("/v1/page-loads", json=[page_load("a", device="fridge")])
        return resp.status

    h = harness()
    assert h.run(scenario) == 400
    assert [header(m, "expmon-reason") for m in h.producer.on("experience-dlq")] == [
        "unknown_enum:device"
    ]


def test_repeated_ids_are_produced_once_and_counted_duplicate(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        first = await client.post("/v1/page-loads", json=[page_load("e1"), page_load("e1")])
        again = await client.post("/v1/page-loads", json=page_load("e1"))
        return await first.json(), again.status, await again.json(), collector.metrics.registry

    h = harness()
    first, status, again, registry = h.run(scenario)
    assert (first["accepted"], first["duplicate"]) == (1, 1)
    assert status == 202 and (again["accepted"], again["duplicate"]) == (0, 1)
    assert len(h.producer.on("page-loads")) == 1
    assert (
        sample(registry, "expmon_collector_events_total", family="page_load", outcome="duplicate")
        == 2
    )


def test_broker_failure_is_503_and_the_retry_goes_through(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        prod.failing = True
        down = await client.post("/v1/page-loads", json=page_load("e1"))
        prod.failing = False
        retry = await client.post("/v1/page-loads", json=page_load("e1"))
        return down.status, down.headers.get("Retry-After"), retry.status, await retry.json()

    h = harness()
    down, retry_after, status, body = h.run(scenario)
    assert (down, retry_after) == (503, "1")
    assert status == 202 and body["accepted"] == 1  # not remembered as produced
    assert len(h.producer.on("page-loads")) == 1


def test_body_limits_and_gzip(harness: MakeHarness) -> None:
    limit = 2048
    good = gzip.compress(codec.dumps([page_load("g1")]))
    bomb = gzip.compress(b"[" + b" " * (limit * 50) + b"]")

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        gz = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        big = await client.post("/v1/page-loads", data=b"[" + b" " * limit + b"]", headers=JSON)
        zipped = await client.post("/v1/page-loads", data=good, headers=gz)
        bombed = await client.post("/v1/page-loads", data=bomb, headers=gz)
        broken = await client.post("/v1/page-loads", data=good[:-8] + b"xxxxxxxx", headers=gz)
        return big.status, zipped.status, bombed.status, broken.status

    h = harness(collect_max_body_bytes=limit)
    assert len(bomb) < limit  # small on the wire, huge once inflated
    assert h.run(scenario) == (413, 202, 413, 400)
    assert [e["event_id"] for e in h.producer.values("page-loads")] == ["g1"]
    assert h.producer.on("experience-dlq") == []  # refused bodies are not read as events


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/xml"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({"Content-Type": "application/json", "Content-Encoding": "br"}, 415),
        ({"Content-Type": "text/plain;charset=UTF-8"}, 202),  # navigator.sendBeacon(url, string)
        ({"Content-Type": "application/json; charset=utf-8"}, 202),
    ],
)
def test_content_types(harness: MakeHarness, headers: dict[str, str], status: int) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> int:
        resp = await client.post("/v1/page-loads", data=codec.dumps(page_load()), headers=headers)
        return resp.status

    assert harness().run(scenario) == status


def test_unknown_routes_and_methods(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        missing = await client.post("/v1/pageloads", json=page_load())
        wrong = await client.get("/v1/page-loads")
        return missing.status, wrong.status, collector.metrics.registry

    missing, wrong, registry = harness().run(scenario)
    assert (missing, wrong) == (404, 405)
    assert sample(registry, "expmon_collector_requests_total", route="other", code="404") == 1


def test_api_key(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        none = await client.post("/v1/page-loads", json=page_load("a"))
        wrong = await client.post(
            "/v1/page-loads", json=page_load("b"), headers={"X-API-Key": "nope"}
        )
        good = await client.post(
            "/v1/page-loads", json=page_load("c"), headers={"X-API-Key": "s3cret"}
        )
        query = await client.post("/v1/page-loads?api_key=s3cret", json=page_load("d"))
        health = await client.get("/healthz")
        return none.status, wrong.status, good.status, query.status, health.status

    h = harness(collect_api_key="s3cret")
    assert h.run(scenario) == (401, 401, 202, 202, 200)
    assert [e["event_id"] for e in h.producer.values("page-loads")] == ["c", "d"]


def test_cors_allow_list_and_preflight(harness: MakeHarness) -> None:
    shop = "https://shop.example"

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        pre = await client.options(
            "/v1/page-loads",
            headers={"Origin": shop, "Access-Control-Request-Method": "POST"},
        )
        foreign_pre = await client.options(
            "/v1/page-loads", headers={"Origin": "https://evil.example"}
        )
        ok = await client.post("/v1/page-loads", json=page_load("a"), headers={"Origin": shop})
        foreign = await client.post(
            "/v1/page-loads", json=page_load("b"), headers={"Origin": "https://evil.example"}
        )
        return pre, foreign_pre.status, ok, foreign.status

    h = harness(collect_allowed_origins=f"{shop}, https://other.example")
    pre, foreign_pre, ok, foreign = h.run(scenario)
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == shop
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Content-Encoding" in pre.headers["Access-Control-Allow-Headers"]
    assert ok.status == 202 and ok.headers["Access-Control-Allow-Origin"] == shop
    assert (foreign_pre, foreign) == (403, 403)
    assert [e["event_id"] for e in h.producer.values("page-loads")] == ["a"]


def test_cors_default_refuses_every_cross_origin_page(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> int:
        resp = await client.post(
            "/v1/page-loads", json=page_load(), headers={"Origin": "https://shop.example"}
        )
        return resp.status

    assert harness().run(scenario) == 403


def test_a_flood_from_one_client_gets_429_with_retry_after(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        codes = [
            (await client.post("/v1/page-loads", json=page_load(f"e{i}"))).status for i in range(5)
        ]
        limited = await client.post("/v1/page-loads", json=page_load("x"))
        other = await client.post(
            "/v1/page-loads", json=page_load("y"), headers={"X-Forwarded-For": "10.0.0.9"}
        )
        h.clock.now += 1.0  # one second refills 2 tokens
        later = await client.post("/v1/page-loads", json=page_load("z"))
        return codes, limited.status, limited.headers["Retry-After"], other.status, later.status

    h = harness(
        collect_rate_per_second=2, collect_rate_burst=3, collect_client_ip_header="X-Forwarded-For"
    )
    codes, limited, retry_after, other, later = h.run(scenario)
    assert codes == [202, 202, 202, 429, 429]
    assert (limited, retry_after) == (429, "1")
    assert other == 202  # another client has its own bucket
    assert later == 202


def test_client_ip_and_user_agent_are_stored_only_when_configured(harness: MakeHarness) -> None:
    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"}

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> None:
        await client.post("/v1/page-loads", json=page_load("a"), headers=ua)

    plain = harness()
    plain.run(scenario)
    assert set(plain.producer.values("page-loads")[0]) == set(page_load())
    stored = harness(collect_store_client_info=True)
    stored.run(scenario)
    event = stored.producer.values("page-loads")[0]
    assert event["user_agent"] == ua["User-Agent"] and event["client_ip"] == "127.0.0.1"


def test_draining_refuses_new_posts_and_health_says_so(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        collector.draining = True
        post = await client.post("/v1/page-loads", json=page_load())
        health = await client.get("/healthz")
        return post.status, post.headers.get("Retry-After"), health.status

    h = harness()
    assert h.run(scenario) == (503, "1", 503)
    assert h.producer.messages == []


def test_metrics_page_is_the_collectors_own(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> str:
        await client.post("/v1/page-loads", json=page_load())
        return await (await client.get("/metrics")).text()

    text = harness().run(scenario)
    assert 'expmon_collector_requests_total{code="202",route="/v1/page-loads"} 1.0' in text
    assert 'expmon_collector_events_total{family="page_load",outcome="accepted"} 1.0' in text
    assert "expmon_events_total" not in text  # the worker's metrics live in the worker


def test_a_bug_in_handling_is_a_counted_500_not_a_crash(harness: MakeHarness) -> None:
    class Broken(RecordingProducer):
        async def send_all(self, messages: Any, on_ack: Any = None) -> None:
            raise RuntimeError("a bug")

    h = harness()
    h.producer = Broken()

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        broken = await client.post("/v1/page-loads", json=page_load("a"))
        health = await client.get("/healthz")
        return broken.status, health.status, collector.metrics.registry

    broken, health, registry = h.run(scenario)
    assert (broken, health) == (500, 200)
    assert (
        sample(registry, "expmon_collector_requests_total", route="/v1/page-loads", code="500") == 1
    )
