"""`/metrics` at the default label limits: size and render time without a budget beside
the series budget, and `/healthz` latency while scrapes render (in-process, a real
aiohttp server on the loopback serving the worker's `Exposition` beside a `/healthz`
like the worker's)."""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
from typing import Any

from aiohttp import web

from expmon.exposition.budget import fill_page_loads
from expmon.exposition.metrics import Metrics, new_registry
from expmon.exposition.render import Exposition
from expmon.settings import Settings

UNLIMITED = 10**9
CONCURRENT_SCRAPES = 5


def _get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        resp.read()
    return time.perf_counter() - started


def _measure(settings: Settings, budget: int) -> dict[str, Any]:
    metrics = Metrics(new_registry())
    fill_page_loads(metrics, settings, settings.max_pages, settings.max_regions)
    exposition = Exposition(metrics, budget, settings.views, max_age_seconds=0)
    renders = [exposition.render() for _ in range(3)]
    body = renders[-1].body
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    figures: dict[str, Any] = {
        "budget": None if budget == UNLIMITED else budget,
        "series": series,
        "bytes": len(body),
        "render_s": round(min(r.seconds for r in renders), 3),
    }
    figures["healthz_ms"] = asyncio.run(_healthz_under_scrapes(exposition))
    exposition.close()
    return figures


async def _healthz_under_scrapes(exposition: Exposition) -> dict[str, float]:
    """/healthz latency while CONCURRENT_SCRAPES full scrapes are served (max age 0)."""

    async def metrics(request: web.Request) -> web.Response:
        page = await exposition.page(request.headers.get("Accept", ""))
        return web.Response(body=page.body, headers={"Content-Type": page.content_type})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    loop = asyncio.get_running_loop()
    try:
        scrapes = [
            loop.run_in_executor(None, _get, f"{base}/metrics") for _ in range(CONCURRENT_SCRAPES)
        ]
        latencies = []
        while not all(s.done() for s in scrapes):
            latencies.append(await loop.run_in_executor(None, _get, f"{base}/healthz"))
        await asyncio.gather(*scrapes)
    finally:
        await runner.cleanup()
    latencies = latencies or [0.0]
    return {
        "p50": round(statistics.median(latencies) * 1000, 1),
        "max": round(max(latencies) * 1000, 1),
        "n": len(latencies),
    }


def measure_exposition(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings()
    return {
        "pages": settings.max_pages,
        "regions": settings.max_regions,
        "devices": 3,
        "views": list(settings.views),
        "unbudgeted": _measure(settings, UNLIMITED),
        "budgeted": _measure(settings, settings.series_budget),
    }
