"""Is any bootstrap server there at all? A TCP connect, answered in seconds.

Kafka clients retry an unreachable bootstrap for 30 s or more (kafka-python's bootstrap
wait, aiokafka's metadata retries, faust forever) and then fail with a library trace; a
user who mistyped the address or forgot to start the broker gets one line at once instead.
"""

from __future__ import annotations

import socket

from expmon.errors import BrokerUnreachableError
from expmon.settings import Settings


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """'a:9092,[::1]:9093' -> [('a', 9092), ('::1', 9093)]; a missing port is Kafka's 9092."""
    out = []
    for raw in bootstrap.split(","):
        item = raw.strip().removeprefix("kafka://")
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port:
            host, port = item, "9092"
        host = host.strip("[]")
        try:
            out.append((host, int(port)))
        except ValueError:
            raise BrokerUnreachableError(bootstrap, f"{item!r} is not HOST:PORT") from None
    if not out:
        raise BrokerUnreachableError(bootstrap, "no bootstrap server given")
    return out


def require_broker(settings: Settings, timeout: float = 3.0) -> None:
    """BrokerUnreachableError unless some bootstrap server accepts a TCP connection."""
    reasons = []
    for host, port in bootstrap_addresses(settings.kafka_bootstrap):
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            reasons.append(f"{host}:{port}: {exc.strerror or exc}")
    raise BrokerUnreachableError(settings.kafka_bootstrap, "; ".join(reasons))
