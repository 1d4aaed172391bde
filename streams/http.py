"""The worker's HTTP endpoints: /metrics, /healthz, /readyz and /alerts (aiohttp).

/metrics serves pages rendered off the event loop within the series budget
(`expmon.exposition.render`): `?name[]=...` narrows the page and `Accept` picks the text
or OpenMetrics format as prometheus_client does everywhere.
"""

from __future__ import annotations

import logging
import time

from aiohttp import hdrs, web

from expmon.exposition.render import Exposition
from schemas import codec
from streams.alerting import AlertRunner
from streams.runtime import Runtime

log = logging.getLogger(__name__)


def routes(
    rt: Runtime, alerts: AlertRunner | None, exposition: Exposition | None = None
) -> list[web.RouteDef]:
    pages = exposition or new_exposition(rt)

    async def metrics(request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        page = await pages.page(accept, request.query.getall("name[]", []))
        return web.Response(body=page.body, headers={hdrs.CONTENT_TYPE: page.content_type})

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
                # over the threshold but not significant at their volume (not alerts)
                "held_back": list(alerts.engine.held_back.values()) if wanted is None else [],
            }
        return web.Response(body=codec.dumps(body), content_type="application/json")

    return [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/alerts", alert_instances),
    ]


def new_exposition(rt: Runtime) -> Exposition:
    settings = rt.settings
    return Exposition(
        rt.metrics, settings.series_budget, settings.views, settings.metrics_max_age_seconds
    )


async def serve(rt: Runtime, alerts: AlertRunner | None) -> None:
    web_app = web.Application()
    exposition = new_exposition(rt)
    web_app.add_routes(routes(rt, alerts, exposition))

    async def close(_app: web.Application) -> None:
        exposition.close()

    web_app.on_cleanup.append(close)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, rt.settings.metrics_host, rt.settings.metrics_port)
    await site.start()
    # With port 0 the OS picked one: report the real address.
    port = runner.addresses[0][1] if runner.addresses else rt.settings.metrics_port
    log.info(
        "metrics on http://%s:%s/metrics (also /healthz, /readyz)", rt.settings.metrics_host, port
    )
