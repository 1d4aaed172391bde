"""What every verb module shares: the help epilog, the sub-parser helper, the global flags,
Settings from flags, and the checks a verb makes before it starts (ports)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from expmon.errors import ConfigError, IncidentSpecError, PortInUseError, UsageError
from expmon.settings import Settings

if TYPE_CHECKING:
    from expmon.sim.incidents import Incident

EPILOG = """\
Every flag has an EXPMON_* environment variable (EXPMON_KAFKA_BOOTSTRAP,
EXPMON_METRICS_PORT, EXPMON_ALLOWED_LATENESS_SECONDS, ...); flags win. List settings
(EXPMON_RULES_FILES, EXPMON_ROLLING_VIEWS) take comma-separated values or a JSON list.
Kafka security: EXPMON_KAFKA_SECURITY_PROTOCOL, EXPMON_KAFKA_SASL_MECHANISM,
EXPMON_KAFKA_SASL_USERNAME, EXPMON_KAFKA_SASL_PASSWORD, EXPMON_KAFKA_SSL_CAFILE.
Global flags (--bootstrap, --log-level, --debug) go before or after the verb.
"""

Verbs: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Run = Callable[[argparse.Namespace], int]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as an exception (one line from main, exit 2)
    instead of printing the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def positive(kind: type[float] | type[int]) -> Callable[[str], Any]:
    """An argparse type: a number above 0 (`--rate 0` is a mistake, not a hang)."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value > 0 and math.isfinite(value)):  # NaN and inf too
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (the OS picks) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return value


def add_global_flags(parser: argparse.ArgumentParser, with_defaults: bool) -> None:
    """The flags every verb takes, on the top parser (with the defaults) and on each verb's
    (without: a verb's parser would otherwise overwrite a value given before the verb)."""

    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        default=default(None),
        help="Kafka bootstrap servers (EXPMON_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default(None),
        help="default INFO (EXPMON_LOG_LEVEL)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="on an error, print the traceback and details (log tails) too",
    )


def resolve_log_level(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """The flag, else EXPMON_LOG_LEVEL, else INFO: logging is configured before Settings
    exist, and a verb passes this one value on."""
    if args.log_level is None:
        level = environ.get("EXPMON_LOG_LEVEL", "INFO").strip().upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"EXPMON_LOG_LEVEL={level!r}: use one of {', '.join(LOG_LEVELS)}")
        args.log_level = level


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
    add_global_flags(sub, with_defaults=False)
    sub.set_defaults(func=run)
    return sub


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """The one Settings object of a verb: global flags, the verb's flags, EXPMON_*."""
    return Settings.from_env(
        kafka_bootstrap=args.bootstrap,
        log_level=args.log_level,
        **extra,
    )


def ensure_port_free(host: str, port: int, what: str, setting: str) -> None:
    """PortInUseError now, instead of a crash deep in a server's start-up later.

    SO_REUSEADDR as servers set it: a port left in TIME_WAIT is free, a listener is not.
    Port 0 (the OS picks) is always free.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(host, port, what, setting) from exc
            raise ConfigError(f"{what} cannot listen on {host}:{port}: {exc.strerror}") from exc


def incidents_from(specs: list[str]) -> tuple[Incident, ...]:
    """`--incident` flags parsed, or IncidentSpecError naming the bad one and why."""
    from expmon.sim.incidents import parse_incident

    out = []
    for spec in specs:
        try:
            out.append(parse_incident(spec))
        except ValueError as exc:
            reason = str(exc).removeprefix(f"bad incident spec {spec!r}: ")
            raise IncidentSpecError(spec, reason) from None
    return tuple(out)
