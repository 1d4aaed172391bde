"""Recorded browser payloads through the collector: `web-vitals` metric objects on
`POST /v1/web-vitals` and Grafana Faro SDK payloads on `POST /collect`
(tests/fixtures/README.md says how they were made)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from expmon.collect.app import Collector
from schemas import codec
from tests.unit.collect.conftest import Harness, RecordingProducer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
METRICS = json.loads((FIXTURES / "web-vitals" / "metrics.json").read_text())
FARO = [json.loads(p.read_text()) for p in sorted((FIXTURES / "faro").glob("payload-*.json"))]
ROUTES = {"http://shop.test/": "/", "http://shop.test/product/42": "/product/:id",
          "http://shop.test/cart": "/cart"}  # fmt: skip
FIELDS = {"TTFB": "ttfb_ms", "FCP": "fcp_ms", "LCP": "lcp_ms", "INP": "inp_ms", "CLS": "cls"}
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0.0.0 Safari/537.36"
MakeHarness = Callable[..., Harness]
Client = TestClient[Any, Any]


def sample(registry: CollectorRegistry, **labels: str) -> float:
    return registry.get_sample_value("expmon_collector_events_total", labels) or 0.0


def test_fixtures_hold_every_vital_of_every_page_view() -> None:
    assert sorted((m["name"], m["navigationURL"]) for m in METRICS) == sorted(
        (name, url) for name in FIELDS for url in ROUTES
    )


def test_web_vitals_beacons_become_vital_only_page_load_events(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        answers = []
        for metric in METRICS:  # one sendBeacon per metric, as text/plain
            resp = await client.post(
                "/v1/web-vitals",
                data=json.dumps(metric),
                headers={"Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME},
            )
            answers.append((resp.status, await resp.json()))
        again = await client.post("/v1/web-vitals", json=METRICS[:5])  # a retried batch
        return answers, await again.json(), collector.metrics.registry

    h = harness(collect_region="eu-west")
    answers, again, registry = h.run(scenario)
    assert all(status == 202 and body["accepted"] == 1 for status, body in answers), answers
    assert again["duplicate"] == 5 and again["accepted"] == 0
    events = h.producer.values("page-loads")
    assert len(events) == len(METRICS)
    for metric, event in zip(METRICS, events, strict=True):
        field = FIELDS[metric["name"]]
        assert event["event_id"] == f"wv-{metric['name'].lower()}-{metric['id']}"
        assert event[field] == metric["value"]
        assert "load_ms" not in event
        assert event["page"] == ROUTES[metric["navigationURL"]]
        assert (event["device"], event["region"], event["platform"]) == (
            "desktop",
            "eu-west",
            "web",
        )
        assert event["session_id"] == metric["id"]
    assert [m.key for m in h.producer.on("page-loads")] == [m["id"].encode() for m in METRICS]
    assert sample(registry, family="page_load", outcome="accepted") == len(METRICS)


def test_web_vitals_context_from_the_beacon_and_unknown_metrics(harness: MakeHarness) -> None:
    beacon = [
        {"name": "LCP", "value": 2512.5, "id": "v5-1", "page": "/product/:id",
         "session_id": "sess-9", "device": "mobile", "region": "us-east"},
        {"name": "FID", "value": 12, "id": "v3-2"},  # not a contract field: ignored
        {"name": "INP", "value": -4, "id": "v5-3"},  # invalid: dead-lettered
        "junk",
    ]  # fmt: skip

    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        resp = await client.post(
            "/v1/web-vitals", json=beacon, headers={"Referer": "https://shop.example/cart?x=1"}
        )
        return resp.status, await resp.json()

    h = harness()
    status, body = h.run(scenario)
    assert status == 202
    assert (body["accepted"], body["ignored"], body["invalid"]) == (1, 1, 2)
    [event] = h.producer.values("page-loads")
    assert (event["page"], event["session_id"], event["device"], event["region"]) == (
        "/product/:id", "sess-9", "mobile", "us-east"
    )  # fmt: skip
    reasons = [dict(m.headers)["expmon-reason"] for m in h.producer.on("experience-dlq")]
    assert reasons == [b"not_object", b"negative_value:inp_ms"]


def faro_expected() -> dict[str, dict[str, Any]]:
    """The documented mapping, applied by hand to the fixtures."""
    vitals = {"ttfb": "ttfb_ms", "fcp": "fcp_ms", "lcp": "lcp_ms", "inp": "inp_ms", "cls": "cls"}
    expected: dict[str, dict[str, Any]] = {}
    for body in FARO:
        meta = body["meta"]
        common = {"page": ROUTES[meta["page"]["url"]], "session_id": meta["session"]["id"],
                  "device": "desktop", "app_version": meta["app"]["version"]}  # fmt: skip
        for m in body.get("measurements", []):
            [key] = [k for k in m["values"] if k in vitals]
            expected[f"faro-{key}-{m['context']['id']}"] = {
                **common, vitals[key]: m["values"][key], "occurred_at": m["timestamp"]
            }  # fmt: skip
        for e in body.get("events", []):
            if e["name"] == "faro.performance.navigation":
                expected[f"faro-nav-{e['attributes']['faroNavigationId']}"] = {
                    **common,
                    "load_ms": float(e["attributes"]["pageLoadTime"]),
                    "occurred_at": e["timestamp"],
                }
    return expected


def test_faro_payloads_map_to_page_load_events(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        answers = []
        for n, body in enumerate(FARO):
            data = codec.dumps(body)
            headers = {"Content-Type": "application/json", "Origin": "http://shop.test"}
            if n % 2:  # half of them gzip'd, as the SDK's `requestCompression` sends them
                data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
            resp = await client.post("/collect", data=data, headers=headers)
            answers.append((resp.status, resp.headers.get("Access-Control-Allow-Origin")))
        return answers, collector.metrics.registry

    h = harness(collect_allowed_origins="http://shop.test")
    answers, registry = h.run(scenario)
    assert answers == [(202, "http://shop.test")] * len(FARO)
    expected = faro_expected()
    events = {e["event_id"]: e for e in h.producer.values("page-loads")}
    assert sorted(events) == sorted(expected)
    for event_id, want in expected.items():
        assert {k: events[event_id].get(k) for k in want} == want, event_id
    assert len([k for k in expected if k.startswith("faro-nav-")]) == 3
    assert {k.split("-")[1] for k in expected} == {"nav", "ttfb", "fcp", "lcp", "inp", "cls"}
    others = sum(
        1 for b in FARO for e in b.get("events", []) if e["name"] != "faro.performance.navigation"
    )
    assert others > 0 and sample(registry, family="faro", outcome="ignored") == others
    assert h.producer.on("experience-dlq") == []


def test_faro_payload_without_meta_or_not_json(harness: MakeHarness) -> None:
    async def scenario(client: Client, collector: Collector, prod: RecordingProducer) -> Any:
        no_meta = await client.post("/collect", json={"measurements": []})
        broken = await client.post(
            "/collect", data=b"{", headers={"Content-Type": "application/json"}
        )
        only_logs = await client.post("/collect", json={"meta": {}, "logs": [{}, {}]})
        return no_meta.status, broken.status, only_logs.status, await only_logs.json()

    h = harness()
    no_meta, broken, only_logs, body = h.run(scenario)
    assert (no_meta, broken, only_logs) == (400, 400, 202)
    assert body["ignored"] == 2
    reasons = [dict(m.headers)["expmon-reason"] for m in h.producer.on("experience-dlq")]
    assert reasons == [b"missing_field:meta", b"not_json"]
