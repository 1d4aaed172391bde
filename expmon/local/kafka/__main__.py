"""`python -m expmon.local.kafka fetch|run`: fetch the broker jars, or run a broker by hand
(`run --secure` adds the SSL and SASL_SSL listeners)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import signal
import sys
import threading
from pathlib import Path

from expmon.errors import LocalKafkaError
from expmon.local.kafka.broker import LocalKafka, ScramUser, ensure_jars
from expmon.settings import default_cache_dir

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m expmon.local.kafka")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the Kafka jars with mvn (no-op when cached)")
    run = sub.add_parser("run", help="run a local broker until Ctrl-C")
    run.add_argument("--port", type=int, default=9092)
    run.add_argument("--data-dir", type=Path, default=None)
    run.add_argument(
        "--secure",
        action="store_true",
        help="also listen with SSL and SASL_SSL (SCRAM-SHA-512 user expmon, password printed)"
        " on free ports, with a throw-away CA; prints the EXPMON_* settings of each",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "fetch":
            libs = ensure_jars(args.cache_dir)
            logger.info("Kafka jars are in %s", libs)
            return 0
        stop = threading.Event()
        # SIGTERM as well as Ctrl-C: both must stop the broker through LocalKafka.stop().
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        users = [ScramUser("expmon", secrets.token_urlsafe(12))] if args.secure else []
        with LocalKafka(
            args.cache_dir,
            data_dir=args.data_dir,
            port=args.port,
            secure=args.secure,
            scram_users=users,
        ) as kafka:
            logger.info("Kafka is up at %s; Ctrl-C stops it", kafka.bootstrap)
            if args.secure:
                for protocol in ("SSL", "SASL_SSL"):
                    env = kafka.client_env(protocol, users[0])
                    # a local throw-away password, printed on purpose: it is the way in
                    lines = "\n".join(f"  {k}={v}" for k, v in env.items())
                    sys.stdout.write(f"{protocol} listener:\n{lines}\n")
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        return 0
    except LocalKafkaError as exc:
        logger.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
