"""`expmon bench`: throughput beside the peers, RSS, state memory and alert latency."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from expmon.cli.common import Verbs, add_verb

# in the order of expmon.bench.scenarios.SCENARIOS
BENCH_SCENARIOS = (
    "bare", "confluent", "pipeline", "pipeline-2", "faust", "bytewax", "quix",
    "replay-kafka", "replay-file",
)  # fmt: skip
# `expmon collect` under wrk (expmon/bench/collector.py): its own broker run, not a dataset
COLLECTOR = "collector"


def add_parser(verbs: Verbs) -> None:
    b = add_verb(
        verbs,
        "bench",
        run,
        "Measure events/s of the page-load pipeline beside decode-only aiokafka and "
        "confluent-kafka consumers and the same job on Bytewax and Quix Streams (`make bench` "
        "installs them), RSS, state memory, and alert latency to Alertmanager (in-stream vs "
        "Prometheus twin).",
        "expmon bench --events 300000 --markdown",
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
        "--markdown",
        action="store_true",
        help="also print the README's tables (throughput, ratios, machine and date)",
    )
    b.add_argument(
        "--markdown-from",
        metavar="FILE",
        help="print the README's tables from a saved --output report, run nothing",
    )
    b.add_argument(
        "--quix-python",
        metavar="PATH",
        help="the interpreter of the Quix Streams venv (default: .venv-quix/bin/python of "
        "the source tree, as `make bench` makes it)",
    )
    b.add_argument(
        "--scenario",
        action="append",
        choices=(*BENCH_SCENARIOS, COLLECTOR),
        help="run only these throughput scenarios (repeatable; default: all); `collector`: "
        "expmon collect's requests/s, events/s and p99 latency under wrk",
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


def run(args: argparse.Namespace) -> int:
    if args.markdown_from:
        return print_markdown(Path(args.markdown_from))
    from expmon.bench.run import DEFAULT_QUIX_PYTHON, SCENARIOS, run_bench

    default = [] if args.only_alert_latency else [*BENCH_SCENARIOS, COLLECTOR]
    chosen = args.scenario or default
    others = [c for c in chosen if c != COLLECTOR]
    status = 0
    if args.bootstrap:  # a broker of the user's: one line now if it cannot be used
        from expmon.kafka.reach import preflight
        from expmon.settings import Settings

        preflight(Settings.from_env(kafka_bootstrap=args.bootstrap))
    if COLLECTOR in chosen:
        from expmon.bench.collector import run_collector

        # beside other scenarios, its JSON goes next to theirs: <output>-collector.json
        status = run_collector(args.bootstrap, args.log_level, args.output, alone=not others)
        if not others and not args.only_alert_latency:
            return status
    bench = run_bench(
        bootstrap=args.bootstrap,
        log_level=args.log_level,
        events=args.events,
        batch_events=args.batch_events,
        output=args.output,
        throughput=not args.only_alert_latency and bool(others),
        alert_latency=not args.skip_alert_latency,
        scenarios=[s for name, s in zip(BENCH_SCENARIOS, SCENARIOS, strict=True) if name in others],
        quix_python=Path(args.quix_python) if args.quix_python else DEFAULT_QUIX_PYTHON,
        markdown=args.markdown,
    )
    return max(status, bench)


def print_markdown(report_file: Path) -> int:
    import orjson

    from expmon.bench.markdown import markdown_report
    from expmon.errors import UsageError

    try:
        report = orjson.loads(report_file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"--markdown-from {report_file}: {exc}") from exc
    sys.stdout.write(markdown_report(report))
    return 0
