"""The demo's incident view: alerts grouped and explained, panels sized to the terminal,
a plain line per event, the log in its own panel, a failed child named with its log."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from expmon.errors import DemoChildError
from expmon.local.demo import Child, Stop, stop_on_signals
from expmon.local.demo_view import (
    DequeHandler,
    LiveView,
    PlainView,
    Sizes,
    Snapshot,
    WindowRow,
    explain,
    group_alerts,
    lag_is_abnormal,
    slow_regions,
)

PAGES = ["/", "/search", "/product/:id", "/cart", "/checkout", "/checkout/payment"]
DEVICES = ["mobile", "desktop", "tablet"]
REGIONS = ["eu-west", "us-east", "ap-south"]


def rows(slow_region: str | None = "eu-west") -> list[WindowRow]:
    """Every page x device x region, 1m and 5m; p95 6 s in `slow_region`, 1.5 s elsewhere."""
    out = []
    for window in ("1m", "5m"):
        for page in PAGES:
            for device in DEVICES:
                for region in REGIONS:
                    p95 = 6.0 if region == slow_region else 1.5
                    out.append(
                        WindowRow(
                            page,
                            device,
                            region,
                            window,
                            p95 / 2,
                            p95,
                            p95 * 1.2,
                            0.6 if p95 > 3 else 0.01,
                            0.5,
                            100.0,
                        )
                    )
    return out


def alert(page: str, device: str, severity: str, state: str, value: float = 6.0) -> dict[str, Any]:
    threshold = {"warning": 3.0, "critical": 5.0}[severity]
    return {
        "alert": "PageLoadSlow",
        "severity": severity,
        "state": state,
        "fingerprint": f"{page}{device}{severity}",
        "labels": {
            "alertname": "PageLoadSlow",
            "severity": severity,
            "page": page,
            "device": device,
        },
        "annotations": {
            "summary": f"p95 load time {value:.2f} s > {threshold:.2f} s over 5m on page={page}",
            "threshold": str(threshold),
            "window": "5m",
        },
        "value": value,
    }


def incident_alerts() -> list[dict[str, Any]]:
    """The eu-west incident: both levels of PageLoadSlow on every page and device, plus a
    payment alert; 2 x 18 + 1 instances."""
    out = [
        alert(page, device, severity, "firing")
        for page in PAGES
        for device in DEVICES
        for severity in ("warning", "critical")
    ]
    out.append(
        {
            "alert": "PaymentFailureRateHigh",
            "severity": "critical",
            "state": "firing",
            "fingerprint": "pay",
            "labels": {
                "alertname": "PaymentFailureRateHigh",
                "severity": "critical",
                "provider": "adyen",
                "method": "card",
            },
            "annotations": {"summary": "payment failures 30.6 % > 3.0 %", "threshold": "0.03"},
            "value": 0.306,
        }
    )
    return out


def test_severities_merge_into_one_row_per_alert_and_dimensions() -> None:
    groups = group_alerts(incident_alerts(), rows())
    assert len(groups) == len(PAGES) * len(DEVICES) + 1
    page_groups = [g for g in groups if g.alert == "PageLoadSlow"]
    assert {g.severity for g in page_groups} == {"critical"}  # the highest level shown
    assert {g.instances for g in page_groups} == {2}
    assert {g.explains for g in page_groups} == {"region eu-west"}


def test_worst_first_firing_before_pending_critical_before_warning() -> None:
    alerts = [
        alert("/", "mobile", "warning", "pending"),
        alert("/cart", "mobile", "warning", "firing"),
        alert("/search", "mobile", "critical", "firing"),
        alert("/checkout", "mobile", "warning", "resolved"),
    ]
    order = [(g.state, g.severity) for g in group_alerts(alerts, rows())]
    assert order == [
        ("firing", "critical"),
        ("firing", "warning"),
        ("pending", "warning"),
        ("resolved", "warning"),
    ]


def test_a_firing_warning_outranks_a_pending_critical_of_the_same_page() -> None:
    alerts = [
        alert("/", "mobile", "critical", "pending"),
        alert("/", "mobile", "warning", "firing"),
    ]
    [group] = group_alerts(alerts, rows())
    assert (group.state, group.severity) == ("firing", "warning")


@pytest.mark.parametrize(
    ("slow_region", "expected"),
    [("eu-west", "region eu-west"), ("us-east", "region us-east"), (None, "")],
)
def test_explain_names_the_region_from_the_data(slow_region: str | None, expected: str) -> None:
    assert explain(alert("/cart", "tablet", "warning", "firing"), rows(slow_region)) == expected


def test_explain_says_all_regions_when_every_region_is_slow() -> None:
    everywhere = [r for region in REGIONS for r in rows(region) if r.region == region]
    assert explain(alert("/cart", "tablet", "warning", "firing"), everywhere) == "all regions"


def test_explain_names_the_segment_of_other_alerts() -> None:
    [payment] = [a for a in incident_alerts() if a["alert"] == "PaymentFailureRateHigh"]
    assert explain(payment, rows()) == "provider adyen"


def test_slow_regions_counts_page_device_rows() -> None:
    one_minute = [r for r in rows() if r.window == "1m"]
    assert slow_regions(one_minute) == {"eu-west": len(PAGES) * len(DEVICES)}


def test_watermark_lag_of_the_allowed_lateness_is_normal() -> None:
    assert not lag_is_abnormal(32.0, 30.0)
    assert lag_is_abnormal(95.0, 30.0)
    assert not lag_is_abnormal(None, 30.0)


def snapshot() -> Snapshot:
    return Snapshot({"accepted": 45_000.0, "invalid": 3.0}, rows(), 32.0, alerts=incident_alerts())


def screen(width: int, height: int, logs: DequeHandler | None = None) -> list[str]:
    handler = logs or DequeHandler()
    view = LiveView("slow_pages@10s+240s:region=eu-west", 30.0, handler)
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None
    )
    console.print(view.render(snapshot(), None, width, height))
    return console.export_text().splitlines()


@pytest.mark.parametrize(("width", "height"), [(100, 30), (200, 50), (80, 24)])
def test_the_view_fits_the_terminal_and_shows_region_alerts_and_pages(
    width: int, height: int
) -> None:
    lines = screen(width, height)
    assert len(lines) == height
    assert all(len(line) <= width for line in lines)
    text = "\n".join(lines)
    assert "eu-west" in lines[1]  # the header says where it hurts
    assert "region eu-west" in text  # and the alerts say what explains them
    assert "PaymentFailu" in text  # worst first: 10 times its threshold
    if width >= 100:
        assert "0.306 > 0.03" in text  # its value against its threshold, whole
    pages_at = next(i for i, line in enumerate(lines) if "worst pages" in line)
    page_rows = [line for line in lines[pages_at + 2 :] if "eu-west" in line and "/" in line]
    assert len(page_rows) >= 3, text
    assert "more" in text  # 19 groups do not fit: the view says how many are left out


def test_log_lines_stay_in_their_panel_below_the_view() -> None:
    logs = DequeHandler(maxlen=50)
    logger = logging.getLogger("test.demo.view")
    logger.addHandler(logs)
    logger.propagate = False
    for n in range(30):
        logger.warning("log line %d", n)
    lines = screen(100, 30, logs)
    log_at = next(i for i, line in enumerate(lines) if "─ log " in line)
    with_logs = [i for i, line in enumerate(lines) if "log line" in line]
    assert with_logs and min(with_logs) > log_at
    assert "log line 29" in lines[with_logs[-1]]  # the newest shown
    assert len(logs.records) == 30


def test_sizes_give_the_alerts_no_more_than_their_share() -> None:
    sizes = Sizes.fit(30, alert_rows=40)
    assert sizes.pages >= 4
    assert sizes.header + sizes.alerts + 3 + sizes.pages + 3 + sizes.logs + 2 == 30
    assert Sizes.fit(50, alert_rows=2).alerts == 2


def test_plain_view_prints_each_change_once_and_a_status_line() -> None:
    out = io.StringIO()
    view = PlainView(out, lateness_s=30.0, status_every_s=3600)
    view.update(snapshot(), None)
    view.update(snapshot(), None)
    lines = out.getvalue().splitlines()
    firing = [line for line in lines if " alert firing " in line]
    assert len(firing) == len(PAGES) * len(DEVICES) + 1
    assert all("[region eu-west]" in line for line in firing if "PageLoadSlow" in line)
    assert sum(1 for line in lines if "slow pages in region eu-west" in line) == 1
    [status] = [line for line in lines if " status " in line]
    assert "watermark lag 32s (normal)" in status and "19 alerts firing (7 critical)" not in status
    assert "alerts firing" in status


def test_a_failed_child_is_named_with_the_last_line_of_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "simulate.log"
    script = "import sys; print('starting'); print('expmon: error: bad thing'); sys.exit(2)"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out)
    proc.wait(10)
    with pytest.raises(DemoChildError) as caught:
        Child("simulator", proc, log_path).check()
    assert str(caught.value) == "simulator exited with code 2: expmon: error: bad thing"
    assert "starting" in caught.value.detail


def test_sigterm_stops_the_demo_as_ctrl_c_and_a_second_signal_waits_for_the_clean_up() -> None:
    cleaned = False
    before = signal.getsignal(signal.SIGTERM)
    # as Ctrl-C: a KeyboardInterrupt, so every `finally` on the way out runs
    with pytest.raises(KeyboardInterrupt) as caught, stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted at once
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one during the clean-up
            cleaned = True
    assert isinstance(caught.value, Stop) and str(caught.value) == "SIGTERM"
    assert cleaned
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back
