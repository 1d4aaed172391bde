"""The Prometheus twin of the rules, checked by the real promtool (Debian's prometheus)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from expmon.alerting.promrules import export
from expmon.alerting.rules import DEFAULT_RUNBOOK_BASE_URL, load_rules
from expmon.families.registry import SIGNALS
from expmon.local.procs import binary

PL = 'region="all",window="5m"'
PAY = 'user_type="all",window="5m"'
BOUNCE = 'region="all",window="15m"'
CWV = 'window="15m"'

# (series, values): 24 samples 15 s apart = 6 minutes
SERIES = [
    # /checkout on mobile: p95 4 s with enough loads -> warning after `for: 2m`
    (
        f'expmon_page_load_quantile_seconds{{page="/checkout",device="mobile",{PL},quantile="0.95"}}',
        "4x24",
    ),
    (f'expmon_page_load_window_loads{{page="/checkout",device="mobile",{PL}}}', "100x24"),
    # /cart on desktop: p95 6 s -> warning and critical
    (
        f'expmon_page_load_quantile_seconds{{page="/cart",device="desktop",{PL},quantile="0.95"}}',
        "6x24",
    ),
    (f'expmon_page_load_window_loads{{page="/cart",device="desktop",{PL}}}', "50x24"),
    # / on tablet: slow but only 10 loads -> nothing
    (f'expmon_page_load_quantile_seconds{{page="/",device="tablet",{PL},quantile="0.95"}}', "9x24"),
    (f'expmon_page_load_window_loads{{page="/",device="tablet",{PL}}}', "10x24"),
    # a per-region row must not count
    (
        'expmon_page_load_quantile_seconds{page="/x",device="mobile",region="eu-west",window="5m",quantile="0.95"}',
        "9x24",
    ),
    (
        'expmon_page_load_window_loads{page="/x",device="mobile",region="eu-west",window="5m"}',
        "500x24",
    ),
    # payments: adyen card 10 of 100 failing, stripe card 1 of 100
    (f'expmon_payment_window_failures{{provider="adyen",method="card",{PAY}}}', "10x24"),
    (f'expmon_payment_window_attempts{{provider="adyen",method="card",{PAY}}}', "100x24"),
    (f'expmon_payment_window_failures{{provider="stripe",method="card",{PAY}}}', "1x24"),
    (f'expmon_payment_window_attempts{{provider="stripe",method="card",{PAY}}}', "100x24"),
    # over 3 % but not significant: 2 of 54 (3.7 %, Wilson 95 % lower bound 1.0 %), and
    # 18 of 400 (4.5 %, lower bound 2.87 %); 19 of 400 is (4.75 %, lower bound 3.06 %)
    (f'expmon_payment_window_failures{{provider="paypal",method="bnpl",{PAY}}}', "2x24"),
    (f'expmon_payment_window_attempts{{provider="paypal",method="bnpl",{PAY}}}', "54x24"),
    (f'expmon_payment_window_failures{{provider="stripe",method="wallet",{PAY}}}', "18x24"),
    (f'expmon_payment_window_attempts{{provider="stripe",method="wallet",{PAY}}}', "400x24"),
    (f'expmon_payment_window_failures{{provider="paypal",method="wallet",{PAY}}}', "19x24"),
    (f'expmon_payment_window_attempts{{provider="paypal",method="wallet",{PAY}}}', "400x24"),
    # bounce on /landing summed over devices: (300 + 100) / (400 + 400) = 50 %
    (f'expmon_bounce_window_bounces{{page="/landing",device="mobile",{BOUNCE}}}', "300x24"),
    (f'expmon_bounce_window_sessions{{page="/landing",device="mobile",{BOUNCE}}}', "400x24"),
    (f'expmon_bounce_window_bounces{{page="/landing",device="desktop",{BOUNCE}}}', "100x24"),
    (f'expmon_bounce_window_sessions{{page="/landing",device="desktop",{BOUNCE}}}', "400x24"),
    # ... and on /promo 40 of 80 (50 %, lower bound 39.3 %): not significant
    (f'expmon_bounce_window_bounces{{page="/promo",device="mobile",{BOUNCE}}}', "40x24"),
    (f'expmon_bounce_window_sessions{{page="/promo",device="mobile",{BOUNCE}}}', "80x24"),
    # Core Web Vitals over 15m: LCP poor on /product/:id mobile (80 views), CLS needing
    # improvement on / desktop (60), INP poor but 10 views, FCP poor (not a core vital)
    (
        f'expmon_web_vital_p75_rating{{page="/product/:id",device="mobile",vital="lcp",{CWV}}}',
        "2x24",
    ),
    (
        f'expmon_web_vital_window_samples{{page="/product/:id",device="mobile",vital="lcp",{CWV}}}',
        "80x24",
    ),
    (f'expmon_web_vital_p75_rating{{page="/",device="desktop",vital="cls",{CWV}}}', "1x24"),
    (f'expmon_web_vital_window_samples{{page="/",device="desktop",vital="cls",{CWV}}}', "60x24"),
    (f'expmon_web_vital_p75_rating{{page="/cart",device="tablet",vital="inp",{CWV}}}', "2x24"),
    (f'expmon_web_vital_window_samples{{page="/cart",device="tablet",vital="inp",{CWV}}}', "10x24"),
    (f'expmon_web_vital_p75_rating{{page="/",device="mobile",vital="fcp",{CWV}}}', "2x24"),
    (f'expmon_web_vital_window_samples{{page="/",device="mobile",vital="fcp",{CWV}}}', "500x24"),
    # events: page-loads grows with 5 % invalid; checkout-events stopped
    ('expmon_events_total{topic="page-loads",outcome="accepted"}', "0+95x24"),
    ('expmon_events_total{topic="page-loads",outcome="invalid"}', "0+5x24"),
    ('expmon_events_total{topic="checkout-events",outcome="accepted"}', "100x24"),
    # tracking: dhl 5 of 100 stale, ups 1 of 100
    ('expmon_tracking_stale_orders{carrier="dhl"}', "5x24"),
    ('expmon_tracking_orders{carrier="dhl"}', "100x24"),
    ('expmon_tracking_stale_orders{carrier="ups"}', "1x24"),
    ('expmon_tracking_orders{carrier="ups"}', "100x24"),
]

# (eval time, alertname, [(labels, summary)])
EXPECTED: list[tuple[str, str, list[tuple[dict[str, str], str]]]] = [
    ("1m", "PageLoadSlow", []),
    ("3m", "PageLoadSlow", [
        ({"severity": "warning", "page": "/checkout", "device": "mobile"},
         "p95 load time 4s > 3.00 s over 5m on page=/checkout, device=mobile (>= 30 loads)"),
        ({"severity": "warning", "page": "/cart", "device": "desktop"},
         "p95 load time 6s > 3.00 s over 5m on page=/cart, device=desktop (>= 30 loads)"),
        ({"severity": "critical", "page": "/cart", "device": "desktop"},
         "p95 load time 6s > 5.00 s over 5m on page=/cart, device=desktop (>= 30 loads)"),
    ]),
    ("1m", "PaymentFailureRateHigh", [
        ({"severity": "critical", "provider": "adyen", "method": "card"},
         "payment failures 10% > 3.0 % over 5m for provider=adyen, method=card (>= 50 attempts)"),
        ({"severity": "critical", "provider": "paypal", "method": "wallet"},
         "payment failures 4.75% > 3.0 % over 5m for provider=paypal, method=wallet "
         "(>= 50 attempts)"),
    ]),
    ("1m", "BounceRateHigh", [
        ({"severity": "warning", "page": "/landing"},
         "bounce rate 50% > 40.0 % over 15m on landing page page=/landing (>= 50 sessions)"),
    ]),
    ("5m", "InvalidEventRateHigh", [
        ({"severity": "warning", "topic": "page-loads"},
         "invalid records 5% > 1.0 % over 5m on topic=page-loads (>= 100 records)"),
    ]),
    ("5m", "EventSourceSilent", [
        ({"severity": "critical", "topic": "checkout-events"},
         "no events on topic=checkout-events for over 300 s (limit 300 s)"),
    ]),
    ("1m", "TrackingStale", [
        ({"severity": "warning", "carrier": "dhl"},
         "5% of in-transit orders without a tracking update for 24 h (> 2.0 %) at carrier=dhl "
         "(>= 20 orders)"),
    ]),
    ("1m", "CoreWebVitalsPoor", [
        ({"severity": "warning", "page": "/product/:id", "device": "mobile", "vital": "lcp"},
         "p75 page=/product/:id, device=mobile, vital=lcp is poor (worse than good) over 15m "
         "(>= 50 page views)"),
        ({"severity": "critical", "page": "/product/:id", "device": "mobile", "vital": "lcp"},
         "p75 page=/product/:id, device=mobile, vital=lcp is poor (worse than needs improvement) "
         "over 15m (>= 50 page views)"),
        ({"severity": "warning", "page": "/", "device": "desktop", "vital": "cls"},
         "p75 page=/, device=desktop, vital=cls is needs improvement (worse than good) over 15m "
         "(>= 50 page views)"),
    ]),
    ("5m", "DeliveryExceptionRateHigh", []),
    ("5m", "ShippingSLABreach", []),
]  # fmt: skip


RATIO_ALERTS = {
    "PaymentFailureRateHigh": 0.03,
    "BounceRateHigh": 0.4,
    "InvalidEventRateHigh": 0.01,
    "TrackingStale": 0.02,
}


def annotations(name: str, summary: str) -> dict[str, str]:
    out = {
        "summary": summary,
        "runbook_url": f"{DEFAULT_RUNBOOK_BASE_URL}docs/runbooks.md#{name.lower()}",
    }
    if name in RATIO_ALERTS:
        out["significance"] = (
            "fires only when the 95 % Wilson lower bound of the ratio is "
            f"> {RATIO_ALERTS[name]:g} as well"
        )
    return out


def promtool_tests(rules_file: str, expected: Any) -> dict[str, Any]:
    return {
        "rule_files": [rules_file],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in SERIES],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": labels,
                                "exp_annotations": annotations(name, summary),
                            }
                            for labels, summary in alerts
                        ],
                    }
                    for at, name, alerts in expected
                ],
            }
        ],
    }


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], check=False, capture_output=True, text=True, cwd=cwd
    )


def write_rules(tmp_path: Path) -> Path:
    rules_path = tmp_path / "expmon-rules.yml"
    rules_path.write_text(export(load_rules(signals=SIGNALS)))
    return rules_path


def test_exported_rules_pass_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    rules_path = write_rules(tmp_path)
    check = promtool("check", "rules", str(rules_path), cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 13 rules found" in check.stdout
    tests_path = tmp_path / "expmon-rules.test.yml"
    tests_path.write_text(yaml.safe_dump(promtool_tests(rules_path.name, EXPECTED)))
    run = promtool("test", "rules", str(tests_path), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_reports_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: expecting PageLoadSlow on the quiet tablet page is reported."""
    rules_path = write_rules(tmp_path)
    wrong = [
        ("3m", "PageLoadSlow", [({"severity": "warning", "page": "/", "device": "tablet"}, "x")])
    ]
    tests_path = tmp_path / "wrong.test.yml"
    tests_path.write_text(yaml.safe_dump(promtool_tests(rules_path.name, wrong)))
    run = promtool("test", "rules", str(tests_path), cwd=tmp_path)
    assert run.returncode != 0
    assert "PageLoadSlow" in run.stdout + run.stderr
