"""The worker's HTTP endpoints with basic auth and HTTPS: /metrics and /alerts ask for
the user and password, probes stay open, and the server speaks TLS with the given
certificate (a throw-away CA from openssl). A real server, real sockets."""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from expmon.errors import ConfigError
from expmon.exposition.metrics import Metrics, new_registry
from expmon.local.kafka.tls import make_tls_material
from expmon.settings import Settings
from streams import http
from streams.runtime import Runtime


def fetch(url: str, context: ssl.SSLContext, auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_basic_auth_and_https(tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "tls")
    settings = Settings(
        metrics_basic_auth_user="prom", metrics_basic_auth_password="pw-4b1e",
        metrics_tls_certfile=tmp_path / "tls" / "broker.pem",
        metrics_tls_keyfile=tmp_path / "tls" / "broker.key",
    )  # fmt: skip
    rt = Runtime(settings, Metrics(new_registry()), app=None, topics=None, source_partitions={})  # type: ignore[arg-type]
    client = ssl.create_default_context(cafile=str(tls.ca_file))

    async def scenario() -> None:
        runner = web.AppRunner(http.application(rt, None), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=http.tls_context(settings))
        await site.start()
        base = f"https://127.0.0.1:{runner.addresses[0][1]}"
        loop = asyncio.get_running_loop()

        async def get(path: str, auth: str | None = None) -> tuple[int, bytes]:
            return await loop.run_in_executor(None, fetch, base + path, client, auth)

        try:
            assert (await get("/metrics"))[0] == 401
            assert (await get("/metrics", "prom:wrong"))[0] == 401
            assert (await get("/alerts", "other:pw-4b1e"))[0] == 401
            status, body = await get("/metrics", "prom:pw-4b1e")
            assert status == 200 and b"expmon_events_total" in body
            assert (await get("/healthz"))[0] == 200  # probes carry no credentials
            # plain HTTP to the TLS port gets nothing
            with pytest.raises(OSError):
                await loop.run_in_executor(
                    None, fetch, base.replace("https", "http") + "/healthz", client
                )
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "half",
    [{"metrics_basic_auth_user": "prom"}, {"metrics_tls_certfile": Path("/etc/hostname")}],
)
def test_half_a_setting_is_a_clear_error(half: dict[str, object]) -> None:
    settings = Settings(**half)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="go together"):
        http.basic_auth(settings)
        http.tls_context(settings)
