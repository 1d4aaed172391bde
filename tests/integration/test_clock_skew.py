"""One phone's clock 20 h ahead, against the real broker and a real worker process.

Its event is dead-lettered as `clock_skew` (its time is far ahead of the broker's
timestamp of its record) and moves no watermark: every other event keeps the outcome it
would have had without it (here: all accepted, none late), and the worker's windows equal
a replay of what the topic holds (replay applies the same rule to the same timestamps).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from schemas import codec
from tests.integration.test_event_time_faults import assert_same_views, replay_views
from tests.integration.test_page_load_worker import (
    MINUTE,
    create_topics,
    page_load,
    producer,
    wait_for,
)
from tests.integration.worker_process import WorkerProcess, final_views, read_topic

PARTITIONS = 3
PER_PARTITION = 120  # one event a second on each partition: two minutes of traffic
HOUR = 60 * MINUTE


@pytest.mark.timeout(600)
def test_a_client_clock_20_hours_ahead_is_clock_skew_and_changes_nothing_else(
    settings_factory: Any, tmp_path: Path
) -> None:
    settings = settings_factory(topic_partitions=PARTITIONS, idle_partition_timeout_seconds=3.0)
    create_topics(settings)
    rng = random.Random(20)
    start_ms = int(time.time() * 1000) - 10 * MINUTE
    start_ms -= start_ms % MINUTE
    on_time = {
        p: [page_load(f"p{p}-{i}", start_ms + i * 1000, rng) for i in range(PER_PARTITION)]
        for p in range(PARTITIONS)
    }
    skewed = page_load("phone-20h-ahead", int(time.time() * 1000) + 20 * HOUR, rng)
    assert skewed["occurred_at"] < time.time() * 1000 + settings.max_future_seconds * 1000
    # The skewed event sits in the middle of partition 0: everything after it there (and on
    # the other partitions, which follow the busiest when idle) must stay on time.
    sequence = {p: list(events) for p, events in on_time.items()}
    sequence[0].insert(PER_PARTITION // 2, skewed)
    flush_t = int(time.time() * 1000) + 2 * MINUTE  # closes the traffic's windows
    for p in range(PARTITIONS):
        sequence[p].append(page_load(f"flush-{p}", flush_t, rng))
    total = sum(len(events) for events in sequence.values())

    worker = WorkerProcess(settings, tmp_path / "worker.log").start(timeout=90)
    try:
        prod = producer(settings)
        for i in range(max(len(events) for events in sequence.values())):
            for p, events in sequence.items():
                if i < len(events):
                    prod.send(settings.topic_page_loads, value=codec.dumps(events[i]), partition=p)
        prod.flush()
        prod.close()
        through = flush_t - settings.lateness_ms - (flush_t - settings.lateness_ms) % MINUTE
        wait_for(lambda: worker.events_total() >= total, 180, "every event counted", worker)
        wait_for(
            lambda: f"page_load/1m/{start_ms + 2 * MINUTE}" in final_views(settings),
            120,
            "the traffic's windows",
            worker,
        )
        accepted, late = worker.events_total("accepted"), worker.events_total("late")
        got = final_views(settings)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    assert (accepted, late) == (total - 1, 0)
    letters = read_topic(settings, settings.topic_dlq)
    assert [
        (codec.loads(r.value)["event_id"], dict(r.headers)["expmon-reason"]) for r in letters
    ] == [("phone-20h-ahead", b"clock_skew")]
    want = replay_views(settings, PARTITIONS, through)
    assert want, "the replay closed no window: the test lost its point"
    assert_same_views(got, want, through)
    # independent truth: every on-time event with a load time is in a 1m window's totals
    loads = sum(1 for events in on_time.values() for e in events if "load_ms" in e)
    counted = sum(
        row["count"]
        for key, view in got.items()
        if key.startswith("page_load/1m/") and view["end_ms"] <= through
        for row in view["rows"]
        if row.get("kind", "load") == "load" and row["region"] == "all"
    )
    assert counted == loads
