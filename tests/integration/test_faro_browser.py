"""The real Grafana Faro web SDK (@grafana/faro-web-sdk, npm) in headless Chromium, pointed
at `expmon collect`'s `POST /collect`: its payloads become page-load events.

The page records every body the SDK posts (web/test/faro-page.js wraps `fetch`); the
expected events are derived here from those payloads by the documented mapping
(expmon/collect/faro.py's docstring), and the topic must hold exactly them.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from expmon.kafka.admin import default_topic_specs, ensure_topics
from schemas import codec
from tests.integration.browser import headless_chromium
from tests.integration.collector_process import CollectorProcess
from tests.integration.conftest import SettingsFactory
from tests.integration.shop_server import PAGES, Shop
from tests.integration.test_browser import visit, wait_for_records
from tests.integration.worker_process import read_topic

WEB = Path(__file__).resolve().parents[2] / "web"
ROUTES = {"/": "/", "/product/42": "/product/:id", "/cart": "/cart"}
VITALS = {"ttfb": "ttfb_ms", "fcp": "fcp_ms", "lcp": "lcp_ms", "inp": "inp_ms", "cls": "cls"}


def build_faro_bundle(out: Path) -> Path:
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "web/node_modules missing: run `make install` (npm ci in web/)"
    subprocess.run(
        [str(esbuild), "test/faro-page.js", "--bundle", "--format=iife", f"--outfile={out}"],
        cwd=WEB,
        check=True,
        capture_output=True,
    )
    return out


def expected_events(payloads: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """event_id -> the fields the mapping must give it."""
    expected: dict[str, dict[str, Any]] = {}
    for body in payloads:
        meta = body["meta"]
        path = "/" + meta["page"]["url"].split("/", 3)[3]
        common = {
            "page": ROUTES[path],
            "session_id": meta["session"]["id"],
            "device": "desktop",
            "app_version": "1.0.0",
            "platform": "web",
        }
        for m in body.get("measurements", []):
            if m["type"] != "web-vitals":
                continue
            [key] = [k for k in m["values"] if k in VITALS]
            expected[f"faro-{key}-{m['context']['id']}"] = {
                **common,
                VITALS[key]: m["values"][key],
                "occurred_at": m["timestamp"],
            }
        for e in body.get("events", []):
            if e["name"] == "faro.performance.navigation":
                attrs = e["attributes"]
                expected[f"faro-nav-{attrs['faroNavigationId']}"] = {
                    **common,
                    "load_ms": float(attrs["pageLoadTime"]),
                    "occurred_at": e["timestamp"],
                }
    return expected


def test_faro_sdk_payloads_become_page_load_events(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    bundle = build_faro_bundle(tmp_path / "faro-test.js")
    with Shop("", faro_bundle=bundle) as shop:
        settings = settings_factory(collect_allowed_origins=shop.url)
        ensure_topics(settings, default_topic_specs(settings))
        collector = CollectorProcess(settings, tmp_path / "collector.log").start()
        shop.collector_url = collector.url
        driver = headless_chromium(tmp_path / "chromium-profile")
        try:
            for path in PAGES:
                visit(driver, shop.url + path, settle=1.5)  # past web-vitals' idle wait: INP
            driver.get(shop.url + "/done")
            time.sleep(1.0)  # the SDK's last batch leaves on hide (fetch keepalive)
            sent = json.loads(
                driver.execute_script("return localStorage.getItem('faro.test.sent')") or "[]"
            )
        finally:
            driver.quit()
        expected = expected_events(sent)
        try:
            records = wait_for_records(settings, settings.topic_page_loads, len(expected))
            letters = read_topic(settings, settings.topic_dlq, timeout_ms=1000)
            with urllib.request.urlopen(f"{collector.url}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
        finally:
            assert collector.stop() == 0, collector.log_tail()

    assert {ROUTES["/" + b["meta"]["page"]["url"].split("/", 3)[3]] for b in sent} == set(
        ROUTES.values()
    )
    navigations = [k for k in expected if k.startswith("faro-nav-")]
    assert len(navigations) == len(PAGES)
    for vital in ("ttfb", "fcp", "lcp", "cls", "inp"):  # every vital of every page view
        assert len([k for k in expected if k.startswith(f"faro-{vital}-")]) == len(PAGES), vital
    assert letters == [], [dict(r.headers) for r in letters]
    on_topic = [codec.loads(r.value) for r in records]
    assert sorted(e["event_id"] for e in on_topic) == sorted(expected)  # each once
    for event in on_topic:
        want = expected[event["event_id"]]
        assert {k: event.get(k) for k in want} == want, event["event_id"]
        assert event["region"] == "unknown" and event["schema_version"] == 1
    ignored = sum(
        len([e for e in b.get("events", []) if e["name"] != "faro.performance.navigation"])
        for b in sent
    )
    assert ignored > 0  # session_start / session_resume: counted, not errors
    assert (
        f'expmon_collector_events_total{{family="faro",outcome="ignored"}} {float(ignored)}'
        in metrics
    )
