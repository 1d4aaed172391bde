"""Is any bootstrap server there at all? A TCP connect, answered in seconds.

Kafka clients retry an unreachable bootstrap for 30 s or more (kafka-python's bootstrap
wait, aiokafka's metadata retries, faust forever) and then fail with a library trace; a
user who mistyped the address or forgot to start the broker gets one line at once instead.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from expmon.errors import (
    BrokerUnreachableError,
    KafkaAuthError,
    KafkaHandshakeError,
    UnknownTopicError,
)
from expmon.kafka.connection import aiokafka_kwargs
from expmon.settings import Settings

HANDSHAKE_TIMEOUT_S = 6.0


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


@dataclass(frozen=True)
class ClusterInfo:
    """What the pre-flight learned: broker count and the topics that exist."""

    brokers: int
    topics: frozenset[str]


def preflight(
    settings: Settings,
    topics: Sequence[str] = (),
    hint: str = "create them first (clusters with auto-create off never make them), or name "
    "existing ones",
    timeout: float = HANDSHAKE_TIMEOUT_S,
) -> ClusterInfo:
    """Before any work: a TCP connect, then the Kafka handshake with these settings (TLS,
    SASL), then metadata; one ExpmonError naming the real cause, within seconds.

    Kafka clients report a refused SASL password as a bootstrap timeout after 30 s and
    more (kafka-python) or log it and raise a generic connection error (aiokafka's
    client): the handshake here uses aiokafka's single connection, which raises the
    broker's own `SaslAuthenticationFailed`. `topics` must exist (UnknownTopicError with
    `hint` otherwise). The password is in no message: only the broker's reason is.
    """
    require_broker(settings)
    coro = _preflight(settings, tuple(topics), timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        info = asyncio.run(coro)
    else:  # called from inside an event loop: run the check on a loop of its own
        with ThreadPoolExecutor(max_workers=1) as pool:
            info = pool.submit(asyncio.run, coro).result()
    missing = [t for t in topics if t not in info.topics]
    if missing:
        raise UnknownTopicError(settings.kafka_bootstrap, missing, hint)
    return info


async def _preflight(settings: Settings, topics: tuple[str, ...], timeout: float) -> ClusterInfo:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError as AioKafkaError

    kwargs = aiokafka_kwargs(settings)
    kwargs.pop("bootstrap_servers")
    bootstrap = settings.kafka_bootstrap
    host, port = bootstrap_addresses(bootstrap)[0]
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout * 1000), **kwargs), timeout
        )
        conn.close()
    except TimeoutError:
        raise KafkaHandshakeError(
            bootstrap,
            f"no answer within {timeout:.0f} s with security protocol "
            f"{settings.kafka_security_protocol} (is it the listener's protocol?)",
        ) from None
    except ssl.SSLError as exc:
        raise KafkaAuthError(bootstrap, f"TLS handshake failed ({exc.reason or exc})") from None
    except AioKafkaError as exc:
        name = type(exc).__name__
        if "Sasl" in name or "Authentication" in name or "Authorization" in name:
            raise KafkaAuthError(
                bootstrap,
                f"{name}: {_broker_message(exc)} (check EXPMON_KAFKA_SASL_USERNAME, "
                "EXPMON_KAFKA_SASL_PASSWORD and EXPMON_KAFKA_SASL_MECHANISM)",
            ) from None
        raise KafkaHandshakeError(bootstrap, f"{name}: {_broker_message(exc)}") from None
    except (OSError, EOFError) as exc:
        raise KafkaHandshakeError(
            bootstrap,
            f"connection closed during the handshake ({exc!r}); with security protocol "
            f"{settings.kafka_security_protocol}: is it the listener's protocol?",
        ) from None
    client = AIOKafkaClient(
        **aiokafka_kwargs(settings), request_timeout_ms=int(timeout * 1000), client_id="expmon"
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout)
    except (TimeoutError, AioKafkaError) as exc:
        raise KafkaHandshakeError(bootstrap, f"metadata: {exc!r}") from None
    finally:
        await client.close()
    return ClusterInfo(len(metadata.brokers()), frozenset(metadata.topics()))


def _broker_message(exc: BaseException) -> str:
    """The broker's reason alone: aiokafka prefixes `[Error 58] SaslAuthenticationFailed: `."""
    text = str(exc).strip()
    if text.startswith("[Error") and ": " in text:
        text = text.split(": ", 1)[1]
    return text.splitlines()[0][:300] if text else "no detail"
