"""Event time under production faults, against real brokers and real worker processes.

The oracle is always a replay of what the topic holds (the same stages, no clock, no
idleness): a broker outage, quiet partitions spread over two workers, or corrections must
end in exactly the windows a replay gives, and no event may be late that a replay accepts.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from expmon.engine.stage import RawRecord
from expmon.families.registry import FAMILIES
from expmon.kafka.connection import kafka_python_kwargs
from expmon.kafka.partition import partition_for
from expmon.local.kafka.broker import LocalKafka
from expmon.settings import Settings, default_cache_dir
from expmon.sim.encoding import encode_records
from expmon.sim.journeys import TrafficGenerator
from schemas import codec
from tests.integration.sim_outage import SimOutage
from tests.integration.test_page_load_worker import (
    MINUTE,
    create_topics,
    page_load,
    wait_for,
)
from tests.integration.worker_process import (
    WorkerProcess,
    assert_rows_match,
    final_views,
    read_topic,
)


def readyz(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{worker.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def replay_views(settings: Settings, partitions: int, through: int) -> dict[str, Any]:
    """Every family's views of what its topic holds, as `expmon replay` computes them."""
    views: dict[str, Any] = {}
    for family in FAMILIES:
        records = read_topic(settings, family.topic(settings))
        stage = family.new_stage(settings, partitions, live=False)
        raw = [RawRecord(r.partition, r.offset, r.key, r.value, r.timestamp) for r in records]
        out = stage.process(raw)
        results = family.new_merger(settings).apply(out.partials).results
        views.update({r.record_key: r.to_dict() for r in results if r.end_ms <= through})
    return views


def assert_same_views(got: dict[str, Any], want: dict[str, Any], through: int) -> None:
    live = {k: v for k, v in got.items() if v["end_ms"] <= through}
    # a view the replay does not have may exist live only if corrections emptied it
    extra = {k for k, v in live.items() if k not in want and v["rows"]}
    assert not extra, sorted(extra)[:5]
    missing = sorted(k for k in want if k not in live)
    assert not missing, missing[:5]
    for key, expected in want.items():
        assert_rows_match(live[key]["rows"], expected["rows"], key)


OUTAGE_S = 120.0


