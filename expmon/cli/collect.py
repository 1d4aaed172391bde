"""`expmon collect`: the HTTP ingestion service (browsers, Faro, services -> input topics)."""

from __future__ import annotations

import argparse

from expmon.cli.common import Verbs, add_verb, ensure_port_free, settings_from
from expmon.kafka.reach import preflight


def add_parser(verbs: Verbs) -> None:
    c = add_verb(
        verbs,
        "collect",
        run,
        "Receive events, web-vitals beacons and Grafana Faro payloads over HTTP and produce "
        "them to the input topics (default http://127.0.0.1:9478).",
        "expmon collect --port 9478 --allow-origin https://shop.example",
    )
    c.add_argument("--host", help="bind address (EXPMON_COLLECT_HOST, default 127.0.0.1)")
    c.add_argument("--port", type=int, help="port (EXPMON_COLLECT_PORT, default 9478)")
    c.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="origin whose pages may post (repeatable; `*` for any; "
        "EXPMON_COLLECT_ALLOWED_ORIGINS; default: none)",
    )


def run(args: argparse.Namespace) -> int:
    from expmon.collect.server import run as run_collector

    settings = settings_from(
        args,
        collect_host=args.host,
        collect_port=args.port,
        collect_allowed_origins=",".join(args.allow_origin) if args.allow_origin else None,
    )
    ensure_port_free(settings.collect_host, settings.collect_port, "collect", "--port")
    preflight(settings)
    run_collector(settings)
    return 0
