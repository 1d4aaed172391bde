"""`expmon record dump|load`: a range of topics to an NDJSON recording, and back."""

from __future__ import annotations

import argparse
from pathlib import Path

from expmon.cli.common import Verbs, add_verb, settings_from
from expmon.errors import ConfigError
from expmon.kafka.reach import preflight


def add_parser(verbs: Verbs) -> None:
    from expmon.replay.kafka_range import POINT_HELP

    rc = add_verb(
        verbs,
        "record",
        run,
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


def run(args: argparse.Namespace) -> int:
    from expmon.replay.run import run_record_dump, run_record_load

    settings = settings_from(args)
    # dump reads its topics; load creates the ones it writes (as recorded, or --into)
    wanted = tuple(args.topic or ()) if args.action == "dump" else ()
    preflight(settings, wanted)
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
