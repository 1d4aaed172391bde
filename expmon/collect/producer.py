"""The collector's Kafka producer: every record acknowledged by all in-sync replicas
(acks=all, idempotent) before the request that carried it is answered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
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


class Producer(Protocol):
    async def start(self) -> None: ...

    async def send_all(self, messages: Sequence[Message]) -> None:
        """Return once the broker acknowledged every message; else raise ProduceError."""

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

    async def send_all(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        producer = self._producer
        try:
            acks = [
                await producer.send(m.topic, m.value, key=m.key, headers=list(m.headers) or None)
                for m in messages
            ]
            await asyncio.wait_for(asyncio.gather(*acks), self.timeout)
        except (KafkaError, TimeoutError) as exc:
            raise ProduceError(
                f"broker did not acknowledge {len(messages)} records: {exc!r}"
            ) from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()  # flushes pending batches first
            self._producer = None
