"""`expmon simulate`: realistic traffic with incidents, optionally with ground truth."""

from __future__ import annotations

import argparse
import logging

from expmon.cli.common import Verbs, add_verb, incidents_from, positive, settings_from
from expmon.kafka.reach import preflight

log = logging.getLogger("expmon")


def add_parser(verbs: Verbs) -> None:
    s = add_verb(
        verbs,
        "simulate",
        run,
        "Produce realistic traffic, optionally with incidents and ground truth.",
        "expmon simulate --rate 500 --duration 600 --incident slow_pages@60s+180s:region=eu-west",
    )
    s.add_argument(
        "--rate",
        type=positive(float),
        default=500.0,
        help="events per second, all families (default 500)",
    )
    s.add_argument(
        "--duration", type=positive(float), default=300.0, help="seconds of traffic (default 300)"
    )
    s.add_argument(
        "--seed", type=int, default=42, help="random seed: same seed, same traffic (default 42)"
    )
    s.add_argument(
        "--batch-size",
        type=positive(int),
        default=1,
        help="events per record; >1 sends JSON arrays",
    )
    s.add_argument(
        "--incident",
        action="append",
        metavar="KIND@START+DURATION[:k=v,...]",
        help="inject an incident, e.g. slow_pages@60s+180s:region=eu-west; kinds: slow_pages, "
        "payment_outage, carrier_delay, checkout_stall, warehouse_backlog, bad_records "
        "(repeatable)",
    )
    s.add_argument(
        "--families",
        metavar="NAME[,NAME]",
        help="only these event families, comma separated (default: every family)",
    )
    s.add_argument(
        "--fast", action="store_true", help="as fast as possible with synthetic event times"
    )
    s.add_argument(
        "--ground-truth", metavar="FILE", help="write exact per-window figures (JSON) here"
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from expmon.sim.produce import run_simulate, simulated_topics

    incidents = incidents_from(args.incident or [])
    settings = settings_from(args)
    families = tuple(args.families.split(",")) if args.families else None
    # the input topics must exist: the simulator never lets the broker auto-create them
    # (with one partition and the broker's defaults)
    preflight(settings, simulated_topics(settings, families), hint="run `expmon topics create`")
    counts = asyncio.run(
        run_simulate(
            settings,
            rate=args.rate,
            duration_s=args.duration,
            seed=args.seed,
            batch_size=args.batch_size,
            incidents=incidents,
            realtime=not args.fast,
            ground_truth_path=args.ground_truth,
            families=families,
        )
    )
    log.info("sent %s", counts)
    return 0