@pytest.mark.timeout(900)
def test_a_two_minute_broker_outage_loses_nothing_and_readyz_says_so(
    settings_factory: Any, tmp_path: Path, simulate_outage: SimOutage
) -> None:
    # (`simulate_outage` runs its own broker's outage meanwhile: test_simulate_outage)
    broker = LocalKafka(default_cache_dir(), data_dir=tmp_path / "kafka")
    broker.start(timeout=120)
    worker: WorkerProcess | None = None
    try:
        settings = settings_factory(
            kafka_bootstrap=broker.bootstrap, idle_partition_timeout_seconds=5.0
        )
        create_topics(settings)
        worker = WorkerProcess(settings, tmp_path / "worker.log").start()
        rng = random.Random(3)
        sent: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            # Retries through the outage, as Kafka's own producers do by default.
            prod = KafkaProducer(
                **kafka_python_kwargs(settings),
                linger_ms=20,
                acks="all",
                delivery_timeout_ms=600_000,
                max_block_ms=600_000,
                request_timeout_ms=10_000,
            )
            i = 0
            while not stop.is_set():
                now = int(time.time() * 1000)  # the client's clock: event time is creation time
                eid = f"e{i}"
                prod.send(settings.topic_page_loads, value=codec.dumps(page_load(eid, now, rng)))
                sent.append(eid)
                i += 1
                time.sleep(0.02)
            prod.flush(timeout=300)
            prod.close(timeout=30)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        wait_for(lambda: worker.events_total() >= 200, 90, "200 events before the outage", worker)
        broker.kill()
        outage_started = time.monotonic()
        seen_not_ready = False
        lag_unknown = False
        watermark_lags: list[float] = []
        # two minutes down at least: the restart below adds its own start-up time
        while time.monotonic() - outage_started < OUTAGE_S:
            status, body = readyz(worker)
            if status == 503 and "broker unreachable" in body.get("reason", ""):
                seen_not_ready = True
                samples = worker.metrics(
                    "expmon_consumer_lag_messages", "expmon_watermark_lag_seconds"
                )
                topic = (("topic", settings.topic_page_loads),)
                lag = samples.get(("expmon_consumer_lag_messages", topic))
                lag_unknown = lag_unknown or (lag is not None and math.isnan(lag))
                watermark_lags.append(samples[("expmon_watermark_lag_seconds", topic)])
            time.sleep(2)
        broker.start(timeout=120)
        down_s = time.monotonic() - outage_started
        # some traffic after the outage as well: the backlog delivered, then fresh events
        # consumed, and the outage's alert resolved
        backlog = len(sent)
        wait_for(
            lambda: (
                worker.events_total() >= backlog + 100
                and "ALERT RESOLVED KafkaUnreachable" in worker.log_tail(100_000)
            ),
            180,
            "the backlog and fresh events after the outage, KafkaUnreachable resolved",
            worker,
        )
        stop.set()
        thread.join(300)
        assert not thread.is_alive(), "the producer did not deliver its backlog"
        # one event well ahead on every partition closes every window before it
        flush_t = int(time.time() * 1000) + 2 * MINUTE
        prod = KafkaProducer(**kafka_python_kwargs(settings))
        for p in range(settings.topic_partitions):
            ev = page_load(f"end-{p}", flush_t, rng)
            prod.send(settings.topic_page_loads, value=codec.dumps(ev), partition=p)
        prod.flush()
        prod.close()
        through = flush_t - settings.lateness_ms - (flush_t - settings.lateness_ms) % MINUTE
        wait_for(
            lambda: (
                worker.events_total() >= len(sent) + settings.topic_partitions
                and f"page_load/1h/{through}" in final_views(settings)
            ),
            180,
            "every event and the last window",
            worker,
        )
        assert down_s >= OUTAGE_S, down_s
        assert seen_not_ready, "/readyz stayed ready while the broker was down"
        assert lag_unknown, "consumer lag kept its last value while the broker was down"
        assert watermark_lags[-1] >= watermark_lags[0] + 60, watermark_lags
        log = worker.log_tail(100_000)
        assert "ALERT FIRING KafkaUnreachable" in log, "no KafkaUnreachable during the outage"
        assert "ALERT RESOLVED KafkaUnreachable" in log
        assert worker.events_total("late") == 0
        assert worker.events_total("accepted") == len(sent) + settings.topic_partitions
        got = final_views(settings)
        assert worker.stop() == 0, worker.log_tail()
        want = replay_views(settings, settings.topic_partitions, through)
        assert_same_views(got, want, through)
    finally:
        if worker is not None:
            worker.stop()  # a no-op once stopped; on a failure, the worker must not outlive it
        broker.stop()


def journey_records(settings: Settings, start_ms: int, partitions: int) -> list[Any]:
    """Simulated traffic of every family, placed on partitions by key."""
    generator = TrafficGenerator(
        seed=9,
        start_ms=start_ms,
        rate=10,
        duration_s=420,
        lifecycle_compression=3600,
        incidents=["payment_outage@120s+120s:provider=adyen"],
    )
    partitions_of = {family.name: partitions for family in FAMILIES}
    return list(encode_records(generator.generate(), 1, seed=9, partitions=partitions_of))


