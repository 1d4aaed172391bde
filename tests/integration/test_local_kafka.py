"""The embedded broker and topic administration against a real Kafka."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from expmon.errors import LocalKafkaError
from expmon.kafka.admin import TopicSpec, default_topic_specs, ensure_topics, partition_count
from expmon.local.kafka.broker import LocalKafka
from expmon.settings import Settings, default_cache_dir

SettingsFactory = Callable[..., Settings]


def test_broker_round_trips_a_record(kafka_bootstrap: str, unique: str) -> None:
    topic = f"roundtrip-{unique}"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        # auto.create.topics.enable=true: the first send creates the topic.
        producer.send(topic, key=b"k1", value=b'{"hello": "kafka"}').get(timeout=60)
        producer.flush()
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{unique}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=30_000,
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            break
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"k1", b'{"hello": "kafka"}')]


def test_ensure_topics_creates_and_is_idempotent(settings_factory: SettingsFactory) -> None:
    settings: Settings = settings_factory(topic_partitions=3)
    specs = default_topic_specs(settings)

    first = ensure_topics(settings, specs)
    assert [r.status for r in first] == ["created"] * len(specs)
    for spec, report in zip(specs, first, strict=True):
        assert report.name == spec.name
        assert report.partitions == spec.partitions
        assert partition_count(settings, spec.name) == spec.partitions
    assert partition_count(settings, settings.topic_page_loads) == 3
    assert partition_count(settings, settings.topic_window_partials) == 1

    second = ensure_topics(settings, specs)
    assert [r.status for r in second] == ["exists"] * len(specs)
    assert all(r.ok for r in second)


def test_ensure_topics_reports_too_few_partitions(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    name = settings.topic_alerts
    ensure_topics(settings, [TopicSpec(name, 1)])
    [report] = ensure_topics(settings, [TopicSpec(name, 4)])
    assert report.status == "problem"
    assert report.partitions == 1  # reported, never silently altered
    assert partition_count(settings, name) == 1


def test_partition_count_of_missing_topic_is_none(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    assert partition_count(settings, f"{settings.topic_dlq}-absent") is None


def test_second_broker_on_same_port_fails_clearly(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    second = LocalKafka(default_cache_dir(), data_dir=tmp_path / "kafka2", port=port)
    with pytest.raises(LocalKafkaError, match=rf"\b{port}\b.*already in use"):
        second.start(timeout=60)
    assert not second.running
