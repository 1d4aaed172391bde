"""`expmon rules check|export-prometheus|signals`: validate, export and list alert rules."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from expmon.cli.common import Verbs, add_verb
from expmon.settings import Settings

log = logging.getLogger("expmon")


def add_parser(verbs: Verbs) -> None:
    r = add_verb(
        verbs,
        "rules",
        run,
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


def run(args: argparse.Namespace) -> int:
    from expmon.alerting.rules import RulesError, load_rules
    from expmon.families.registry import SIGNALS

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
    try:
        rules = load_rules(
            settings.rules_files,
            settings.views,
            signals=SIGNALS,
            runbook_base_url=settings.runbook_base_url,
        )
    except RulesError as exc:
        # One line per problem (a YAML error adds its source line and a caret), then a
        # count: what an editor or CI log can jump to.
        for problem in exc.problems:
            sys.stderr.write(problem.render() + "\n")
        sys.stderr.write(f"{len(exc.problems)} problem(s) in alert rules\n")
        return 2
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
