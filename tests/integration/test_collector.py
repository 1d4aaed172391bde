"""`expmon collect` as a real process against the real broker: what it answers 202 is on
the topics (exactly once), bad events are on the dead-letter topic with their reasons,
and a SIGTERM in the middle of a flood loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from expmon.kafka.admin import default_topic_specs, ensure_topics
from schemas import codec
from tests.integration.collector_process import CollectorProcess
from tests.integration.conftest import SettingsFactory
from tests.integration.worker_process import read_topic


def page_load(event_id: str, **fields: Any) -> dict[str, Any]:
    event = {
        "event_id": event_id,
        "occurred_at": time.time_ns() // 1_000_000,
        "schema_version": 1,
        "session_id": f"s-{event_id}",
        "device": "mobile",
        "platform": "web",
        "region": "eu-west",
        "page": "/cart",
        "load_ms": 1234.0,
    }
    event.update(fields)
    return event


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, codec.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, codec.loads(exc.read())


def test_events_and_dead_letters_reach_the_broker(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory()
    ensure_topics(settings, default_topic_specs(settings))
    collector = CollectorProcess(settings, tmp_path / "collector.log").start()
    good = [page_load(f"e{i}") for i in range(3)]
    bad = page_load("bad", load_ms="slow")
    try:
        batch = post(f"{collector.url}/v1/page-loads", codec.dumps([good[0], bad, good[1]]))
        single = post(f"{collector.url}/v1/page-loads", codec.dumps(good[2]), "text/plain")
        again = post(f"{collector.url}/v1/page-loads", codec.dumps(good[2]))
        broken = post(f"{collector.url}/v1/page-loads", b"[{")
        with urllib.request.urlopen(f"{collector.url}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
    finally:
        assert collector.stop() == 0, collector.log_tail()
    assert batch == (202, {"accepted": 2, "duplicate": 0, "invalid": 1, "ignored": 0,
                           "errors": [{"index": 1, "reason": "wrong_type:load_ms",
                                       "detail": "a number"}]})  # fmt: skip
    assert single[0] == 202 and single[1]["accepted"] == 1
    assert again[0] == 202 and again[1]["duplicate"] == 1
    assert broken[0] == 400
    records = read_topic(settings, settings.topic_page_loads)
    assert sorted((r.key, codec.loads(r.value)["event_id"]) for r in records) == [
        (f"s-e{i}".encode(), f"e{i}") for i in range(3)
    ]
    assert {codec.loads(r.value)["event_id"]: codec.loads(r.value) for r in records} == {
        e["event_id"]: e for e in good
    }
    letters = read_topic(settings, settings.topic_dlq)
    reasons = sorted(dict(r.headers)["expmon-reason"].decode() for r in letters)
    assert reasons == ["not_json", "wrong_type:load_ms"]
    assert 'expmon_collector_events_total{family="page_load",outcome="accepted"} 3.0' in metrics
    assert 'expmon_collector_events_total{family="page_load",outcome="invalid"} 2.0' in metrics


async def _flood(url: str, requests: int, per_request: int, on_answer: Any) -> list[Any]:
    results: list[Any] = []
    semaphore = asyncio.Semaphore(16)

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        events = [page_load(f"r{n}-{i}") for i in range(per_request)]
        async with semaphore:
            try:
                async with session.post(f"{url}/v1/page-loads", json=events) as resp:
                    results.append((resp.status, [e["event_id"] for e in events]))
            except aiohttp.ClientError:
                results.append((None, [e["event_id"] for e in events]))
        on_answer(len(results))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, n) for n in range(requests)))
    return results


def test_sigterm_during_a_flood_loses_nothing_acknowledged(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory(collect_rate_per_second=1e6, collect_rate_burst=1_000_000)
    ensure_topics(settings, default_topic_specs(settings))
    collector = CollectorProcess(settings, tmp_path / "collector.log").start()
    assert collector.proc is not None
    proc = collector.proc
    signalled = []

    def on_answer(count: int) -> None:
        if count == 150 and not signalled:
            proc.send_signal(signal.SIGTERM)
            signalled.append(count)

    results = asyncio.run(_flood(collector.url, 600, 5, on_answer))
    assert proc.wait(30) == 0, collector.log_tail()
    acknowledged = sorted(i for status, ids in results if status == 202 for i in ids)
    refused = {status for status, _ in results if status != 202}
    assert len(acknowledged) >= 150 * 5
    assert refused <= {503, None}, refused  # draining answers 503, then the port closes
    assert refused, "the flood should outlast the drain"
    on_topic = sorted(
        codec.loads(r.value)["event_id"] for r in read_topic(settings, settings.topic_page_loads)
    )
    assert on_topic == acknowledged  # every acknowledged event once, nothing unacknowledged
