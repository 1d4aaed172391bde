"""Rule files: defaults load, overrides merge, and every problem names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from expmon.alerting.rules import (
    DEFAULT_RUNBOOK_BASE_URL,
    RulesError,
    absolute_url,
    load_rules,
    parse_rules,
)
from expmon.cli import main
from expmon.families.registry import SIGNALS
from expmon.settings import Settings

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
    "CoreWebVitalsPoor",
}


def test_defaults_hold_every_contract_alert_with_runbook() -> None:
    rules = load_rules(signals=SIGNALS)
    # the contract's alerts, plus KafkaUnreachable (pipeline health while the broker is away)
    assert {r.alert for r in rules} == CONTRACT_ALERTS | {"KafkaUnreachable"}
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
            "unknown key 'colour'",
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
        "  - alert: B\n    signal: bounce_ratio\n    window: 7m\n    threshold: 0.5\n"
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
    assert "OK: 11 alerts" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - alert: PageLoadSlow\n    threshold: fast\n")
    assert main(["rules", "check", "--rules", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err
    assert "Traceback" not in err and "Traceback" not in caplog.text


_RULE = "  - alert: {name}\n    signal: {signal}\n    window: {window}\n"


@pytest.mark.parametrize(
    ("signal", "window", "keys", "line", "fragment"),
    [
        ("bounce_ratio", "15m", "    threshold: 1.5\n", 5, "outside a ratio's range [0, 1]"),
        ("bounce_ratio", "15m", "    threshold: -0.1\n", 5, "outside a ratio's range"),
        ("bounce_ratio", "15m", "    threshold: 1\n", 5, "can never fire"),
        ("bounce_ratio", "15m", "    op: '<'\n    threshold: 0\n", 6, "can never fire"),
        ("page_load_p95_seconds", "5m", "    threshold: -1\n    by: [page, device]\n", 5,
         "negative"),
        ("page_load_p95_seconds", "5m",
         "    threshold: 3\n    critical_threshold: 2\n    by: [page, device]\n", 6,
         "critical_threshold 2 must be above the warning threshold 3"),
        ("checkout_conversion_ratio", "15m",
         "    op: '<'\n    threshold: 0.2\n    critical_threshold: 0.3\n", 7,
         "must be below"),
        ("bounce_ratio", "15m", "    threshold: 0.4\n    critical_threshold: 1.2\n", 6,
         "outside a ratio's range"),
        ("bounce_ratio", "15m", "    threshold: 0.4\n    min_volum: 10\n", 6,
         "unknown key 'min_volum'; did you mean 'min_volume'?"),
        ("bounce_ratio", "15m", "    threshold: 0.4\n    severty: critical\n", 6,
         "did you mean 'severity'?"),
        ("bounce_rate", "15m", "    threshold: 0.4\n", 3, "did you mean 'bounce_ratio'?"),
    ],
)  # fmt: skip
def test_meaning_is_checked(signal: str, window: str, keys: str, line: int, fragment: str) -> None:
    text = "rules:\n" + _RULE.format(name="X", signal=signal, window=window) + keys
    with pytest.raises(RulesError) as info:
        parse_rules([("ops.yml", text)], signals=SIGNALS)
    assert any(p.line == line and fragment in p.message for p in info.value.problems), [
        str(p) for p in info.value.problems
    ]


def test_sound_rules_pass_the_meaning_checks() -> None:
    text = (
        "rules:\n"
        + _RULE.format(name="A", signal="page_load_p95_seconds", window="5m")
        + "    threshold: 3\n    critical_threshold: 5\n    by: [page, device]\n"
        + _RULE.format(name="B", signal="checkout_conversion_ratio", window="15m")
        + "    op: '<'\n    threshold: 0.3\n    critical_threshold: 0.2\n"
        + _RULE.format(name="C", signal="bounce_ratio", window="15m")
        + "    threshold: 0\n"
    )
    assert len(parse_rules([("ops.yml", text)], signals=SIGNALS)) == 5


def test_one_bad_key_hides_no_other_problem_of_the_file() -> None:
    text = (
        "rules:\n"
        "  - alert: A\n    signal: bounce_ratio\n    window: 15m\n"
        "    threshold: 1.5\n    colour: red\n    for: soon\n"
        "  - alert: top_level_typo\n    signal: bounce_ratio\n    window: 9m\n    threshold: 0.5\n"
        "rule: []\n"
    )
    with pytest.raises(RulesError) as info:
        parse_rules([("f.yml", text)], signals=SIGNALS)
    got = [(p.line, p.message) for p in info.value.problems]
    assert [line for line, _ in got] == [5, 6, 7, 10, 12], got  # in file order
    assert "did you mean 'rules'" in got[-1][1]


def test_yaml_error_names_file_line_and_column_with_a_caret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text("rules:\n  - alert: X\n    signal: 'bounce_ratio\n    window: 5m\n")
    assert main(["rules", "check", "--rules", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{bad}:")
    assert "not valid YAML" in lines[0] and "unicode string" not in "\n".join(lines)
    assert "Traceback" not in "\n".join(lines)
    # the excerpt and a caret exactly under the column named in the first line
    column = int(lines[0].split(":")[2])
    source, caret = lines[1], lines[2]
    assert caret.strip() == "^"
    assert caret.index("^") - 4 == column - 1
    assert source.startswith("    ")
    assert lines[-1] == "1 problem(s) in alert rules"


def test_cli_reports_every_problem_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "rules:\n  - alert: PageLoadSlow\n    threshold: -1\n    critical_threshold: -2\n"
        "  - alert: BounceRateHigh\n    treshold: 0.5\n"
    )
    assert main(["rules", "check", "--rules", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"{len(lines) - 1} problem(s) in alert rules"
    assert all(line.startswith(f"{bad}:") for line in lines[:-1]), lines
    assert any(":3:" in x and "negative" in x for x in lines)
    assert any(":4:" in x and "must be above" in x for x in lines)
    assert any(":6:" in x and "did you mean 'threshold'" in x for x in lines)


def test_signals_catalogue_is_consistent() -> None:
    for signal in SIGNALS.values():
        if signal.source == "window":
            assert signal.family
            assert signal.additive or (signal.value is not None and signal.volume is not None)
        if signal.source == "pipeline":
            assert not signal.fixed


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("docs/runbooks.md#pageloadslow", "https://git.example.test/shop/expmon/-/blob/main/",
         "https://git.example.test/shop/expmon/-/blob/main/docs/runbooks.md#pageloadslow"),
        # a base without its trailing slash is still a folder
        ("docs/runbooks.md#x", "https://wiki.example.test/ops", "https://wiki.example.test/ops/docs/runbooks.md#x"),
        # absolute URLs in a rule stay as written
        ("https://pager.example.test/r/1", "https://other.example.test/", "https://pager.example.test/r/1"),
        ("", "https://other.example.test/", ""),
    ],
)  # fmt: skip
def test_runbook_urls_become_absolute(url: str, base: str, expected: str) -> None:
    assert absolute_url(url, base) == expected


def test_runbook_base_url_setting_reaches_rules_and_the_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = "https://git.example.test/shop/expmon/-/blob/main/"
    monkeypatch.setenv("EXPMON_RUNBOOK_BASE_URL", base)
    settings = Settings.from_env()
    assert settings.runbook_base_url == base
    rules = load_rules(signals=SIGNALS, runbook_base_url=settings.runbook_base_url)
    assert {r.runbook_url for r in rules} == {
        f"{base}docs/runbooks.md#{r.alert.lower()}" for r in rules
    }
    # the Prometheus twin (export-prometheus reads the same setting)
    out = tmp_path / "twin.yml"
    assert main(["rules", "export-prometheus", "-o", str(out)]) == 0
    twin = yaml.safe_load(out.read_text())["groups"][0]["rules"]
    assert {r["annotations"]["runbook_url"] for r in twin} == {r.runbook_url for r in rules}
    # default: the project's repository
    monkeypatch.delenv("EXPMON_RUNBOOK_BASE_URL")
    assert Settings.from_env().runbook_base_url == DEFAULT_RUNBOOK_BASE_URL
    assert all(
        r.runbook_url.startswith(DEFAULT_RUNBOOK_BASE_URL + "docs/runbooks.md#")
        for r in load_rules(signals=SIGNALS)
    )