@pytest.mark.timeout(900)
def test_two_workers_with_quiet_partitions_equal_a_replay_for_every_family(
    settings_factory: Any, tmp_path: Path
) -> None:
    """Partitions 3-5 of every topic go quiet while 0-2 advance; their held records come
    later (in time, not late). Two workers, each holding some quiet partitions, show them
    early and then correct: the end state equals a replay, and nothing is late."""
    partitions = 6
    settings = settings_factory(
        topic_partitions=partitions,
        idle_partition_timeout_seconds=3.0,
        ship_sla_seconds=48,
        tracking_stale_seconds=24,
        checkout_abandon_seconds=300,
        bounce_seconds=300,
    )
    create_topics(settings)
    start_ms = int(time.time() * 1000) - 20 * MINUTE
    start_ms -= start_ms % MINUTE
    records = journey_records(settings, start_ms, partitions)
    t1, t2 = start_ms + 2 * MINUTE, start_ms + 5 * MINUTE

    def quiet(record: Any) -> bool:
        return partition_for(record.key, partitions) >= 3

    held = [r for r in records if quiet(r) and t1 <= r.time_ms < t2]
    held_ids = {id(r) for r in held}
    first = [r for r in records if id(r) not in held_ids and r.time_ms < t2]
    rest = [r for r in records if id(r) not in held_ids and r.time_ms >= t2]
    topic_of = {family.name: family.topic(settings) for family in FAMILIES}

    def send(prod: KafkaProducer, batch: list[Any]) -> None:
        for r in batch:
            partition = partition_for(r.key, partitions)
            prod.send(topic_of[r.family], key=r.key.encode(), value=r.value, partition=partition)
        prod.flush()

    workers = [
        WorkerProcess(settings, tmp_path / f"worker-{n}.log").start(timeout=90) for n in (1, 2)
    ]
    try:
        prod = KafkaProducer(**kafka_python_kwargs(settings), linger_ms=5, acks="all")
        send(prod, first)
        # The quiet partitions become idle and are shown early: the minute before t2 closes
        # for every family, which their watermarks (< t1) alone would not let happen.
        early = [f"{family.name}/1m/{t2 - MINUTE}" for family in FAMILIES]
        wait_for(
            lambda: all(key in final_views(settings) for key in early),
            90,
            f"views shown early: {early}",
            workers[0],
        )
        send(prod, held + rest)
        flush_t = int(time.time() * 1000) + 2 * MINUTE
        flush = []
        for family in FAMILIES:
            for p in range(partitions):
                flush.append(_flush_record(family.name, p, flush_t, topic_of))
        for topic, p, value in flush:
            prod.send(topic, value=value, partition=p)
        prod.flush()
        prod.close()
        through = flush_t - settings.lateness_ms - (flush_t - settings.lateness_ms) % MINUTE
        total = sum(len(r.events) + (r.bad is not None) for r in records) + len(flush)

        progress: dict[str, Any] = {}

        def done() -> bool:
            progress["counted"] = counted = sum(w.events_total() for w in workers)
            if counted < total:
                return False
            views = final_views(settings)
            progress["missing"] = missing = [
                f.name for f in FAMILIES if f"{f.name}/1h/{through}" not in views
            ]
            progress["near"] = sorted(
                (k, v.get("revision"), len(v["rows"]))
                for k, v in views.items()
                if abs(v["end_ms"] - through) <= 2 * MINUTE and "/1h/" in k
            )
            progress["through"] = through
            return not missing

        try:
            wait_for(done, 300, "every event and the last windows", workers[0])
        except AssertionError:
            status = [line for line in workers[0].log_tail(400).splitlines() if "merge[" in line]
            status += [line for line in workers[1].log_tail(400).splitlines() if "merge[" in line]
            raise AssertionError(f"{progress} of {total}: {status[-6:]}") from None
        time.sleep(3)  # the last corrections
        revisions = sum(
            v
            for w in workers
            for (name, _labels), v in w.metrics().items()
            if name == "expmon_window_revisions_total"
        )
        assert sum(w.events_total("late") for w in workers) == 0
        got = final_views(settings)
    finally:
        for w in workers:
            assert w.stop() == 0, w.log_tail()
    want = replay_views(settings, partitions, through)
    assert_same_views(got, want, through)
    assert revisions > 0, "no window was shown early and corrected: the test lost its point"


def _flush_record(
    family: Any, partition: int, t: int, topic_of: dict[Any, str]
) -> tuple[str, int, bytes]:
    """A lone, terminal event far ahead: it moves the partition's watermark, leaves no state."""
    base = {
        "event_id": f"flush-{family}-{partition}",
        "occurred_at": t,
        "schema_version": 1,
        "session_id": f"flush-{partition}",
        "device": "desktop",
        "platform": "web",
        "region": "eu-west",
    }
    name = str(family)
    if name == "page_load":
        event = {**base, "page": "/", "load_ms": 100}
    elif name == "checkout":
        event = {**base, "checkout_id": f"flush-{partition}", "step": "cart_viewed"}
    else:
        event = {
            **base,
            "order_id": f"flush-{partition}",
            "status": "returned",
            "carrier": "dhl",
            "warehouse": "ams-1",
        }
    return topic_of[family], partition, codec.dumps(event)
