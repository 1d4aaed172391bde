"""`expmon topics create|check`: the topics with their partitions and configs."""

from __future__ import annotations

import argparse
import logging

from expmon.cli.common import Verbs, add_verb, settings_from
from expmon.kafka.reach import preflight

log = logging.getLogger(__name__)


def add_parser(verbs: Verbs) -> None:
    t = add_verb(
        verbs,
        "topics",
        run,
        "Create or check the topics with their partitions and configs.",
        "expmon topics create --partitions 6",
    )
    t.add_argument(
        "action", choices=["create", "check"], help="create missing topics, or only report"
    )
    t.add_argument("--partitions", type=int, help="partitions of input topics (default 3)")


def run(args: argparse.Namespace) -> int:
    from expmon.kafka.admin import default_topic_specs, ensure_topics, replication_factor

    settings = settings_from(args, topic_partitions=args.partitions)
    cluster = preflight(settings)
    if args.action == "create":
        replicas, why = replication_factor(settings, cluster.brokers)
        settings = settings.model_copy(update={"replication_factor": replicas})
        log.info("replication factor %d for new topics (%s)", replicas, why)
    specs = default_topic_specs(settings)
    reports = ensure_topics(settings, specs, create=args.action == "create")
    width = max(len(r.name) for r in reports)
    for r in reports:
        count = "-" if r.partitions is None else str(r.partitions)
        line = f"{r.name:<{width}}  {r.status:<8} {count}/{r.wanted_partitions} partitions"
        print(f"{line}  {r.problem}" if r.problem else line)
    return 0 if all(r.ok for r in reports) else 1
