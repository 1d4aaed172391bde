"""`expmon collect` as a real process against the real broker: what it answers 202 is on
the topics (exactly once), bad events are on the dead-letter topic with their reasons,
and a SIGTERM in the middle of a flood loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
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


def test_broker_down_is_503_and_the_retries_land_once(tmp_path: Path) -> None:
    """A broker of its own, stopped under the collector and started again on the same data:
    while it is down the collector answers 503 (nothing acknowledged), the client's retries
    go through once it is back, every event reaches the topic, and the collector still
    stops cleanly."""
    from expmon.local.kafka.broker import LocalKafka
    from expmon.settings import Settings, default_cache_dir

    first = LocalKafka(default_cache_dir(), data_dir=tmp_path / "kafka")
    first.start(timeout=120)
    port, controller = first.port, first.controller_port
    settings = Settings.from_env(
        kafka_bootstrap=first.bootstrap,
        collect_produce_timeout_seconds=3,
        state_dir=tmp_path / "state",
    )
    ensure_topics(settings, default_topic_specs(settings))
    collector = CollectorProcess(settings, tmp_path / "collector.log").start()
    second = LocalKafka(
        default_cache_dir(), data_dir=tmp_path / "kafka", port=port, controller_port=controller
    )
    url = f"{collector.url}/v1/page-loads"
    try:
        assert post(url, codec.dumps(page_load("before")))[0] == 202
        first.stop()
        down = [post(url, codec.dumps(page_load(f"down-{i}"))) for i in range(2)]
        second.start(timeout=120)
        retried: list[int] = []
        for i in range(2):  # a client retrying until accepted, as the snippet's fetch would
            deadline = time.monotonic() + 60
            status = 0
            while status != 202 and time.monotonic() < deadline:
                status = post(url, codec.dumps(page_load(f"down-{i}")))[0]
                if status != 202:
                    time.sleep(1)
            retried.append(status)
        after = post(url, codec.dumps(page_load("after")))
    finally:
        assert collector.stop() == 0, collector.log_tail()
        events = sorted(
            codec.loads(r.value)["event_id"]
            for r in read_topic(settings, settings.topic_page_loads)
        ) if second.running else []  # fmt: skip
        first.stop()
        second.stop()
    assert [status for status, _ in down] == [503, 503]
    assert retried == [202, 202] and after[0] == 202
    # At least once: a record answered 503 may still be delivered once the broker is back
    # (a client cannot take it back); its retry is then a duplicate the worker counts once.
    counts = Counter(events)
    assert sorted(counts) == ["after", "before", "down-0", "down-1"]
    assert counts["before"] == counts["after"] == 1
    assert all(counts[f"down-{i}"] <= 2 for i in range(2))


def test_missing_topics_are_one_clear_line(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.integration.worker_process import settings_env

    settings = settings_factory()  # its topics were never created
    done = subprocess.run(
        [sys.executable, "-m", "expmon.cli", "collect", "--port", "0"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "expmon topics create" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
