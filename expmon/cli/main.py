"""`expmon`: the parser and the dispatch. Each verb is a module of this package that adds its
sub-parser (`add_parser`) and runs it (`run`), building Settings once from flags and EXPMON_*."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from expmon import __version__
from expmon.cli import bench, collect, demo, record, replay, rules, simulate, topics, worker
from expmon.cli.common import EPILOG
from expmon.errors import ExpmonError

log = logging.getLogger("expmon")

# in the order `expmon --help` lists them
VERBS = (worker, collect, topics, simulate, demo, rules, bench, replay, record)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # aiokafka and faust are chatty at INFO about every rebalance step.
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


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
    for verb in VERBS:
        verb.add_parser(verbs)
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
