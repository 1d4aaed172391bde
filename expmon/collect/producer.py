"""The collector's Kafka producer: every record acknowledged by all in-sync replicas
(acks=all, idempotent) before the request that carried it is answered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from expmon.errors import ProduceError
from expmon.kafka.connection import aiokafka_kwargs
from expmon.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


# called with the index of each message the broker acknowledged, also after a timeout
OnAck = Callable[[int], None]


class Producer(Protocol):
    async def start(self) -> None: ...

    async def send_all(self, messages: Sequence[Message], on_ack: OnAck | None = None) -> None:
        """Return once the broker acknowledged every message; else raise ProduceError.

        A message not acknowledged in time may still be delivered later (the client
        cannot take it back): `on_ack` hears of it then, so its retry can be recognised.
        """

    async def stop(self) -> None:
        """Flush what is in flight, then close."""


class KafkaProducer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.collect_produce_timeout_seconds
        self._producer: Any = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **aiokafka_kwargs(self.settings),
            client_id="expmon-collector",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=max(1_048_576, self.settings.max_record_bytes + 64 * 1024),
            request_timeout_ms=int(self.timeout * 1000),
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise ProduceError(
                f"cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc}"
            ) from exc

    async def send_all(self, messages: Sequence[Message], on_ack: OnAck | None = None) -> None:
        if not messages:
            return
        producer = self._producer
        try:
            acks = [
                await producer.send(m.topic, m.value, key=m.key, headers=list(m.headers) or None)
                for m in messages
            ]
        except KafkaError as exc:
            raise ProduceError(f"broker refused {len(messages)} records: {exc!r}") from exc
        for index, ack in enumerate(acks):
            if on_ack is not None:
                ack.add_done_callback(_acked(on_ack, index))
        # asyncio.wait, not wait_for: a timeout must not cancel what may still be delivered
        done, pending = await asyncio.wait(acks, timeout=self.timeout)
        failed = [f.exception() for f in done if f.exception() is not None]
        if pending or failed:
            why = f"{len(pending)} not acknowledged in {self.timeout:g} s" if pending else ""
            raise ProduceError(
                f"broker did not take {len(messages)} records: {why or repr(failed[0])}"
            )

    async def stop(self) -> None:
        """Flush (within the shutdown timeout: with the broker gone, records answered 503
        may be left undelivered, never ones answered 202), then close."""
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        try:
            await asyncio.wait_for(producer.stop(), self.settings.collect_shutdown_timeout_seconds)
        except TimeoutError:
            log.warning(
                "producer did not flush in %g s: records not yet acknowledged (their "
                "requests were answered 503) are dropped",
                self.settings.collect_shutdown_timeout_seconds,
            )


def _acked(on_ack: OnAck, index: int) -> Callable[[asyncio.Future[Any]], None]:
    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            on_ack(index)

    return done
