"""`expmon worker`: topics checked, faust worker started, metrics served."""

from __future__ import annotations

import logging

from expmon.errors import TopicError
from expmon.gctune import throughput_gc
from expmon.metrics import Metrics, new_registry
from expmon.settings import Settings
from expmon.topics import default_topic_specs, ensure_topics, partition_count

log = logging.getLogger(__name__)


def input_partitions(settings: Settings, create_topics: bool = True) -> dict[str, int]:
    """Partition count of each input topic, creating missing topics first when asked."""
    if create_topics:
        for report in ensure_topics(settings, default_topic_specs(settings)):
            log.info("topic %s", report)
    counts: dict[str, int] = {}
    for topic in settings.input_topics:
        n = partition_count(settings, topic)
        if n is None:
            raise TopicError(f"input topic {topic!r} does not exist (run `expmon topics create`)")
        counts[topic] = n
    return counts


def run_worker(settings: Settings, create_topics: bool = True) -> None:
    """Run until SIGINT/SIGTERM; faust's worker handles the signals and a clean shutdown."""
    import faust  # deferred: importing faust is slow and only the worker needs it

    from expmon.alerting.rules import load_rules
    from streams.app import build_runtime

    rules = load_rules(settings.rules_files, settings.views)  # fail fast on bad rules
    partitions = input_partitions(settings, create_topics)
    metrics = Metrics(new_registry())
    runtime = build_runtime(settings, metrics, partitions, rules=rules)
    log.info(
        "worker %s on %s: inputs %s, window %ss, lateness %ss",
        settings.app_id,
        settings.kafka_bootstrap,
        partitions,
        settings.window_seconds,
        settings.allowed_lateness_seconds,
    )
    log.info(
        "alerting: %d rule levels; Alertmanager %s",
        len(rules),
        ", ".join(settings.alertmanager_urls) or "not configured (log and topic sinks only)",
    )
    worker = faust.Worker(
        runtime.app,
        loglevel=settings.log_level.lower(),
        override_logging=False,
        quiet=True,
        redirect_stdouts=False,
    )
    with throughput_gc():
        worker.execute_from_commandline()
