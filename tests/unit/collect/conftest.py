"""Collector unit fixtures: the real aiohttp app on a test server, a recording producer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from expmon.collect.app import SERVER_OPTIONS, Collector, build_app
from expmon.collect.metrics import CollectorMetrics
from expmon.collect.producer import Message
from expmon.errors import ProduceError
from expmon.settings import Settings
from schemas import codec


@dataclass
class RecordingProducer:
    """Unit tests only: keeps what it is given; `failing` makes it refuse like a down broker."""

    messages: list[Message] = field(default_factory=list)
    failing: bool = False
    stopped: bool = False

    async def start(self) -> None:
        return None

    async def send_all(
        self, messages: Sequence[Message], on_ack: Callable[[int], None] | None = None
    ) -> None:
        if self.failing:
            raise ProduceError("broker down (test)")
        self.messages.extend(messages)
        for index in range(len(messages)):
            if on_ack is not None:
                on_ack(index)

    async def stop(self) -> None:
        self.stopped = True

    def on(self, topic: str) -> list[Message]:
        return [m for m in self.messages if m.topic == topic]

    def values(self, topic: str) -> list[Any]:
        return [codec.loads(m.value) for m in self.on(topic)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Scenario = Callable[[TestClient[Any, Any], Collector, RecordingProducer], Awaitable[Any]]


@dataclass
class Harness:
    settings: Settings
    producer: RecordingProducer = field(default_factory=RecordingProducer)
    clock: Clock = field(default_factory=Clock)

    def run(self, scenario: Scenario) -> Any:
        async def main() -> Any:
            collector = Collector(
                self.settings, self.producer, CollectorMetrics(CollectorRegistry()), self.clock
            )
            server = TestServer(build_app(collector))
            await server.start_server(**SERVER_OPTIONS)  # as `expmon collect` runs it
            async with TestClient(server) as client:
                return await scenario(client, collector, self.producer)

        return asyncio.run(main())


@pytest.fixture
def harness() -> Callable[..., Harness]:
    def make(**settings: Any) -> Harness:
        return Harness(Settings.from_env(**settings))

    return make
