"""Label limits against the real broker: more pages, carriers and providers than the
limits, and the same labels live, after a SIGKILL and restart, and in `expmon replay`.

Two workers read the same input topics in two consumer groups (each with its own state,
partials and windows topics): one runs through, the other is SIGKILLed mid-stream and
restarted from its changelog. Their final windows and a replay of the range must agree
row for row, `other` counts included.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from expmon.families.registry import FAMILIES
from expmon.kafka.connection import kafka_python_kwargs
from expmon.kafka.partition import partition_for
from expmon.replay.run import ReplayOptions, run_replay
from expmon.replay.session import canonical
from expmon.settings import Settings
from expmon.sim.encoding import Record, encode_records
from expmon.sim.journeys import TrafficGenerator
from schemas import codec
from tests.integration.test_event_time_faults import _flush_record
from tests.integration.test_page_load_worker import MINUTE, create_topics, wait_for
from tests.integration.worker_process import WorkerProcess, settled_views_of

PARTITIONS = 3
MAX_PAGES = 5  # a partition keeps 20 per window: 15 pages never reach that cap
MAX_LABEL_VALUES = 3  # 12 per window and partition: 10 carriers, 8 providers
PAGES = tuple(f"/page/{i:02}" for i in range(15))
CARRIERS = tuple(f"carrier-{i}" for i in range(10))
WAREHOUSES = tuple(f"wh-{i}" for i in range(6))
PROVIDERS = tuple(f"psp-{i}" for i in range(8))


def skewed(choices: Sequence[str], seed: str, base: float = 1.6) -> str:
    """A value of `choices`, the first ones likelier (a tail), fixed by `seed`."""
    rng = random.Random(zlib.crc32(seed.encode()))
    weights = [base ** (len(choices) - i) for i in range(len(choices))]
    return rng.choices(choices, weights=weights)[0]


def relabel(event: dict[str, Any]) -> dict[str, Any]:
    event = dict(event)
    if "page" in event:
        # a flat tail: neighbours in rank swap places from one view to the next
        event["page"] = skewed(PAGES, event["event_id"], base=1.08)
    if "order_id" in event:
        event["carrier"] = skewed(CARRIERS, event["order_id"])
        event["warehouse"] = skewed(WAREHOUSES, event["order_id"] + "/w")
    if "payment_provider" in event:
        event["payment_provider"] = skewed(PROVIDERS, event["checkout_id"])
    return event


def many_label_records(start_ms: int) -> list[Record]:
    """Every family's simulated traffic (orders' lifecycles compressed), relabelled."""
    generator = TrafficGenerator(
        seed=5, start_ms=start_ms, rate=14, duration_s=480, lifecycle_compression=3600
    )
    items = [
        (family, key, relabel(event))
        for family, key, event in generator.generate()
        if isinstance(event, dict)
    ]
    partitions_of = {family.name: PARTITIONS for family in FAMILIES}
    return list(encode_records(items, 1, partitions=partitions_of))


def second_group(settings: Settings, tmp_path: Path) -> Settings:
    """The same input topics, read by another consumer group with topics of its own."""
    suffix = "-restarted"
    return settings.model_copy(
        update={
            "app_id": settings.app_id + suffix,
            "topic_window_partials": settings.topic_window_partials + suffix,
            "topic_windows": settings.topic_windows + suffix,
            "topic_alerts": settings.topic_alerts + suffix,
            "topic_dlq": settings.topic_dlq + suffix,
            "state_dir": tmp_path / "state-restarted",
        }
    )


def replayed_views(settings: Settings, report: Path) -> dict[str, list[Any]]:
    assert run_replay(settings, ReplayOptions(report=report, progress=False)) == 0
    windows = codec.loads(report.read_bytes())["windows"]
    return {f"{w['family']}/{w['view']}/{w['end_ms']}": w["rows"] for w in windows}


def comparable(views: dict[str, Any], through: int) -> dict[str, list[Any]]:
    """Views ending by `through` that hold rows, with rows in a canonical form."""
    out = {}
    for key, rows in views.items():
        end = int(key.rsplit("/", 1)[1])
        if end <= through and rows:
            out[key] = sorted((canonical(r) for r in rows), key=codec.dumps)
    return out


def label_values(views: dict[str, list[Any]], family: str, label: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for key, rows in views.items():
        if key.startswith(family + "/"):
            found[key] |= {str(r[label]) for r in rows if label in r}
    return found


@pytest.mark.timeout(900)
def test_labels_live_equal_replay_and_a_restart_after_sigkill(
    settings_factory: Any, tmp_path: Path
) -> None:
    settings = settings_factory(
        topic_partitions=PARTITIONS,
        max_pages=MAX_PAGES,
        max_label_values=MAX_LABEL_VALUES,
        ship_sla_seconds=48,
        tracking_stale_seconds=24,
        checkout_abandon_seconds=300,
        bounce_seconds=300,
        # the SIGKILLed worker's group member expires sooner: its successor joins sooner
        kafka_session_timeout_seconds=10.0,
    )
    restarted_settings = second_group(settings, tmp_path)
    create_topics(settings)
    create_topics(restarted_settings)
    start_ms = int(time.time() * 1000) - 20 * MINUTE
    start_ms -= start_ms % MINUTE
    records = many_label_records(start_ms)
    topic_of = {family.name: family.topic(settings) for family in FAMILIES}
    first_part, second_part = records[: len(records) * 6 // 10], records[len(records) * 6 // 10 :]

    def send(prod: KafkaProducer, batch: list[Record]) -> None:
        for r in batch:
            partition = partition_for(r.key, PARTITIONS)
            prod.send(topic_of[r.family], key=r.key.encode(), value=r.value, partition=partition)
        prod.flush()

    live = WorkerProcess(settings, tmp_path / "live.log").start(timeout=90)
    restarted = WorkerProcess(restarted_settings, tmp_path / "killed.log").start(timeout=90)
    try:
        prod = KafkaProducer(**kafka_python_kwargs(settings), linger_ms=5, acks="all")
        send(prod, first_part)
        half = sum(len(r.events) for r in records) // 2
        wait_for(lambda: restarted.events_total() >= half, 120, "half the events", restarted)
        restarted.kill()
        send(prod, second_part)
        restarted = WorkerProcess(restarted_settings, tmp_path / "restarted.log").start(timeout=90)
        flush_t = int(time.time() * 1000) + 2 * MINUTE
        for family in FAMILIES:
            for p in range(PARTITIONS):
                topic, partition, value = _flush_record(family.name, p, flush_t, topic_of)
                prod.send(topic, value=value, partition=partition)
        prod.flush()
        prod.close()
        through = flush_t - settings.lateness_ms - (flush_t - settings.lateness_ms) % MINUTE
        wanted = [f"{family.name}/1h/{through}" for family in FAMILIES]
        got_live, got_restarted = settled_views_of(
            [settings, restarted_settings], wanted, through, timeout=300
        )
        samples = live.metrics("expmon_page_load_window_loads", "expmon_delivery_window_attempts")
    finally:
        assert live.stop() == 0, live.log_tail()
        assert restarted.stop() == 0, restarted.log_tail()
    assert "state restored" in restarted.log_tail(100_000)

    live_views = comparable({k: v["rows"] for k, v in got_live.items()}, through)
    restarted_views = comparable({k: v["rows"] for k, v in got_restarted.items()}, through)
    replay = comparable(replayed_views(settings, tmp_path / "replay.json"), through)
    assert live_views.keys() == replay.keys()
    assert restarted_views.keys() == replay.keys()
    for key, rows in replay.items():
        assert live_views[key] == rows, key
        assert restarted_views[key] == rows, key

    # the limits were exceeded and every view shows its top N plus `other`
    pages = label_values(replay, "page_load", "page")
    carriers = label_values(replay, "logistics", "carrier")
    providers = label_values(replay, "checkout", "provider")
    limits = ((pages, MAX_PAGES), (carriers, MAX_LABEL_VALUES), (providers, MAX_LABEL_VALUES))
    for found, limit in limits:
        assert all(len(values - {"other", "all"}) <= limit for values in found.values())
        assert any("other" in values for values in found.values())
    assert len(set().union(*pages.values())) > MAX_PAGES + 1  # views differ in their top N
    # the gauges show the folded rows' labels (of every view the worker holds), no others
    every_view = {k: v["rows"] for k, v in got_live.items()}
    row_pages = set().union(*label_values(every_view, "page_load", "page").values())
    row_carriers = set().union(*label_values(every_view, "logistics", "carrier").values())
    shown_pages = {dict(labels)["page"] for (name, labels) in samples if "page_load" in name}
    shown_carriers = {dict(labels)["carrier"] for (name, labels) in samples if "delivery" in name}
    assert "other" in shown_pages and shown_pages <= row_pages
    assert shown_carriers and shown_carriers <= row_carriers
