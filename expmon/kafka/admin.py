"""Topic administration (kafka-python admin client): create what is missing, check the rest.

Existing topics are never altered: a topic with too few partitions is reported as a
problem for a human to fix, because adding partitions silently re-keys the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from expmon.errors import TopicError
from expmon.families.registry import input_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.settings import Settings

logger = logging.getLogger(__name__)

DLQ_RETENTION_MS = 14 * 24 * 3600 * 1000
# An input record may be as large as the broker allows; its dead letter adds headers on top.
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

TopicStatus = Literal["created", "exists", "problem"]


@dataclass(frozen=True)
class TopicSpec:
    """A topic as Experience Monitor wants it.

    `exact_partitions`: the topic must have exactly `partitions` (the single-partition
    window topics rely on total order); otherwise more partitions than asked are fine.
    """

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict, hash=False)
    exact_partitions: bool = False


@dataclass(frozen=True)
class TopicReport:
    name: str
    status: TopicStatus
    partitions: int | None
    wanted_partitions: int
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "problem"


def default_topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.topic_partitions
    specs = [TopicSpec(topic, n) for topic in input_topics(settings)]
    specs += [
        TopicSpec(
            settings.topic_dlq,
            n,
            {
                "retention.ms": str(DLQ_RETENTION_MS),
                "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
            },
        ),
        TopicSpec(settings.topic_alerts, n),
        # One partition: partial windows from every worker meet in one ordered stream.
        TopicSpec(settings.topic_window_partials, 1, exact_partitions=True),
        # Compacted: only the latest state of each closed window matters.
        TopicSpec(settings.topic_windows, 1, {"cleanup.policy": "compact"}, exact_partitions=True),
    ]
    return specs


@contextmanager
def _admin(settings: Settings, timeout: float) -> Iterator[Any]:
    try:
        admin = KafkaAdminClient(
            **kafka_python_kwargs(settings),
            client_id=f"{settings.app_id}-topics",
            request_timeout_ms=int(timeout * 1000),
            # kafka-python's default bootstrap wait is 30 s whatever the caller's timeout.
            bootstrap_timeout_ms=int(timeout * 1000),
        )
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc!r}") from exc
    try:
        yield admin
    finally:
        admin.close()


def _describe(admin: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """name -> metadata dict, only for topics that exist (error_code 0)."""
    if not names:
        return {}
    topics: list[dict[str, Any]] = admin.describe_topics(list(names))
    return {t["name"]: t for t in topics if t.get("error_code", 0) == 0}


def _ready(topic: dict[str, Any] | None, partitions: int) -> bool:
    if topic is None:
        return False
    parts = topic.get("partitions") or []
    return len(parts) >= partitions and all(
        p.get("error_code", 0) == 0 and p.get("leader_id", -1) >= 0 for p in parts
    )


def _check_existing(spec: TopicSpec, topic: dict[str, Any]) -> TopicReport:
    count = len(topic.get("partitions") or [])
    problem = None
    if count < spec.partitions:
        problem = (
            f"has {count} partitions, {spec.partitions} wanted; add them by hand"
            f" (kafka-topics --alter --partitions {spec.partitions}) if that is intended"
        )
    elif spec.exact_partitions and count != spec.partitions:
        problem = f"has {count} partitions, exactly {spec.partitions} required; recreate it"
    if problem:
        return TopicReport(spec.name, "problem", count, spec.partitions, problem)
    return TopicReport(spec.name, "exists", count, spec.partitions)


def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec] | None = None,
    timeout: float = 30.0,
    create: bool = True,
) -> list[TopicReport]:
    """Create missing topics (unless `create` is False), check existing ones.

    One report per spec, in spec order; a missing topic not created is a problem.
    """
    wanted = list(default_topic_specs(settings) if specs is None else specs)
    deadline = time.monotonic() + timeout
    try:
        with _admin(settings, timeout) as admin:
            existing = _describe(admin, [s.name for s in wanted])
            missing = [s for s in wanted if s.name not in existing] if create else []
            created: set[str] = set()
            for spec in missing:
                # One request per topic: a TopicAlreadyExistsError (another worker won the
                # race) then concerns exactly this topic, and the others still get created.
                try:
                    admin.create_topics(
                        {
                            spec.name: {
                                "num_partitions": spec.partitions,
                                # -1: the broker's default.replication.factor
                                "replication_factor": settings.replication_factor or -1,
                                "configs": dict(spec.configs),
                            }
                        },
                        timeout_ms=int(timeout * 1000),
                    )
                    created.add(spec.name)
                    logger.info("created topic %s (%d partitions)", spec.name, spec.partitions)
                except TopicAlreadyExistsError:
                    logger.info("topic %s was created concurrently", spec.name)
            present = [s for s in wanted if s.name in existing or s.name in created]
            existing = _await_leaders(admin, present, created, deadline)
    except KafkaError as exc:
        raise TopicError(
            f"topic administration on {settings.kafka_bootstrap} failed: {exc!r}"
        ) from exc

    reports = []
    for spec in wanted:
        topic = existing.get(spec.name)
        if topic is None:
            reports.append(TopicReport(spec.name, "problem", None, spec.partitions, "missing"))
        elif spec.name in created:
            count = len(topic.get("partitions") or [])
            reports.append(TopicReport(spec.name, "created", count, spec.partitions))
        else:
            reports.append(_check_existing(spec, topic))
    for report in reports:
        if report.problem:
            logger.warning("topic %s: %s", report.name, report.problem)
    return reports


def _await_leaders(
    admin: Any, specs: Sequence[TopicSpec], created: set[str], deadline: float
) -> dict[str, dict[str, Any]]:
    # CreateTopics returns before the metadata shows leaders (KRaft propagates it
    # asynchronously); producers started right after would see UnknownTopicOrPartition.
    names = [s.name for s in specs]
    while True:
        topics = _describe(admin, names)
        # Topics we created must show all their partitions; pre-existing ones only need to
        # be visible with leaders (a short partition count is reported, not waited for).
        pending = [
            s.name
            for s in specs
            if not _ready(topics.get(s.name), s.partitions if s.name in created else 1)
        ]
        if not pending:
            return topics
        if time.monotonic() >= deadline:
            raise TopicError(f"topics without partition leaders after the timeout: {pending}")
        time.sleep(0.2)


def partition_count(settings: Settings, topic: str, timeout: float = 30.0) -> int | None:
    """Partitions of `topic`, or None if it does not exist."""
    try:
        with _admin(settings, timeout) as admin:
            found = _describe(admin, [topic]).get(topic)
    except KafkaError as exc:
        raise TopicError(f"describing topic {topic} failed: {exc!r}") from exc
    if found is None:
        return None
    return len(found.get("partitions") or [])


def broker_default_replication(settings: Settings, timeout: float = 10.0) -> int | None:
    """The cluster's `default.replication.factor` (None if it cannot be read)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        with _admin(settings, timeout) as admin:
            brokers = admin.describe_cluster()["brokers"]
            node = (
                str(brokers[0].get("broker_id", brokers[0].get("node_id", 0))) if brokers else "0"
            )
            found = admin.describe_configs(
                [ConfigResource(ConfigResourceType.BROKER, node, ["default.replication.factor"])],
                config_filter="all",
            )
    except (KafkaError, TopicError, KeyError, IndexError) as exc:
        logger.warning("could not read default.replication.factor: %r", exc)
        return None
    for resources in found.values():
        for configs in resources.values():
            entry = configs.get("default.replication.factor")
            if entry is not None:
                value = entry.get("value") if isinstance(entry, dict) else entry
                return int(str(value))
    return None


def replication_factor(settings: Settings, brokers: int) -> tuple[int, str]:
    """The replication factor of the topics the monitor creates (its own and faust's
    changelogs), and why: the setting, else 3 on a cluster of >= 3 brokers, else the
    broker's default."""
    if settings.replication_factor is not None:
        if settings.replication_factor > brokers:
            raise TopicError(
                f"EXPMON_REPLICATION_FACTOR={settings.replication_factor} but the cluster "
                f"has {brokers} broker(s)"
            )
        return settings.replication_factor, "EXPMON_REPLICATION_FACTOR"
    if brokers >= 3:
        return 3, f"{brokers} brokers"
    default = broker_default_replication(settings)
    if default is None or default < 1:
        return 1, f"{brokers} broker(s); default.replication.factor unreadable"
    return min(default, brokers), f"{brokers} broker(s), default.replication.factor={default}"
