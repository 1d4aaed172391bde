"""The worker's HTTP endpoints: /metrics, /healthz, /readyz and /alerts (aiohttp).

/metrics is prometheus_client's own aiohttp exposition over the worker's registry, so
`?name[]=...` narrows the page (a cheap poll of one counter: the whole page costs the
event loop tens of ms) and `Accept` picks the text or OpenMetrics format as
prometheus_client does everywhere.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from schemas import codec
from streams.alerting import AlertRunner
from streams.runtime import Runtime

log = logging.getLogger(__name__)


def routes(rt: Runtime, alerts: AlertRunner | None) -> list[web.RouteDef]:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "uptime_seconds": round(time.time() - rt.started_wall, 1)}
        )

    async def readyz(_request: web.Request) -> web.Response:
        ready, reason = rt.readiness()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def alert_instances(request: web.Request) -> web.Response:
        if alerts is None or not alerts.owner:
            body = {"owner": False, "alerts": []}
        else:
            wanted = request.query.get("fingerprint")
            body = {
                "owner": True,
                "alerts": [
                    i.to_dict()
                    for i in alerts.engine.instances.values()
                    if wanted is None or i.fingerprint == wanted
                ],
            }
        return web.Response(body=codec.dumps(body), content_type="application/json")

    return [
        # compression off: a scrape on the loopback gains nothing from gzip but CPU
        web.get("/metrics", make_aiohttp_handler(rt.metrics.registry, disable_compression=True)),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/alerts", alert_instances),
    ]


async def serve(rt: Runtime, alerts: AlertRunner | None) -> None:
    web_app = web.Application()
    web_app.add_routes(routes(rt, alerts))
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, rt.settings.metrics_host, rt.settings.metrics_port)
    await site.start()
    # With port 0 the OS picked one: report the real address.
    port = runner.addresses[0][1] if runner.addresses else rt.settings.metrics_port
    log.info(
        "metrics on http://%s:%s/metrics (also /healthz, /readyz)", rt.settings.metrics_host, port
    )
