"""`expmon replay`: a past range (Kafka or a recording) through the live processors, isolated."""

from __future__ import annotations

import argparse
from pathlib import Path

from expmon.cli.common import Verbs, add_verb, ensure_port_free, settings_from
from expmon.errors import ConfigError
from expmon.kafka.reach import preflight


def add_parser(verbs: Verbs) -> None:
    from expmon.replay.kafka_range import POINT_HELP

    rp = add_verb(
        verbs,
        "replay",
        run,
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


def run(args: argparse.Namespace) -> int:
    from expmon.replay.run import ReplayOptions, parse_speed, run_replay

    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        raise ConfigError(f"--speed {args.speed!r}: use max, 1x, 10x, ... ({exc})") from exc
    if args.file is not None and (args.start != "earliest" or args.end != "latest"):
        raise ConfigError("--from/--to select a range on Kafka; a --file is replayed whole")
    # Replay never pages: Alertmanager URLs of the environment are ignored on purpose.
    settings = settings_from(args, rules_files=tuple(args.live_rules) if args.live_rules else None)
    if args.metrics_port is not None:
        ensure_port_free(
            settings.metrics_host, args.metrics_port, "replay metrics", "--metrics-port"
        )
    outputs = [t for t in (args.into, args.alerts_into) if t]
    if args.file is None or outputs:
        preflight(settings, outputs)
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
