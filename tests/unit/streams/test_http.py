"""/metrics renders off the event loop and serves cached bytes: /healthz is answered while
a render is under way and while a slow client holds a scrape open, and concurrent
scrapes share one render. A real aiohttp server on a free port, real sockets."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import Any

from aiohttp import web

from expmon.exposition.budget import fill_page_loads
from expmon.exposition.metrics import Metrics, new_registry
from expmon.exposition.render import Exposition
from expmon.settings import Settings
from streams import http
from streams.runtime import Runtime


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
        return resp.status, resp.read()


async def serve(exposition: Exposition, rt: Any) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.add_routes(http.routes(rt, None, exposition))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def slow_client(port: int) -> socket.socket:
    """Sends a scrape and never reads it (a tiny receive buffer): the response stalls."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_healthz_is_answered_during_a_render_and_past_a_slow_scraper() -> None:
    settings = Settings(series_budget=10**7)
    metrics = Metrics(new_registry())
    fill_page_loads(metrics, settings, 50, 20)  # a page of ~10 MB: a render of seconds
    rt = Runtime(settings, metrics, app=None, topics=None, source_partitions={})  # type: ignore[arg-type]
    exposition = Exposition(metrics, settings.series_budget, settings.views, max_age_seconds=60)

    async def scenario() -> None:
        runner, port = await serve(exposition, rt)
        loop = asyncio.get_running_loop()
        try:
            slow = slow_client(port)
            while not exposition._pending:  # the slow client's scrape is rendering
                await asyncio.sleep(0.001)
            status, body = await loop.run_in_executor(None, get, port, "/healthz")
            assert status == 200 and b"ok" in body
            assert exposition._pending, "healthz must be answered while the render runs"
            # concurrent scrapes wait for the same render, then get the same bytes
            pages = await asyncio.gather(
                *(loop.run_in_executor(None, get, port, "/metrics") for _ in range(3))
            )
            assert len({body for _, body in pages}) == 1
            assert pages[0][1].count(b"\n") > 100_000
            # the slow client still holds its scrape open: health and scrapes go on
            status, _ = await loop.run_in_executor(None, get, port, "/healthz")
            assert status == 200
            filtered = await loop.run_in_executor(
                None, get, port, "/metrics?name[]=expmon_sessions_open"
            )
            assert filtered[1].decode().splitlines()[-1] == "expmon_sessions_open 0.0"
            assert b"expmon_page_load_seconds" not in filtered[1]
            slow.close()
        finally:
            await runner.cleanup()
            exposition.close()

    asyncio.run(scenario())
