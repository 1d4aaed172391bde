"""The shop's path end to end in a real browser: a page carrying the snippet, Debian's
headless Chromium, `expmon collect`, the real broker.

Three page views with a late layout shift (CLS) and a slow click (INP) each; each view
sends one page-load event when the page is hidden (navigation). The page keeps a copy of
every event the snippet sent (the config's `onSend`, in the shop origin's localStorage):
the topic must hold exactly those events, field for field, as the browser measured them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from expmon.kafka.admin import default_topic_specs, ensure_topics
from expmon.replay.run import ReplayOptions, run_replay
from schemas import codec
from tests.integration.browser import headless_chromium
from tests.integration.collector_process import CollectorProcess
from tests.integration.conftest import SettingsFactory
from tests.integration.shop_server import PAGES, Shop
from tests.integration.worker_process import read_topic

VITALS = ("ttfb_ms", "fcp_ms", "lcp_ms", "inp_ms", "cls")


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


def test_snippet_in_chromium_to_kafka_through_the_collector(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    with Shop("") as shop:
        settings = settings_factory(collect_allowed_origins=shop.url)
        ensure_topics(settings, default_topic_specs(settings))
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
        finally:
            assert collector.stop() == 0, collector.log_tail()
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
        [row] = [r for r in rows if r["page"] == event["page"] and r["count"]]
        assert (row["count"], row["device"]) == (1, event["device"])
        assert abs(row["p50"] - event["load_ms"]) <= 0.01 * event["load_ms"]
