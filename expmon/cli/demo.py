"""`expmon demo`: local Kafka, simulated traffic with incidents, worker, live terminal view."""

from __future__ import annotations

import argparse

from expmon.cli.common import (
    Verbs,
    add_verb,
    ensure_port_free,
    incidents_from,
    port,
    positive,
)

# Slow pages from 10 s: the first 1-minute window holding them closes (end + 30 s lateness)
# 60-110 s after start, whatever the phase of the minute the demo starts in.
DEMO_INCIDENTS = ("slow_pages@10s+240s:region=eu-west", "payment_outage@30s+240s:provider=adyen")


def add_parser(verbs: Verbs) -> None:
    d = add_verb(
        verbs,
        "demo",
        run,
        "Start a local Kafka, simulate traffic with incidents, run the worker, and show the "
        "incident view in the terminal (alerts with the region that explains them, the worst "
        "pages, the log); a line per event when stdout is not a terminal. Ctrl-C or SIGTERM "
        "stops everything; the demo's folder is removed unless --keep.",
        "expmon demo\n  expmon demo --duration 300 | tee demo.log\n"
        "  expmon demo --incident carrier_delay@30s+300s:carrier=dhl --keep",
    )
    d.add_argument(
        "--rate", type=positive(float), default=300.0, help="events per second (default 300)"
    )
    d.add_argument(
        "--duration",
        type=positive(float),
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    d.add_argument(
        "--metrics-port", type=port, default=9477, help="worker metrics port (default 9477)"
    )
    d.add_argument(
        "--incident",
        action="append",
        metavar="KIND@START+DURATION[:k=v,...]",
        help="incident to inject (repeatable; default: slow_pages@10s+240s:region=eu-west and "
        "payment_outage@30s+240s:provider=adyen)",
    )
    d.add_argument(
        "--plain",
        action="store_true",
        help="a line per event (alert changes, a status line every 15 s) instead of the live "
        "view; the default when stdout is not a terminal",
    )
    d.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's folder (worker and simulator logs, state) instead of removing it",
    )


def run(args: argparse.Namespace) -> int:
    from expmon.local.demo import run_demo

    # Mistakes first, in one line, before a broker is started for nothing.
    incidents = args.incident or list(DEMO_INCIDENTS)
    incidents_from(incidents)
    ensure_port_free("127.0.0.1", args.metrics_port, "demo worker metrics", "--metrics-port")
    return run_demo(
        log_level=args.log_level,
        bootstrap=args.bootstrap,
        rate=args.rate,
        duration_s=args.duration,
        metrics_port=args.metrics_port,
        incident=incidents,
        keep=args.keep,
        plain=True if args.plain else None,
        debug=args.debug,
    )
