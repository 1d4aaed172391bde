"""Rule files: defaults load, overrides merge, and every problem names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from expmon.alerting.rules import RulesError, load_rules, parse_rules
from expmon.cli import main
from expmon.families.registry import SIGNALS

CONTRACT_ALERTS = {
    "PageLoadSlow",
    "BounceRateHigh",
    "PaymentFailureRateHigh",
    "CheckoutDropOffSpike",
    "ShippingSLABreach",
    "TrackingStale",
    "DeliveryExceptionRateHigh",
    "EventSourceSilent",
    "InvalidEventRateHigh",
}


def test_defaults_hold_every_contract_alert_with_runbook() -> None:
    rules = load_rules(signals=SIGNALS)
    assert {r.alert for r in rules} == CONTRACT_ALERTS
    assert all(r.runbook_url for r in rules)
    slow = {r.severity: r for r in rules if r.alert == "PageLoadSlow"}
    assert (slow["warning"].threshold, slow["critical"].threshold) == (3.0, 5.0)
    assert slow["warning"].for_ms == 120_000
    assert slow["warning"].match == {"region": "all"}


def test_override_changes_only_given_keys_and_can_disable(tmp_path: Path) -> None:
    extra = tmp_path / "ops.yml"
    extra.write_text(
        "rules:\n"
        "  - alert: PaymentFailureRateHigh\n"
        "    threshold: 0.05\n"
        "  - alert: BounceRateHigh\n"
        "    enabled: false\n"
        "  - alert: PaymentFailuresNewUsers\n"
        "    signal: payment_failure_ratio\n"
        "    window: 15m\n"
        "    threshold: 0.1\n"
        "    by: [provider]\n"
        "    where: {user_type: new}\n"
    )
    rules = {r.alert: r for r in load_rules([extra], signals=SIGNALS)}
    payment = rules["PaymentFailureRateHigh"]
    assert payment.threshold == 0.05
    assert payment.min_volume == 50  # untouched default
    assert "BounceRateHigh" not in rules
    new_users = rules["PaymentFailuresNewUsers"]
    assert new_users.match == {"user_type": "new"}
    assert new_users.by == ("provider",)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("rules:\n  - alert: X\n    signal: nope\n    threshold: 1\n", 3, "unknown signal"),
        (
            "rules:\n  - alert: X\n    signal: bounce_ratio\n    threshold: 1\n",
            2,
            "needs a `window`",
        ),
        (
            "rules:\n  - alert: X\n    signal: bounce_ratio\n    window: 2m\n    threshold: 1\n",
            4,
            "is not a view",
        ),
        (
            "rules:\n  - alert: X\n    signal: page_load_p95_seconds\n    window: 5m\n"
            "    threshold: 1\n    by: [page]\n",
            6,
            "`by` must list them",
        ),
        (
            "rules:\n  - alert: X\n    signal: bounce_ratio\n    window: 5m\n    threshold: hi\n",
            5,
            "valid number",
        ),
        (
            "rules:\n  - alert: X\n    signal: bounce_ratio\n    window: 5m\n    threshold: 1\n"
            "    for: soon\n",
            6,
            "not a duration",
        ),
        (
            "rules:\n  - alert: X\n    signal: bounce_ratio\n    window: 5m\n    threshold: 1\n"
            "    summary: '{value} {nope}'\n",
            6,
            "unknown template field",
        ),
        (
            "rules:\n  - alert: X\n    signal: bounce_ratio\n    window: 5m\n    threshold: 1\n"
            "    colour: red\n",
            6,
            "Extra inputs",
        ),
        ("rules:\n  - alert: X\n    signal: bounce_ratio\n   bad: [\n", 4, "not valid YAML"),
        ("rules:\n  - alert: 'has space'\n", 2, "bad or missing `alert`"),
    ],
)
def test_problems_carry_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules([("ops.yml", text)], signals=SIGNALS)
    problems = info.value.problems
    assert any(
        p.file == "ops.yml" and p.line == line and fragment in p.message for p in problems
    ), [str(p) for p in problems]


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = (
        "rules:\n  - alert: A\n    signal: nope\n    threshold: 1\n"
        "  - alert: B\n    signal: bounce_ratio\n    window: 7m\n    threshold: 1\n"
    )
    with pytest.raises(RulesError) as info:
        parse_rules([("f.yml", text)], signals=SIGNALS)
    assert [p.line for p in info.value.problems] == [3, 7]


def test_cli_check_reports_problems_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good.yml"
    good.write_text("rules:\n  - alert: PageLoadSlow\n    threshold: 2.5\n")
    assert main(["rules", "check", "--rules", str(good)]) == 0
    assert "OK: 9 alerts" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - alert: PageLoadSlow\n    threshold: fast\n")
    assert main(["rules", "check", "--rules", str(bad)]) == 2
    assert f"{bad}:3:" in capsys.readouterr().err


def test_signals_catalogue_is_consistent() -> None:
    for signal in SIGNALS.values():
        if signal.source == "window":
            assert signal.family
            assert signal.additive or (signal.value is not None and signal.volume is not None)
        if signal.source == "pipeline":
            assert not signal.fixed
