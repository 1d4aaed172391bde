"""The worker's HTTP endpoints: /metrics, /healthz, /readyz and /alerts (aiohttp).

/metrics serves pages rendered off the event loop within the series budget
(`expmon.exposition.render`): `?name[]=...` narrows the page and `Accept` picks the text
or OpenMetrics format as prometheus_client does everywhere.
"""

from __future__ import annotations

import base64
import hmac
import logging
import ssl
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from expmon.errors import ConfigError
from expmon.exposition.render import Exposition
from expmon.settings import Settings
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


# probes of an orchestrator carry no credentials, and these two carry no data
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def basic_auth(settings: Settings) -> Middleware | None:
    """A middleware asking for the configured user and password, or None without one."""
    user, password = settings.metrics_basic_auth_user, settings.metrics_basic_auth_password
    if (user is None) != (password is None):
        raise ConfigError(
            "EXPMON_METRICS_BASIC_AUTH_USER and EXPMON_METRICS_BASIC_AUTH_PASSWORD go together"
        )
    if user is None or password is None:
        return None
    expected = base64.b64encode(f"{user}:{password.get_secret_value()}".encode()).decode()
    wanted = f"Basic {expected}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get(hdrs.AUTHORIZATION, "").encode()
        if not hmac.compare_digest(given, wanted):
            return web.Response(
                status=401, text="authentication required\n",
                headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="expmon"'},
            )  # fmt: skip
        return await handler(request)

    return middleware


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS context of the endpoints, or None for plain HTTP."""
    cert, key = settings.metrics_tls_certfile, settings.metrics_tls_keyfile
    if (cert is None) != (key is None):
        raise ConfigError("EXPMON_METRICS_TLS_CERTFILE and EXPMON_METRICS_TLS_KEYFILE go together")
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"metrics TLS certificate {cert} / key {key}: {exc}") from exc
    return context


def application(
    rt: Runtime, alerts: AlertRunner | None, exposition: Exposition | None = None
) -> web.Application:
    auth = basic_auth(rt.settings)
    web_app = web.Application(middlewares=[auth] if auth is not None else [])
    web_app.add_routes(routes(rt, alerts, exposition))
    return web_app


async def serve(rt: Runtime, alerts: AlertRunner | None) -> None:
    exposition = new_exposition(rt)
    web_app = application(rt, alerts, exposition)
    context = tls_context(rt.settings)

    async def close(_app: web.Application) -> None:
        exposition.close()

    web_app.on_cleanup.append(close)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, rt.settings.metrics_host, rt.settings.metrics_port, ssl_context=context
    )
    await site.start()
    # With port 0 the OS picked one: report the real address.
    port = runner.addresses[0][1] if runner.addresses else rt.settings.metrics_port
    log.info(
        "metrics on %s://%s:%s/metrics (also /healthz, /readyz)%s",
        "https" if context is not None else "http",
        rt.settings.metrics_host,
        port,
        "; /metrics and /alerts ask for basic auth" if rt.settings.metrics_basic_auth_user else "",
    )
