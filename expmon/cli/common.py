"""What every verb module shares: the help epilog, the sub-parser helper, Settings from flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from expmon.settings import Settings

EPILOG = """\
Every flag has an EXPMON_* environment variable (EXPMON_KAFKA_BOOTSTRAP,
EXPMON_METRICS_PORT, EXPMON_ALLOWED_LATENESS_SECONDS, ...); flags win.
Kafka security: EXPMON_KAFKA_SECURITY_PROTOCOL, EXPMON_KAFKA_SASL_MECHANISM,
EXPMON_KAFKA_SASL_USERNAME, EXPMON_KAFKA_SASL_PASSWORD, EXPMON_KAFKA_SSL_CAFILE.
"""

Verbs: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Run = Callable[[argparse.Namespace], int]


def add_verb(
    verbs: Verbs, name: str, run: Run, help_: str, example: str
) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = verbs.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=f"example:\n  {example}\n\n{EPILOG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(func=run)
    return sub


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """The one Settings object of a verb: global flags, the verb's flags, EXPMON_*."""
    return Settings.from_env(
        kafka_bootstrap=args.bootstrap,
        log_level=args.log_level,
        **extra,
    )
