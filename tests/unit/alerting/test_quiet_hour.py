"""Default rules on the simulator's quiet hour: no page, although noise crosses thresholds.

An hour of every family at the simulator's base rates (payment failures 0.6-1.5 %, bounce
30 %, failed deliveries 2.5 %, all under their thresholds) through the replay pipeline:
the stages, mergers and alert engine of a worker, without Kafka. At these volumes a few
groups cross a threshold by chance (2 or 3 failures of 50-80 payments is over 3 %): the
rules' significance test must hold those back, and nothing may fire.
"""

from __future__ import annotations

import pytest

from expmon.alerting.engine import AlertEngine
from expmon.alerting.rules import load_rules
from expmon.families.registry import SIGNALS
from expmon.kafka.partition import partition_for
from expmon.replay.session import ReplayPipeline, ReplayRecord
from expmon.settings import Settings
from expmon.sim.encoding import encode_records
from expmon.sim.journeys import TrafficGenerator
from schemas.events import EventFamily

MINUTE = 60_000
START = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE
SETTINGS = Settings.from_env(kafka_bootstrap="unused:9092")
TOPICS = {
    EventFamily.PAGE_LOAD: SETTINGS.topic_page_loads,
    EventFamily.CHECKOUT: SETTINGS.topic_checkout,
    EventFamily.LOGISTICS: SETTINGS.topic_logistics,
}


@pytest.fixture(scope="module")
def quiet_hour() -> tuple[ReplayPipeline, AlertEngine]:
    # 30 events/s of every family (default mix); order lifecycles compressed 24x so that
    # shipments and deliveries are decided within the hour
    generator = TrafficGenerator(
        seed=11, rate=30, start_ms=START, duration_s=3600, lifecycle_compression=24
    )
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for r in encode_records(generator, batch_size=1, seed=11, partitions=dict.fromkeys(TOPICS, 3)):
        topic = TOPICS[r.family]
        partition = partition_for(r.key, 3)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        records.append(ReplayRecord(topic, partition, offset, r.time_ms, r.key.encode(), r.value))
    pipeline = ReplayPipeline(
        SETTINGS, dict.fromkeys(TOPICS.values(), 3), load_rules(signals=SIGNALS)
    )
    for i in range(0, len(records), 1000):
        pipeline.feed(records[i : i + 1000])
    pipeline.finish()
    return pipeline, pipeline.timelines[0].engine


def test_default_rules_raise_nothing_in_a_quiet_hour(
    quiet_hour: tuple[ReplayPipeline, AlertEngine],
) -> None:
    pipeline, engine = quiet_hour
    assert pipeline.report()["alerts"] == []
    assert not [i for i in engine.instances.values() if i.state != "resolved"]


def test_the_quiet_hour_exercised_the_rules(
    quiet_hour: tuple[ReplayPipeline, AlertEngine],
) -> None:
    """The test above could fail: every family's rules saw windows with enough volume,
    and payment failures crossed 3 % by chance, which without the interval would page."""
    _, engine = quiet_hour
    stats = engine.stats
    for rule_id in (
        "PageLoadSlow:warning",
        "BounceRateHigh:warning",
        "PaymentFailureRateHigh:critical",
        "CheckoutDropOffSpike:critical",
        "ShippingSLABreach:warning",
    ):
        assert stats[rule_id].with_volume > 10, (rule_id, stats[rule_id])
    payment = stats["PaymentFailureRateHigh:critical"]
    assert payment.breaches >= 3 and payment.not_significant == payment.breaches, payment
    assert "— not significant" in payment.near_miss
