"""`expmon bench`: throughput beside the peers, RSS, state memory and alert latency."""

from __future__ import annotations

import argparse

from expmon.cli.common import Verbs, add_verb

BENCH_SCENARIOS = ("bare", "pipeline", "faust", "replay-kafka", "replay-file")


def add_parser(verbs: Verbs) -> None:
    b = add_verb(
        verbs,
        "bench",
        run,
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


def run(args: argparse.Namespace) -> int:
    from expmon.bench.run import SCENARIOS, run_bench

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
