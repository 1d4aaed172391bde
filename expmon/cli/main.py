"""`expmon`: the parser and the dispatch. Each verb is a module of this package that adds its
sub-parser (`add_parser`) and runs it (`run`), building Settings once from flags and EXPMON_*.

Every mistake a user can make ends as one line on stderr (`expmon: error: ...`) and exit
code 2: argparse's usage errors, ExpmonError from any layer. `--debug` adds the traceback
and the error's detail (a child's log tail, say). Global flags go before or after the verb.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from expmon import __version__
from expmon.cli import bench, collect, demo, record, replay, rules, simulate, topics, worker
from expmon.cli.common import EPILOG, OneLineParser, add_global_flags, resolve_log_level
from expmon.errors import ExpmonError

log = logging.getLogger("expmon")

# in the order `expmon --help` lists them
VERBS = (worker, collect, topics, simulate, demo, rules, bench, replay, record)
USAGE_EXIT = 2


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
    parser = OneLineParser(
        prog="expmon",
        description="Experience Monitor: real-time e-commerce experience monitoring on Kafka.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"expmon {__version__}")
    add_global_flags(parser, with_defaults=True)
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


def _fail(message: str, debug: bool, detail: str = "") -> None:
    """The line of a mistake; with --debug the detail and the traceback below it."""
    sys.stderr.write(f"expmon: error: {message}\n")
    if debug:
        if detail:
            sys.stderr.write(detail.rstrip("\n") + "\n")
        traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw  # before parsing: a usage error has no namespace yet
    try:
        args = build_parser().parse_args(_relative_points(raw))
        resolve_log_level(args, os.environ)
    except ExpmonError as exc:  # usage errors (see OneLineParser), a bad EXPMON_LOG_LEVEL
        _fail(str(exc), debug)
        return USAGE_EXIT
    configure_logging(args.log_level)
    try:
        return int(args.func(args))
    except ExpmonError as exc:
        _fail(str(exc), args.debug, exc.detail)
        return USAGE_EXIT
    except KeyboardInterrupt:
        log.info("interrupted")
        return 130
    except Exception as exc:  # a bug, not a mistake: still one line, the rest on --debug
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            args.debug,
        )
        return 1
