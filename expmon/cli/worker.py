"""`expmon worker`: topics checked, faust worker started, metrics served."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from expmon.cli.common import Verbs, add_verb, ensure_port_free, port, settings_from
from expmon.cli.supervise import (
    START_BARRIER_TIMEOUT_SECONDS,
    barrier_flag,
    child_argv,
    parse_barrier,
    plan_children,
    release_when_ready,
    supervise,
    wait_for_release,
)
from expmon.errors import TopicError
from expmon.exposition.metrics import Metrics, new_registry
from expmon.families.registry import input_topics
from expmon.gctune import throughput_gc
from expmon.kafka.admin import (
    default_topic_specs,
    ensure_topics,
    partition_count,
    replication_factor,
)
from expmon.kafka.reach import preflight
from expmon.settings import Settings
from expmon.switchtune import fetcher_friendly_switching

log = logging.getLogger(__name__)


def add_parser(verbs: Verbs) -> None:
    w = add_verb(
        verbs,
        "worker",
        run,
        "Run the stream processors and serve /metrics, /healthz, /readyz.",
        "expmon --bootstrap 127.0.0.1:9092 worker --metrics-port 9477\n"
        "  expmon worker --processes 2 --metrics-port 9477   "
        "# 2 processes, /metrics on 9477 and 9478",
    )
    w.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes in one consumer group (child i: /metrics on "
        "--metrics-port + i, state under <state dir>/process-i; if one exits, all stop "
        "and the exit is non-zero; default 1)",
    )
    # set by the supervisor of --processes N on each child (expmon.cli.supervise)
    w.add_argument("--start-barrier", metavar="READY,GO", help=argparse.SUPPRESS)
    w.add_argument("--metrics-host", help="bind address (default 127.0.0.1)")
    w.add_argument("--metrics-port", type=port, help="port for /metrics (default 9477)")
    w.add_argument(
        "--app-id", help="faust app id = consumer group and state prefix (default expmon)"
    )
    w.add_argument(
        "--rules",
        action="append",
        type=Path,
        metavar="FILE",
        help="alert rule file on top of alerts/defaults.yml (repeatable; EXPMON_RULES_FILES)",
    )
    w.add_argument(
        "--alertmanager-url",
        metavar="URL[,URL]",
        help="Alertmanager(s) to send alerts to (EXPMON_ALERTMANAGER_URL; default: none)",
    )
    w.add_argument(
        "--no-create-topics", action="store_true", help="fail instead of creating missing topics"
    )


def run(args: argparse.Namespace) -> int:
    if args.processes != 1:
        return run_processes(args)
    settings = settings_from(
        args,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        app_id=args.app_id,
        rules_files=tuple(args.rules) if args.rules else None,
        alertmanager_url=args.alertmanager_url,
    )
    barrier = parse_barrier(args.start_barrier) if args.start_barrier else None
    run_worker(settings, create_topics=not args.no_create_topics, barrier=barrier)
    return 0


def input_partitions(settings: Settings, create_topics: bool = True) -> dict[str, int]:
    """Partition count of each input topic, creating missing topics first when asked."""
    if create_topics:
        for report in ensure_topics(settings, default_topic_specs(settings)):
            log.info("topic %s", report)
    counts: dict[str, int] = {}
    for topic in input_topics(settings):
        n = partition_count(settings, topic)
        if n is None:
            raise TopicError(f"input topic {topic!r} does not exist (run `expmon topics create`)")
        counts[topic] = n
    return counts


def run_worker(
    settings: Settings, create_topics: bool = True, barrier: tuple[int, int] | None = None
) -> None:
    """Run until SIGINT/SIGTERM; faust's worker handles the signals and a clean shutdown.

    `barrier`: a supervisor's (ready, go) pipes: once set up, wait for the other processes
    so that all join the consumer group together.
    """
    import faust  # deferred: importing faust is slow and only the worker needs it

    from expmon.alerting.rules import load_rules
    from expmon.families.registry import SIGNALS
    from streams.app import build_worker

    rules = load_rules(
        settings.rules_files,
        settings.views,
        signals=SIGNALS,
        runbook_base_url=settings.runbook_base_url,
    )  # fail fast on bad rules
    # and on a taken port or an absent broker, before faust's start-up would crash on them
    ensure_port_free(
        settings.metrics_host,
        settings.metrics_port,
        "metrics",
        "--metrics-port/EXPMON_METRICS_PORT",
    )
    cluster = preflight(settings)
    replicas, why = replication_factor(settings, cluster.brokers)
    settings = settings.model_copy(update={"replication_factor": replicas})
    log.info("replication factor %d for the topics the worker creates (%s)", replicas, why)
    log.info("effective settings: %s", settings.describe())
    partitions = input_partitions(settings, create_topics)
    metrics = Metrics(new_registry())
    worker_app = build_worker(settings, metrics, partitions, rules=rules).app
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
    worker = _bounded_shutdown(faust.Worker)(
        worker_app,
        loglevel=settings.log_level.lower(),
        override_logging=False,
        quiet=True,
        redirect_stdouts=False,
    )
    if barrier is not None and not wait_for_release(*barrier, START_BARRIER_TIMEOUT_SECONDS):
        log.warning("not released by the supervisor: joining the consumer group anyway")
    with throughput_gc(), fetcher_friendly_switching():
        worker.execute_from_commandline()


SHUTDOWN_GRACE_SECONDS = 20.0


def run_processes(args: argparse.Namespace) -> int:
    """Start args.processes copies of this worker (one consumer group) and supervise them."""
    settings = settings_from(args, metrics_port=args.metrics_port)
    plans = plan_children(args.processes, settings.metrics_port, settings.state_dir)
    argv = [sys.executable, "-m", "expmon.cli", *child_argv(sys.argv[1:])]
    children = []
    ready_r, ready_w = os.pipe()
    go_fds = []
    for plan in plans:
        log.info(
            "worker process %d: /metrics on port %d, state in %s",
            plan.index,
            plan.metrics_port,
            plan.state_dir,
        )
        # own session: a terminal's Ctrl-C reaches the supervisor only, which forwards
        # it once (a second SIGINT would cut faust's clean stop short)
        go_r, go_w = os.pipe()
        children.append(
            subprocess.Popen(
                [*argv, *barrier_flag(ready_w, go_r)],
                env={**os.environ, **plan.env()},
                start_new_session=True,
                pass_fds=(ready_w, go_r),
            )
        )
        os.close(go_r)
        go_fds.append(go_w)
    os.close(ready_w)  # EOF on ready_r once every child closed its end
    if release_when_ready(ready_r, go_fds, children, START_BARRIER_TIMEOUT_SECONDS + 10.0):
        log.info("%d worker processes set up: joining the consumer group together", len(plans))
    # each child bounds its own shutdown; a little more here before a kill
    return supervise(children, stop_grace_seconds=SHUTDOWN_GRACE_SECONDS + 5.0)


def _bounded_shutdown(worker_class: type[Any]) -> type[Any]:
    """faust's Worker, whose shutdown on SIGTERM/SIGINT is bounded.

    A clean stop flushes the producer and commits offsets; it can hang (an agent waiting
    on a broker that went away, faust's "Wait for streams..."). Past the grace period the
    process exits: that is as safe as a crash, which the checkpoint-before-commit
    contract already covers (the next worker skips what was applied), and an operator's
    `docker stop` or systemd gets an exit instead of a SIGKILL after its own timeout.
    """

    class BoundedWorker(worker_class):  # type: ignore[misc]
        def _arm(self) -> None:
            def expire() -> None:
                log.warning(
                    "shutdown still not done after %.0f s: exiting now (state is in the "
                    "changelog; the next start resumes from it)",
                    SHUTDOWN_GRACE_SECONDS,
                )
                logging.shutdown()
                os._exit(0)

            timer = threading.Timer(SHUTDOWN_GRACE_SECONDS, expire)
            timer.daemon = True
            timer.start()

        def _on_sigint(self) -> None:
            self._arm()
            super()._on_sigint()

        def _on_sigterm(self) -> None:
            self._arm()
            super()._on_sigterm()

    return BoundedWorker
