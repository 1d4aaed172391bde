"""`expmon`: the command line. Builds Settings once from flags and EXPMON_* and dispatches."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from expmon import __version__
from expmon.errors import ExpmonError
from expmon.settings import Settings

log = logging.getLogger("expmon")

DEMO_INCIDENTS = ("slow_pages@30s+240s:region=eu-west", "payment_outage@30s+240s:provider=adyen")

EPILOG = """\
Every flag has an EXPMON_* environment variable (EXPMON_KAFKA_BOOTSTRAP,
EXPMON_METRICS_PORT, EXPMON_ALLOWED_LATENESS_SECONDS, ...); flags win.
Kafka security: EXPMON_KAFKA_SECURITY_PROTOCOL, EXPMON_KAFKA_SASL_MECHANISM,
EXPMON_KAFKA_SASL_USERNAME, EXPMON_KAFKA_SASL_PASSWORD, EXPMON_KAFKA_SSL_CAFILE.
"""


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # aiokafka and faust are chatty at INFO about every rebalance step.
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return Settings.from_env(
        kafka_bootstrap=args.bootstrap,
        log_level=args.log_level,
        **extra,
    )


# ---------------------------------------------------------------- verbs
def cmd_worker(args: argparse.Namespace) -> int:
    from expmon.worker import run_worker

    settings = _settings(
        args,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        app_id=args.app_id,
        rules_files=tuple(args.rules) if args.rules else None,
        alertmanager_url=args.alertmanager_url,
    )
    run_worker(settings, create_topics=not args.no_create_topics)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from expmon.topics import default_topic_specs, ensure_topics

    settings = _settings(args, topic_partitions=args.partitions)
    specs = default_topic_specs(settings)
    reports = ensure_topics(settings, specs, create=args.action == "create")
    width = max(len(r.name) for r in reports)
    for r in reports:
        count = "-" if r.partitions is None else str(r.partitions)
        line = f"{r.name:<{width}}  {r.status:<8} {count}/{r.wanted_partitions} partitions"
        print(f"{line}  {r.problem}" if r.problem else line)
    return 0 if all(r.ok for r in reports) else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from expmon.simulator import parse_incidents, run_simulate

    settings = _settings(args)
    counts = asyncio.run(
        run_simulate(
            settings,
            rate=args.rate,
            duration_s=args.duration,
            seed=args.seed,
            batch_size=args.batch_size,
            incidents=parse_incidents(args.incident or []),
            realtime=not args.fast,
            ground_truth_path=args.ground_truth,
            families=tuple(args.families.split(",")),
        )
    )
    log.info("sent %s", counts)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from expmon.demo import run_demo

    return run_demo(
        log_level=args.log_level,
        bootstrap=args.bootstrap,
        rate=args.rate,
        duration_s=args.duration,
        metrics_port=args.metrics_port,
        incident=args.incident or list(DEMO_INCIDENTS),
    )


def cmd_rules(args: argparse.Namespace) -> int:
    from expmon.alerting.rules import load_rules
    from expmon.alerting.signals import SIGNALS

    if args.action == "signals":
        for signal in SIGNALS.values():
            window = "window view" if signal.source == "window" else "wall clock"
            sys.stdout.write(
                f"{signal.name}\n    {signal.description}\n"
                f"    labels: {', '.join(signal.labels)}; unit: {signal.unit}; {window}\n"
            )
        return 0
    extra = tuple(args.rules or ()) or None
    settings = Settings.from_env(rules_files=extra, log_level=args.log_level)
    rules = load_rules(settings.rules_files, settings.views)  # RulesError lists every problem
    if args.action == "check":
        names = sorted({r.alert for r in rules})
        files = ["alerts/defaults.yml", *map(str, settings.rules_files)]
        sys.stdout.write(
            f"OK: {len(names)} alerts ({len(rules)} severity levels) from {', '.join(files)}\n"
        )
        return 0
    from expmon.alerting.promrules import export

    text = export(rules)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        log.info("wrote %d Prometheus alerting rules to %s", len(rules), args.output)
    else:
        sys.stdout.write(text)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from expmon.bench import run_bench

    return run_bench(
        bootstrap=args.bootstrap,
        log_level=args.log_level,
        events=args.events,
        batch_events=args.batch_events,
        output=args.output,
        throughput=not args.only_alert_latency,
        alert_latency=not args.skip_alert_latency,
    )


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="expmon",
        description="Experience Monitor: real-time e-commerce experience monitoring on Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"expmon {__version__}")
    parser.add_argument(
        "--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (EXPMON_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="INFO",
        help="default INFO",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, example: str
    ) -> argparse.ArgumentParser:
        sub = verbs.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=f"example:\n  {example}\n\n{EPILOG}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(func=func)
        return sub

    w = verb(
        "worker",
        cmd_worker,
        "Run the stream processors and serve /metrics, /healthz, /readyz.",
        "expmon --bootstrap 127.0.0.1:9092 worker --metrics-port 9477",
    )
    w.add_argument("--metrics-host", help="bind address (default 127.0.0.1)")
    w.add_argument("--metrics-port", type=int, help="port for /metrics (default 9477)")
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

    t = verb(
        "topics",
        cmd_topics,
        "Create or check the topics with their partitions and configs.",
        "expmon topics create --partitions 6",
    )
    t.add_argument(
        "action", choices=["create", "check"], help="create missing topics, or only report"
    )
    t.add_argument("--partitions", type=int, help="partitions of input topics (default 3)")

    s = verb(
        "simulate",
        cmd_simulate,
        "Produce realistic traffic, optionally with incidents and ground truth.",
        "expmon simulate --rate 500 --duration 600 --incident slow_pages@60s+180s:region=eu-west",
    )
    s.add_argument(
        "--rate", type=float, default=500.0, help="events per second, all families (default 500)"
    )
    s.add_argument("--duration", type=float, default=300.0, help="seconds of traffic (default 300)")
    s.add_argument(
        "--seed", type=int, default=42, help="random seed: same seed, same traffic (default 42)"
    )
    s.add_argument(
        "--batch-size", type=int, default=1, help="events per record; >1 sends JSON arrays"
    )
    s.add_argument(
        "--incident",
        action="append",
        metavar="KIND@START+DURATION[:k=v,...]",
        help="inject an incident, e.g. slow_pages@60s+180s:region=eu-west; kinds: slow_pages, "
        "payment_outage, carrier_delay, checkout_stall, warehouse_backlog, bad_records "
        "(repeatable)",
    )
    s.add_argument("--families", default="page_load,checkout,logistics", help="comma separated")
    s.add_argument(
        "--fast", action="store_true", help="as fast as possible with synthetic event times"
    )
    s.add_argument(
        "--ground-truth", metavar="FILE", help="write exact per-window figures (JSON) here"
    )

    d = verb(
        "demo",
        cmd_demo,
        "Start a local Kafka, simulate traffic with a slow-page incident, run the worker, and show "
        "live windows in the terminal. Ctrl-C stops everything.",
        "expmon demo",
    )
    d.add_argument("--rate", type=float, default=300.0, help="events per second (default 300)")
    d.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    d.add_argument(
        "--metrics-port", type=int, default=9477, help="worker metrics port (default 9477)"
    )
    d.add_argument(
        "--incident",
        action="append",
        metavar="KIND@START+DURATION[:k=v,...]",
        help="incident to inject (repeatable; default: slow_pages@30s+240s:region=eu-west and "
        "payment_outage@30s+240s:provider=adyen)",
    )

    r = verb(
        "rules",
        cmd_rules,
        "Validate alert rules (defaults plus your files), export them as Prometheus alerting "
        "rules, or list the signals rules can read.",
        "expmon rules check --rules my-rules.yml",
    )
    r.add_argument(
        "action",
        choices=["check", "export-prometheus", "signals"],
        help="check: validate and report every problem with file:line; export-prometheus: "
        "write the Prometheus twin; signals: list signals",
    )
    r.add_argument(
        "--rules",
        action="append",
        type=Path,
        metavar="FILE",
        help="rule file applied on top of the defaults (repeatable; EXPMON_RULES_FILES)",
    )
    r.add_argument("-o", "--output", metavar="FILE", help="export-prometheus: write here")

    b = verb(
        "bench",
        cmd_bench,
        "Measure events/s of the page-load pipeline beside a bare aiokafka+orjson consumer, "
        "RSS, state memory, and alert latency to Alertmanager (in-stream vs Prometheus twin).",
        "expmon bench --events 300000",
    )
    b.add_argument(
        "--events", type=int, default=300_000, help="events sent one per record (default 300000)"
    )
    b.add_argument(
        "--batch-events",
        type=int,
        default=1_000_000,
        help="events in batch records of 100 (default 1000000)",
    )
    b.add_argument("--output", metavar="FILE", help="also write the results as JSON here")
    only = b.add_mutually_exclusive_group()
    only.add_argument(
        "--only-alert-latency",
        action="store_true",
        help="skip the throughput scenarios; time alerts to Alertmanager only",
    )
    only.add_argument(
        "--skip-alert-latency",
        action="store_true",
        help="throughput and memory only (no Alertmanager/Prometheus needed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args))
    except ExpmonError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
