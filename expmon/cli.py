"""`expmon`: the command line. Builds Settings once from flags and EXPMON_* and dispatches."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from expmon import __version__
from expmon.errors import ConfigError, ExpmonError
from expmon.settings import Settings

log = logging.getLogger("expmon")

# Slow pages from 10 s: the first 1-minute window holding them closes (end + 30 s lateness)
# 60-110 s after start, whatever the phase of the minute the demo starts in.
DEMO_INCIDENTS = ("slow_pages@10s+240s:region=eu-west", "payment_outage@30s+240s:provider=adyen")

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


BENCH_SCENARIOS = ("bare", "pipeline", "faust", "replay-kafka", "replay-file")


def cmd_bench(args: argparse.Namespace) -> int:
    from expmon.bench import SCENARIOS, run_bench

    chosen = args.scenario or list(BENCH_SCENARIOS)
    return run_bench(
        bootstrap=args.bootstrap,
        log_level=args.log_level,
        events=args.events,
        batch_events=args.batch_events,
        output=args.output,
        throughput=not args.only_alert_latency,
        alert_latency=not args.skip_alert_latency,
        scenarios=[s for name, s in zip(BENCH_SCENARIOS, SCENARIOS, strict=True) if name in chosen],
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from expmon.replay_run import ReplayOptions, parse_speed, run_replay

    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        raise ConfigError(f"--speed {args.speed!r}: use max, 1x, 10x, ... ({exc})") from exc
    if args.file is not None and (args.start != "earliest" or args.end != "latest"):
        raise ConfigError("--from/--to select a range on Kafka; a --file is replayed whole")
    # Replay never pages: Alertmanager URLs of the environment are ignored on purpose.
    settings = _settings(args, rules_files=tuple(args.live_rules) if args.live_rules else None)
    options = ReplayOptions(
        topics=tuple(args.topic or ()),
        start=args.start,
        end=args.end,
        file=args.file,
        candidate_rules=tuple(args.rules or ()),
        speed=speed,
        report=args.report,
        markdown=args.markdown,
        into=args.into,
        alerts_into=args.alerts_into,
        metrics_port=args.metrics_port,
        progress=not args.no_progress,
        stats=args.stats,
    )
    return run_replay(settings, options)


def cmd_record(args: argparse.Namespace) -> int:
    from expmon.replay_run import run_record_dump, run_record_load

    settings = _settings(args)
    if args.action == "dump":
        if args.output is None:
            raise ConfigError("record dump needs -o FILE (.ndjson, or .ndjson.gz to compress)")
        return run_record_dump(
            settings, tuple(args.topic or ()), args.start, args.end, args.output,
            progress=not args.no_progress,
        )  # fmt: skip
    if args.input is None:
        raise ConfigError("record load needs -i FILE (a recording made by record dump)")
    return run_record_load(settings, args.input, args.into, progress=not args.no_progress)


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
        help="incident to inject (repeatable; default: slow_pages@10s+240s:region=eu-west and "
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
    b.add_argument(
        "--scenario",
        action="append",
        choices=BENCH_SCENARIOS,
        help="run only these throughput scenarios (repeatable; default: all)",
    )
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

    from expmon.kafka_range import POINT_HELP

    rp = verb(
        "replay",
        cmd_replay,
        "Re-run a past range of topics (from Kafka or a recording) through the same "
        "processors and alert rules as live, isolated from live state, metrics and "
        "Alertmanager; write a report of closed windows and alert timelines.",
        "expmon replay --topic page-loads --from 2026-11-23T10:00:00Z --to 2026-11-23T11:00:00Z"
        " --markdown report.md\n  expmon replay --file incident.ndjson.gz --rules candidate.yml"
        "\n  expmon replay --from -2h --speed 10x --metrics-port 9478",
    )
    rp.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC",
        help="input topic to replay (repeatable; default: the three input topics, or every "
        "topic of --file)",
    )
    rp.add_argument("--from", dest="start", default="earliest", metavar="POINT",
                    help=f"start of the range (default earliest): {POINT_HELP}")  # fmt: skip
    rp.add_argument("--to", dest="end", default="latest", metavar="POINT",
                    help="end of the range, exclusive (default latest: the end of the log "
                    "when the replay starts)")  # fmt: skip
    rp.add_argument("--file", type=Path, metavar="FILE",
                    help="replay a recording (expmon record dump) instead of Kafka")  # fmt: skip
    rp.add_argument(
        "--rules",
        action="append",
        type=Path,
        metavar="FILE",
        help="what-if: candidate rule file applied on top of the rules in force (repeatable); "
        "the report shows its alerts beside theirs",
    )
    rp.add_argument(
        "--live-rules",
        action="append",
        type=Path,
        metavar="FILE",
        help="the rule files in force live (default: EXPMON_RULES_FILES)",
    )
    rp.add_argument("--speed", default="max",
                    help="max (default) or a multiple of real time such as 1x or 10x, paced "
                    "by the records' timestamps")  # fmt: skip
    rp.add_argument("--report", type=Path, default=Path("replay-report.json"), metavar="FILE",
                    help="JSON report (default replay-report.json); byte-identical for the "
                    "same input")  # fmt: skip
    rp.add_argument("--markdown", type=Path, metavar="FILE", help="also write a Markdown report")
    rp.add_argument("--into", metavar="TOPIC",
                    help="re-publish every closed window view into TOPIC (as the worker's "
                    "windows topic)")  # fmt: skip
    rp.add_argument("--alerts-into", metavar="TOPIC",
                    help="publish the alert transitions into TOPIC (default: report only; a "
                    "replay never notifies Alertmanager)")  # fmt: skip
    rp.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the replay's own metrics here while it runs (default: none)",
    )
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.add_argument(
        "--stats",
        type=Path,
        metavar="FILE",
        help="write records, events, seconds and peak RSS as JSON here",
    )

    rc = verb(
        "record",
        cmd_record,
        "Dump a range of topics to an NDJSON recording (gzip for .gz), keeping each record's "
        "topic, partition, offset, timestamp, key and headers; or load one back into Kafka.",
        "expmon record dump --topic page-loads --from -2h -o incident.ndjson.gz\n"
        "  expmon record load -i incident.ndjson.gz --into page-loads-copy",
    )
    rc.add_argument("action", choices=["dump", "load"],
                    help="dump: Kafka range to file; load: file to Kafka")  # fmt: skip
    rc.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC",
        help="dump: topic (repeatable; default: the three input topics)",
    )
    rc.add_argument(
        "--from",
        dest="start",
        default="earliest",
        metavar="POINT",
        help=f"dump: start (default earliest): {POINT_HELP}",
    )
    rc.add_argument(
        "--to",
        dest="end",
        default="latest",
        metavar="POINT",
        help="dump: end, exclusive (default latest)",
    )
    rc.add_argument("-o", "--output", type=Path, metavar="FILE", help="dump: recording to write")
    rc.add_argument("-i", "--input", type=Path, metavar="FILE", help="load: recording to read")
    rc.add_argument(
        "--into", metavar="TOPIC", help="load: write into this topic instead of the recorded one"
    )
    rc.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _relative_points(argv: Sequence[str]) -> list[str]:
    """`--from -2h` as `--from=-2h`: argparse would take `-2h` for an option."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--from", "--to"):
            value = next(args, None)
            if value is not None and value[:1] == "-" and value[1:2].isdigit():
                out.append(f"{arg}={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_relative_points(sys.argv[1:] if argv is None else argv))
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
