"""Run the collector: producer up, HTTP up, then on SIGTERM/SIGINT a graceful drain.

Drain order: refuse new POSTs (503 + Retry-After, /healthz 503 so a load balancer takes
the replica out), let in-flight requests finish within the shutdown timeout (each of
them waits for its broker acks), close the server, then flush and stop the producer. So
nothing answered 202 is lost, and nothing unanswered was promised.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from expmon.collect.app import SERVER_OPTIONS, Collector, build_app
from expmon.collect.metrics import CollectorMetrics
from expmon.collect.producer import KafkaProducer, Producer
from expmon.errors import TopicError
from expmon.families.registry import input_topics
from expmon.kafka.admin import partition_count
from expmon.settings import Settings

log = logging.getLogger(__name__)


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    producer: Producer | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until `stop` is set, then drain. `on_ready` gets the base URL once listening."""
    producer = producer or KafkaProducer(settings)
    await producer.start()
    collector = Collector(settings, producer, CollectorMetrics(CollectorRegistry()))
    runner = web.AppRunner(
        build_app(collector),
        access_log=None,
        shutdown_timeout=settings.collect_shutdown_timeout_seconds,
        handle_signals=False,
        **SERVER_OPTIONS,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.collect_host, settings.collect_port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.collect_port
        url = f"http://{settings.collect_host}:{port}"
        log.info(
            "collecting on %s into %s, %s, %s (dead letters: %s); CORS origins: %s",
            url,
            *collector.topics.values(),
            settings.topic_dlq,
            settings.collect_allowed_origins or "none",
        )
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
        log.info("draining: refusing new requests, finishing those in flight")
        collector.draining = True
    finally:
        await runner.cleanup()  # waits for in-flight handlers up to the shutdown timeout
        await producer.stop()
        log.info("collector stopped; producer flushed")


def check_topics(settings: Settings) -> None:
    """Fail at start, in one line, when a topic the collector writes to is missing."""
    topics = (*input_topics(settings), settings.topic_dlq)
    missing = [t for t in topics if partition_count(settings, t) is None]
    if missing:
        raise TopicError(
            f"topics {', '.join(missing)} do not exist on {settings.kafka_bootstrap} "
            "(run `expmon topics create`)"
        )


def run(settings: Settings) -> None:
    """`expmon collect`: serve until SIGTERM or Ctrl-C."""
    check_topics(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
