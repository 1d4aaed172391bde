"""The shop's path end to end in a real browser: a page carrying the snippet, Debian's
headless Chromium, `expmon collect`, the real broker.

Three page views with a late layout shift (CLS) and a slow click (INP) each; each view
sends one page-load event when the page is hidden (navigation). The page keeps a copy of
every event the snippet sent (the config's `onSend`, in the shop origin's localStorage):
the topic must hold exactly those events, field for field, as the browser measured them.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from expmon.dashboards.generate import WEB_VITALS, dashboard_json
from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.local.procs import LocalPrometheus
from expmon.replay.run import ReplayOptions, run_replay
from schemas import codec
from tests.integration.browser import headless_chromium
from tests.integration.collector_process import CollectorProcess
from tests.integration.conftest import SettingsFactory
from tests.integration.shop_server import PAGES, Shop
from tests.integration.test_dashboards import PromQuery, expand, panel_targets, variable_values
from tests.integration.worker_process import WorkerProcess, read_topic

VITALS = ("ttfb_ms", "fcp_ms", "lcp_ms", "inp_ms", "cls")
# Google's thresholds (good up to, poor above), written out here as the ground truth
GOOGLE = {"ttfb": (800, 1800), "fcp": (1800, 3000), "lcp": (2500, 4000), "inp": (200, 500),
          "cls": (0.1, 0.25)}  # fmt: skip


def visit(driver: Any, url: str, settle: float = 0.3) -> None:
    """Load a page, wait for its layout shift, click the slow button once, wait `settle`."""
    driver.get(url)
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.readyState === 'complete' && window.shifted")
    )
    button = driver.find_element(By.ID, "buy")
    ActionChains(driver).move_to_element(button).click().perform()  # a trusted click
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "status").text == "added")
    time.sleep(settle)  # the paint after the click ends the interaction


def wait_for_records(settings: Any, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        records = read_topic(settings, topic, timeout_ms=1000)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CWV_METRICS = (
    "expmon_web_vital_p75_seconds",
    "expmon_web_vital_cls_p75",
    "expmon_web_vital_rating_ratio",
    "expmon_core_web_vitals_pass",
)


def wait_for_vitals(worker: WorkerProcess, pages: set[str], timeout: float = 90.0) -> Samples:
    """The worker's Core Web Vitals gauges, once every page has them in the 5m view (the
    gauges show the latest final view: a 10 s base window holds only some page views)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = worker.metrics(*CWV_METRICS)
        shown = {
            dict(labels).get("page")
            for name, labels in samples
            if name == "expmon_core_web_vitals_pass" and dict(labels).get("window") == "5m"
        }
        if pages <= shown or time.monotonic() > deadline:
            return samples
        time.sleep(1.0)


def one_gauge(samples: Samples, labels: dict[str, str], name: str, **more: str) -> float:
    """The one sample of `name` with these labels (region `all` where it has a region)."""
    wanted = {**labels, **more}
    values = [
        value
        for (n, ls), value in samples.items()
        if n == name
        and {k: v for k, v in ls if k != "region"} == wanted
        and dict(ls).get("region", "all") == "all"
    ]
    assert len(values) == 1, (name, wanted, sorted(k for k in samples if k[0] == name))
    return values[0]


def dashboard_failures(prom: PromQuery, timeout: float = 30.0) -> list[str]:
    """The Core Web Vitals dashboard's panel queries on the real Prometheus scraping the
    worker, the way Grafana sends them (test_dashboards' harness); [] when all have data."""
    board = dashboard_json(WEB_VITALS)
    values = variable_values(board)
    deadline = time.monotonic() + timeout
    while True:
        range_s = max(60, int(time.time() - prom.since))
        problems = [
            f"{title} [{target['refId']}]: {why}"
            for title, target in panel_targets(board)
            if (why := prom.evaluate(expand(target["expr"], values, range_s), target["instant"]))
        ]
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(2)


