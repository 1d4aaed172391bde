"""The page-load worker against the real broker, as a subprocess, end to end."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from expmon.engine.stage import RawRecord
from expmon.families.page_load import PageLoadStage, new_page_load_merger
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.settings import Settings
from expmon.sim.truth.page_load import TRUTH as PAGE_LOAD_TRUTH
from expmon.sim.truth.page_load import page_load_truth, web_vitals_truth
from schemas import codec
from tests.integration.worker_process import (
    WorkerProcess,
    assert_rows_match,
    final_views,
    read_topic,
)

PAGES = ("/", "/product/:id", "/cart")
DEVICES = ("mobile", "desktop")
MINUTE = 60_000


def recent_minute(minutes_ago: int) -> int:
    now = int(time.time() * 1000)
    return now - now % MINUTE - minutes_ago * MINUTE


def page_load(eid: str, t: int, rng: random.Random, **over: Any) -> dict[str, Any]:
    ev = {
        "event_id": eid,
        "occurred_at": t,
        "schema_version": 1,
        "session_id": f"s-{rng.randrange(500)}",
        "device": rng.choice(DEVICES),
        "platform": "web",
        "region": rng.choice(("eu-west", "us-east")),
        "page": rng.choice(PAGES),
        "load_ms": round(rng.lognormvariate(6.9, 0.7), 3),
        # Core Web Vitals: CLS often 0, INP only after an interaction
        "lcp_ms": round(rng.lognormvariate(7.5, 0.6)),
        "cls": 0.0 if rng.random() < 0.3 else round(rng.lognormvariate(-3.0, 1.0), 4),
    }
    inp = round(rng.lognormvariate(5.0, 0.8))
    if rng.random() < 0.7:
        ev["inp_ms"] = inp
    if rng.random() < 0.1:
        del ev["load_ms"]  # a vital-only beacon (web-vitals style)
    ev.update(over)
    return ev


def producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(**kafka_python_kwargs(settings), linger_ms=5, max_request_size=2_000_000)


def wait_for(predicate: Any, timeout: float, what: str, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{worker.log_tail()}")


def create_topics(settings: Settings) -> None:
    reports = ensure_topics(settings, default_topic_specs(settings))
    assert all(r.ok for r in reports), reports


class KnownMix:
    """Three partitions of page loads with every outcome of the contract, and the expectation."""

    def __init__(self, seed: int = 7, per_partition: int = 900) -> None:
        rng = random.Random(seed)
        self.t0 = recent_minute(30)
        self.sends: list[tuple[int, bytes]] = []  # (partition, value) in send order
        self.accepted: list[dict[str, Any]] = []
        self.expected = Counter[str]()
        self.bad: dict[str, bytes] = {}
        last_t = self.t0
        for p in range(3):
            events = [page_load(f"p{p}-{i}", self.t0 + i * 400, rng) for i in range(per_partition)]
            # out of order within lateness: swap neighbours, and hold some back 16 s
            for i in range(0, per_partition - 1, 10):
                events[i], events[i + 1] = events[i + 1], events[i]
            for i in range(5, per_partition - 60, 97):
                events.insert(i + 40, events.pop(i))
            order: list[bytes] = []
            for i, ev in enumerate(events):
                order.append(codec.dumps(ev))
                if i % 100 == 99:  # a collector retry: same event again
                    order.append(codec.dumps(events[i - 5]))
                    self.expected["duplicate"] += 1
                if i % 150 == 149:  # 45 s behind the stream, past the 30 s lateness
                    late = page_load(
                        f"p{p}-late-{i}",
                        max(e["occurred_at"] for e in events[: i + 1]) - 45_000,
                        rng,
                    )
                    order.append(codec.dumps(late))
                    self.expected["late"] += 1
            if p == 0:  # a collector batch: 100 events in one record
                batch = [codec.loads(v) for v in order[300:400]]
                order[300:400] = [codec.dumps(batch)]
            self.sends.extend((p, value) for value in order)
            self.accepted.extend(events)
            last_t = max(last_t, *(e["occurred_at"] for e in events))
        self._add_bad_records(rng)
        # one event per partition far ahead closes every window of the data above
        self.flush_t = last_t - last_t % MINUTE + 3 * MINUTE
        for p in range(3):
            self.sends.append((p, codec.dumps(page_load(f"flush-{p}", self.flush_t, rng))))
        self.expected["accepted"] = len(self.accepted) + 3
        self.closed_through = self.flush_t - 30_000 - (self.flush_t - 30_000) % MINUTE

    def _add_bad_records(self, rng: random.Random) -> None:
        base = page_load("bad", self.t0 + 1000, rng, load_ms=700)
        bad = {
            "not_json": b'{"event_id": "x", load_ms: 1',
            "not_json_nan": codec.dumps(base).replace(b'"load_ms":', b'"load_ms":NaN,"x":'),
            "wrong_type:load_ms": codec.dumps({**base, "event_id": "b1", "load_ms": "NaN"}),
            "missing_field:page": codec.dumps({k: v for k, v in base.items() if k != "page"}),
            "negative_value:load_ms": codec.dumps({**base, "event_id": "b2", "load_ms": -5}),
            "unknown_enum:device": codec.dumps({**base, "event_id": "b3", "device": "fridge"}),
            "absurd_timestamp": codec.dumps(
                {**base, "event_id": "b4", "occurred_at": "2300-01-01T00:00:00Z"}
            ),
            "absurd_timestamp_1970": codec.dumps({**base, "event_id": "b5", "occurred_at": 5}),
            "oversize": b"[" + b" " * 1_000_500 + b"]",
            "missing_field:event_id": codec.dumps(
                {k: v for k, v in base.items() if k != "event_id"}
            ),
        }
        self.bad = bad
        for value in bad.values():
            self.sends.insert(len(self.sends) // 2, (1, value))
        self.expected["invalid"] = len(bad)

    def expected_reasons(self) -> Counter[str]:
        reasons = Counter(name.replace("_nan", "").replace("_1970", "") for name in self.bad)
        reasons["late"] = self.expected["late"]
        return reasons


def test_known_mix_outcomes_dead_letters_and_closed_windows(
    settings_factory: Any, tmp_path: Path
) -> None:
    settings = settings_factory()
    create_topics(settings)
    mix = KnownMix()
    prod = producer(settings)
    for partition, value in mix.sends:
        prod.send(settings.topic_page_loads, value=value, key=b"k", partition=partition)
    prod.flush()
    prod.close()

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        total = sum(mix.expected.values())
        wait_for(lambda: worker.events_total() >= total, 90, f"{total} events", worker)
        last_key = f"page_load/5m/{mix.closed_through}"
        wait_for(lambda: last_key in final_views(settings), 60, last_key, worker)
        for outcome in ("accepted", "invalid", "late", "duplicate"):
            assert worker.events_total(outcome) == mix.expected[outcome], outcome
        views = final_views(settings)
        # `name[]` narrows the page to those families, same values as in the whole page
        narrowed = worker.metrics("expmon_events_total")
        assert {name for name, _ in narrowed} == {"expmon_events_total"}
        whole = worker.metrics()
        assert len(whole) > len(narrowed) and all(whole[k] == v for k, v in narrowed.items())
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # dead letters: every bad record, by reason, with its original bytes; late events beside them
    letters = read_topic(settings, settings.topic_dlq)
    reasons = Counter(dict(r.headers)["expmon-reason"].decode() for r in letters)
    assert reasons == mix.expected_reasons()
    by_reason = {dict(r.headers)["expmon-reason"].decode(): r for r in letters}
    assert by_reason["not_json"].value in (mix.bad["not_json"], mix.bad["not_json_nan"])
    assert by_reason["oversize"].value == mix.bad["oversize"]
    assert (
        dict(by_reason["oversize"].headers)["expmon-source-topic"]
        == settings.topic_page_loads.encode()
    )

    # closed windows: 1m and 5m against exact figures of the accepted events
    truth = [
        row
        for row in page_load_truth(mix.accepted)
        if row["view"] in ("1m", "5m") and row["end_ms"] <= mix.closed_through
    ]
    assert len(truth) > 50
    for row in truth:
        view = views.get(f"page_load/{row['view']}/{row['end_ms']}")
        assert view is not None, (row["view"], row["end_ms"])
        got = next(
            r
            for r in view["rows"]
            if (r["page"], r["device"], r["region"]) == (row["page"], row["device"], row["region"])
        )
        assert got["count"] == row["count"]
        assert got["slow_ratio"] == pytest.approx(row["slow_ratio"], abs=1e-9)
        assert got["apdex"] == pytest.approx(row["apdex"], abs=1e-9)
        for q in ("p50", "p95", "p99"):
            assert abs(got[q] - row[q]) <= 0.01 * row[q], (row, q, got[q])

    # Core Web Vitals, vital-only events included: counts and shares exact, p75 within 1 %
    vitals = [
        row
        for row in web_vitals_truth(mix.accepted, views=(("1m", 1), ("5m", 5)))
        if row["end_ms"] <= mix.closed_through
    ]
    rated = [r for r in vitals if r["kind"] == "web_vital"]
    assert {r["rating"] for r in rated} >= {"good", "needs_improvement"}
    assert sum(r["poor"] for r in rated) > 0 and {
        r.get("pass") for r in vitals if r["kind"] == "cwv"
    } >= {True, False}
    got_vitals = [
        r
        for key, view in views.items()
        if key.startswith(("page_load/1m/", "page_load/5m/"))
        and view["end_ms"] <= mix.closed_through
        for r in view["rows"]
        if "kind" in r
    ]
    assert PAGE_LOAD_TRUTH.differences(got_vitals, vitals) == []


def reference_views(settings: Settings, records: list[Any], through: int) -> dict[str, Any]:
    """What an uninterrupted run gives: the same stage and merger over the topic as stored."""
    stage = PageLoadStage(settings, settings.topic_page_loads, 3, live=False)
    out = [
        stage.process(
            [RawRecord(r.partition, r.offset, r.key, r.value, r.timestamp) for r in records]
        )
    ]
    merger = new_page_load_merger(settings)
    results = merger.apply([m for o in out for m in o.partials]).results
    return {r.record_key: r.to_dict() for r in results if r.end_ms <= through}


def test_sigkill_mid_stream_then_restart_gives_the_same_windows(
    settings_factory: Any, tmp_path: Path
) -> None:
    # the SIGKILLed worker's group member expires sooner: its successor joins sooner
    settings = settings_factory(kafka_session_timeout_seconds=10.0)
    create_topics(settings)
    rng = random.Random(11)
    t0 = recent_minute(20)
    per_partition = 6000
    done = threading.Event()

    def produce() -> None:
        prod = producer(settings)
        for i in range(per_partition):
            for p in range(3):
                t = t0 + i * 60 + rng.randint(-2000, 2000)
                value = codec.dumps(page_load(f"k{p}-{i}", t, rng))
                prod.send(settings.topic_page_loads, value=value, partition=p)
                if i % 50 == 0:
                    prod.send(settings.topic_page_loads, value=value, partition=p)  # duplicate
            if i % 150 == 0:  # about 10 s of traffic: the kill must find it mid-stream
                prod.flush()
                time.sleep(0.25)
        flush_t = t0 + per_partition * 60 + 3 * MINUTE
        for p in range(3):
            prod.send(
                settings.topic_page_loads,
                value=codec.dumps(page_load(f"end-{p}", flush_t, rng)),
                partition=p,
            )
        prod.flush()
        prod.close()
        done.set()

    producer_thread = threading.Thread(target=produce, daemon=True)
    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    producer_thread.start()
    wait_for(lambda: first.events_total() >= 5000, 90, "5000 events before the kill", first)
    first.kill()
    assert not done.is_set(), "the kill must land mid-stream"

    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        producer_thread.join(120)
        assert done.is_set()
        flush_t = t0 + per_partition * 60 + 3 * MINUTE
        through = flush_t - 30_000 - (flush_t - 30_000) % MINUTE
        wait_for(
            lambda: f"page_load/5m/{through}" in final_views(settings), 90, "last window", second
        )
        views = final_views(settings)
    finally:
        assert second.stop() == 0, second.log_tail()
    # the restart resumed from the changelog, not from an empty state
    assert re.search(
        r"state restored \([1-9][0-9]* entries, applied offset [0-9]+", second.log_tail(400)
    )

    reference = reference_views(settings, read_topic(settings, settings.topic_page_loads), through)
    got = {k: v for k, v in views.items() if v["end_ms"] <= through}
    assert got.keys() == reference.keys()
    for key, expected in reference.items():
        assert_rows_match(got[key]["rows"], expected["rows"], key)
