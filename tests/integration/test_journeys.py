"""Checkout, bounce, Core Web Vitals and logistics against the real broker, compared
with ground truth.

One scenario covers three claims at once: two workers share 6-partition topics, one is
SIGKILLed mid-stream and restarted, and the final windows still equal the simulator's
exact ground truth (which is what one uninterrupted worker gives: see the unit tests).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.settings import Settings
from expmon.sim.bad_records import BadRecord
from expmon.sim.encoding import encode_records
from expmon.sim.incidents import parse_incidents
from expmon.sim.journeys import TrafficGenerator
from expmon.sim.truth.base import dedupe
from expmon.sim.truth.checkout import checkout_truth
from expmon.sim.truth.checkout import row_key as checkout_row_key
from expmon.sim.truth.logistics import logistics_truth
from expmon.sim.truth.page_load import web_vitals_truth
from schemas.events import EventFamily
from schemas.eventtime import parse_event_time_ms
from tests.integration.worker_process import WorkerProcess, settled_views

MINUTE = 60_000
PARTITIONS = 6
JOURNEY_SETTINGS = {
    "topic_partitions": PARTITIONS,
    "idle_partition_timeout_seconds": 3.0,
    "kafka_session_timeout_seconds": 8.0,
    # compressed time: the simulator runs logistics 3600x faster, so 48 h -> 48 s
    "ship_sla_seconds": 48.0,
    "tracking_stale_seconds": 24.0,
    "checkout_abandon_seconds": 120.0,
    "bounce_seconds": 120.0,
}
INCIDENTS = (
    "payment_outage@3m+4m:provider=adyen",
    "checkout_stall@5m+3m",
    "warehouse_backlog@2m+5m:warehouse=ams-1",
    "lcp_regression@2m+6m:page=/product/:id,device=mobile,factor=3.5",
)


def scenario(settings: Settings) -> tuple[dict[EventFamily, list[dict[str, Any]]], int, int]:
    """Produce the traffic; return the good events per family, data end, events sent."""
    now = int(time.time() * 1000)
    start = now - now % MINUTE - 40 * MINUTE  # all deadlines fall well before the wall clock
    generator = TrafficGenerator(
        seed=23, rate=80, start_ms=start, duration_s=12 * 60, incidents=parse_incidents(INCIDENTS),
        lifecycle_compression=3600, mix={"page_load": 0.5, "checkout": 0.3, "logistics": 0.2},
    )  # fmt: skip
    records = list(
        encode_records(
            generator, batch_size=20, duplicate_ratio=0.01, seed=23,
            partitions=dict.fromkeys(EventFamily, PARTITIONS),
        )
    )  # fmt: skip
    topics = {
        EventFamily.PAGE_LOAD: settings.topic_page_loads,
        EventFamily.CHECKOUT: settings.topic_checkout,
        EventFamily.LOGISTICS: settings.topic_logistics,
    }
    producer = KafkaProducer(**kafka_python_kwargs(settings), linger_ms=5)
    good: dict[EventFamily, list[dict[str, Any]]] = {f: [] for f in EventFamily}
    sent = 0
    for record in records:
        producer.send(topics[record.family], key=record.key.encode(), value=record.value)
        good[record.family].extend(record.events)
        sent += record.event_count
    producer.flush()
    producer.close()
    assert not any(isinstance(r.bad, BadRecord) for r in records)
    last = max(parse_event_time_ms(e["occurred_at"]) for events in good.values() for e in events)
    return {f: [dict(e) for e in dedupe(events)] for f, events in good.items()}, last, sent


def bounce_truth(events: list[dict[str, Any]], bounce_ms: int, through: int) -> Counter[Any]:
    """(window end, page, device, region) -> [sessions, bounces] of sessions ending there."""
    views: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for e in events:
        if e.get("load_ms") is None:
            continue  # a vital-only beacon is not a page view
        views.setdefault(e["session_id"], []).append((parse_event_time_ms(e["occurred_at"]), e))
    counts: Counter[Any] = Counter()
    for session in views.values():
        session.sort(key=lambda v: v[0])
        visits: list[list[tuple[int, dict[str, Any]]]] = []
        for t, e in session:
            if visits and t < visits[-1][-1][0] + bounce_ms:
                visits[-1].append((t, e))
            else:
                visits.append([(t, e)])
        for visit in visits:
            end = visit[-1][0] + bounce_ms
            if end >= through:
                continue
            land = visit[0][1]
            window_end = end - end % MINUTE + MINUTE
            for region in (land["region"], "all"):
                key = (window_end, land["page"], land["device"], region)
                counts[(*key, "sessions")] += 1
                counts[(*key, "bounces")] += len(visit) == 1
    return counts


def rows_of(views: dict[str, Any], family: str, view: str, through: int) -> list[dict[str, Any]]:
    return [
        row
        for key, value in views.items()
        if key.startswith(f"{family}/{view}/") and value["end_ms"] <= through
        for row in value["rows"]
    ]


def assert_rows_equal(got: list[dict[str, Any]], want: list[dict[str, Any]], key: Any) -> None:
    got_by = {(r["end_ms"], *key(r)): r for r in got}
    want_by = {(r["end_ms"], *key(r)): r for r in want}
    assert got_by.keys() == want_by.keys()
    for k, expected in want_by.items():
        actual = got_by[k]
        for field, value in expected.items():
            if isinstance(value, float):
                assert actual[field] == pytest.approx(value, abs=1e-9), (k, field)
            else:
                assert actual[field] == value, (k, field)


def test_two_workers_one_killed_match_ground_truth(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory(**JOURNEY_SETTINGS)
    assert all(r.ok for r in ensure_topics(settings, default_topic_specs(settings)))
    first = WorkerProcess(settings, tmp_path / "a.log")
    second = WorkerProcess(settings, tmp_path / "b.log")
    restarted = None
    try:
        first.start()
        second.start()
        good, last, sent = scenario(settings)
        deadline = time.monotonic() + 60
        while first.events_total() + second.events_total() < sent * 0.3:
            assert time.monotonic() < deadline, first.log_tail()
            time.sleep(0.2)
        first.kill()
        assert second.events_total() < sent, "the kill must land mid-stream"
        restarted = WorkerProcess(settings, tmp_path / "a2.log").start()
        # every deadline (<= 2 min after the data) is final once this view exists
        through = last - last % MINUTE + 4 * MINUTE
        wanted = [f"{family}/5m/{through}" for family in ("checkout", "logistics", "page_load")]
        views = settled_views(settings, wanted, through, timeout=180)
    finally:
        first.stop()  # killed above, unless the test failed before
        for worker in (second, restarted):
            if worker is not None:
                assert worker.stop() == 0, worker.log_tail()

    window_views = (("1m", 1), ("5m", 5))
    checkout = checkout_truth(
        good[EventFamily.CHECKOUT],
        views=window_views,
        abandon_ms=120_000,
        closed_through_ms=through,
    )
    for view, _k in window_views:
        want = [r for r in checkout if r["view"] == view]
        assert want
        assert_rows_equal(rows_of(views, "checkout", view, through), want, checkout_row_key)

    logistics = logistics_truth(
        good[EventFamily.LOGISTICS], through, views=window_views,
        ship_sla_ms=48_000, tracking_stale_ms=24_000,
    )  # fmt: skip
    assert logistics.breached_orders, "the warehouse backlog must breach"
    for view, _k in window_views:
        want = [r for r in logistics.rows if r["view"] == view]
        assert_rows_equal(
            rows_of(views, "logistics", view, through), want,
            lambda r: (r["kind"], r.get("warehouse", ""), r["carrier"]),
        )  # fmt: skip
    breached = sum(
        r["breach"] for r in rows_of(views, "logistics", "1m", through)
        if r["kind"] == "sla" and r["carrier"] == "all"
    )  # fmt: skip
    assert breached == len(logistics.breached_orders)

    expected_bounce = bounce_truth(good[EventFamily.PAGE_LOAD], 120_000, through)
    got_bounce: Counter[Any] = Counter()
    for row in rows_of(views, "page_load", "1m", through):
        key = (row["end_ms"], row["page"], row["device"], row["region"])
        if "kind" not in row and row["sessions"]:
            got_bounce[(*key, "sessions")] += row["sessions"]
            got_bounce[(*key, "bounces")] += row["bounces"]
    assert +got_bounce == +expected_bounce
    assert sum(v for k, v in expected_bounce.items() if k[-1] == "bounces") > 0

    # Core Web Vitals: counts and rating shares exact, p75 within the sketch's 1 %
    vitals = web_vitals_truth(good[EventFamily.PAGE_LOAD], views=window_views)
    assert any(r["kind"] == "web_vital" and r["rating"] == "poor" for r in vitals)
    for view, _k in window_views:
        want = [r for r in vitals if r["view"] == view and r["end_ms"] <= through]
        got = [r for r in rows_of(views, "page_load", view, through) if "kind" in r]
        assert_vitals_equal(got, want)


def assert_vitals_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["end_ms"], r["kind"], r.get("vital"), r["page"], r["device"], r["region"])

    got_by = {key(r): r for r in got}
    want_by = {key(r): r for r in want}
    assert got_by.keys() == want_by.keys()
    for k, expected in want_by.items():
        actual = got_by[k]
        assert actual.keys() == expected.keys(), k
        for field, value in expected.items():
            if field == "p75":
                assert abs(actual[field] - value) <= 0.01 * value, (k, actual[field], value)
            elif isinstance(value, float):
                assert actual[field] == pytest.approx(value, abs=1e-9), (k, field)
            else:
                assert actual[field] == value, (k, field)