def test_snippet_in_chromium_to_kafka_through_the_collector(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    with Shop("") as shop:
        # 10 s windows, 2 s lateness, partitions idle after 1 s: the live worker closes
        # the page views' windows seconds after the last beacon instead of a minute
        settings = settings_factory(
            collect_allowed_origins=shop.url,
            window_seconds=10,
            allowed_lateness_seconds=2,
            idle_partition_timeout_seconds=1,
        )
        ensure_topics(settings, default_topic_specs(settings))
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        prometheus = LocalPrometheus(
            tmp_path / "prometheus", [f"127.0.0.1:{worker.port}"], [], interval="1s"
        )
        prometheus.start()
        since = time.time()
        worker.start()
        collector = CollectorProcess(settings, tmp_path / "collector.log").start()
        shop.collector_url = collector.url
        driver = headless_chromium(tmp_path / "chromium-profile")
        try:
            for path in PAGES:
                visit(driver, shop.url + path)
            driver.get(shop.url + "/done")  # hides the last page: its beacon goes
            sent = json.loads(
                driver.execute_script("return localStorage.getItem('expmon.test.sent')") or "[]"
            )
            user_agent = driver.execute_script("return navigator.userAgent")
        finally:
            driver.quit()
        try:
            records = wait_for_records(settings, settings.topic_page_loads, len(PAGES))
            letters = read_topic(settings, settings.topic_dlq, timeout_ms=1000)
            live = wait_for_vitals(worker, {e["page"] for e in sent})
            board = dashboard_failures(PromQuery(prometheus, since))
        finally:
            prometheus.stop()
            assert collector.stop() == 0, collector.log_tail()
            assert worker.stop() == 0, worker.log_tail()
    assert not board, "Core Web Vitals panels without data:\n" + "\n".join(board)
    # The worker's processors over what arrived (replay: the same stage and merger, with the
    # range's end as the final watermark, so every window is closed now)
    report_path = tmp_path / "replay.json"
    options = ReplayOptions(topics=(settings.topic_page_loads,), report=report_path, progress=False)
    assert run_replay(settings, options) == 0
    windows = codec.loads(report_path.read_bytes())["windows"]

    assert [e["page"] for e in sent] == ["/", "/product/:id", "/cart"]
    assert letters == [], [dict(r.headers) for r in letters]
    on_topic = [codec.loads(r.value) for r in records]
    assert len(on_topic) == len(PAGES)  # one event per page view, none twice
    assert sorted(on_topic, key=lambda e: e["page"]) == sorted(sent, key=lambda e: e["page"])
    session = {e["session_id"] for e in sent}
    assert len(session) == 1  # one visitor, one session across the page views
    assert {r.key for r in records} == {session.pop().encode()}
    for event in sent:
        assert event["device"] == ("mobile" if "Mobi" in user_agent else "desktop")
        assert event["region"] == "eu-west" and event["app_version"] == "test-1"
        assert event["load_ms"] > 0
        for vital in VITALS:  # every vital measured and final by the time the page hid
            assert vital in event, (vital, event)
        assert event["cls"] > 0  # the late banner shifted the page
        assert event["inp_ms"] >= 100  # the click handler blocks for 120 ms
        assert event["ttfb_ms"] <= event["fcp_ms"] <= event["load_ms"] + 1000
    rows = [
        row
        for w in windows
        if w["family"] == "page_load" and w["view"] == "1m"
        for row in w["rows"]
        if row["region"] == "all"
    ]
    for event in sent:  # each page view once in its page's 1-minute window, its load time
        page = [r for r in rows if r["page"] == event["page"]]
        [row] = [r for r in page if "kind" not in r and r["count"]]
        assert (row["count"], row["device"]) == (1, event["device"])
        assert abs(row["p50"] - event["load_ms"]) <= 0.01 * event["load_ms"]
        # and its vitals: one sample each, p75 = the value within the sketch's 1 %, rated
        # by Google's thresholds, the page passing the Core Web Vitals assessment
        for vital, field in zip(("ttfb", "fcp", "lcp", "inp", "cls"), VITALS, strict=True):
            [v] = [r for r in page if r.get("kind") == "web_vital" and r["vital"] == vital]
            assert v["samples"] == 1, v
            assert abs(v["p75"] - event[field]) <= 0.01 * event[field], (v, event[field])
            good, poor = GOOGLE[vital]
            rating = (
                "good"
                if event[field] <= good
                else "poor"
                if event[field] > poor
                else "needs_improvement"
            )
            assert v["rating"] == rating, (v, event[field])
        [cwv] = [r for r in page if r.get("kind") == "cwv"]
        assert cwv["pass"] is True  # a fast local page: LCP, INP and CLS all good
        # the live worker's /metrics say the same (the contract's metric names)
        labels = {"page": event["page"], "device": event["device"], "window": "5m"}
        gauge = functools.partial(one_gauge, live, labels)
        assert gauge("expmon_core_web_vitals_pass") == 1.0
        assert abs(gauge("expmon_web_vital_cls_p75") - event["cls"]) <= 0.01 * event["cls"]
        lcp = gauge("expmon_web_vital_p75_seconds", vital="lcp")
        assert abs(lcp * 1000 - event["lcp_ms"]) <= 0.01 * event["lcp_ms"]
        assert gauge("expmon_web_vital_rating_ratio", vital="inp", rating="good") == 1.0
