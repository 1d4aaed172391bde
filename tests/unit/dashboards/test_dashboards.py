"""The Grafana dashboards: committed JSON is the generator's output, and every query reads
metrics expmon exports through variables the dashboard defines.

Whether each query returns data is tests/integration/test_dashboards.py's job (a real
Prometheus scraping a real worker); here are the checks that need neither.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from expmon.alerting.rules import DEFAULT_RUNBOOK_BASE_URL, load_rules
from expmon.dashboards import generate as dashboards
from expmon.dashboards.generate import DASHBOARDS, dashboard_json, main, outputs
from expmon.exposition.metrics import Metrics, new_registry
from expmon.families.registry import SIGNALS

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_OWN = {"up", "ALERTS"}
GRAFANA_MACROS = {"__rate_interval", "__range"}
BOARDS = [dashboard_json(d) for d in DASHBOARDS]


def exported_series() -> set[str]:
    """Every series name the worker can expose, suffixes included."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names = set()
    for family in new_registry_with_metrics().collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def new_registry_with_metrics() -> Any:
    registry = new_registry()
    Metrics(registry)
    return registry


def targets(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target and annotation."""
    out = [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    out += [(a["name"], a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
    return out


def variable_queries(board: dict[str, Any]) -> list[str]:
    return [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]


def test_committed_files_are_the_generator_output() -> None:
    for path, text in outputs(ROOT).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run `python -m expmon.dashboards`"
        )
    committed = {p.name for p in (ROOT / dashboards.OUT_DIR).glob("*.json")}
    assert committed == {d.filename for d in DASHBOARDS}, "a dashboard file nobody generates"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path)]) == 0  # writes everything
    assert main(["--root", str(tmp_path), "--check"]) == 0
    first = tmp_path / dashboards.OUT_DIR / DASHBOARDS[0].filename
    first.write_text(first.read_text() + " ")
    assert main(["--root", str(tmp_path), "--check"]) == 1


def test_five_dashboards_with_unique_uids_and_titles() -> None:
    assert len({b["uid"] for b in BOARDS}) == len({b["title"] for b in BOARDS}) == 6
    assert {b["uid"] for b in BOARDS} == {
        "expmon-overview",
        "expmon-pages",
        "expmon-checkout",
        "expmon-logistics",
        "expmon-pipeline",
        "expmon-web-vitals",
    }


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b["uid"])
def test_queries_read_only_exported_metrics(board: dict[str, Any]) -> None:
    known = exported_series() | PROMETHEUS_OWN
    exprs = targets(board) + [("variable", q) for q in variable_queries(board)]
    for title, expr in exprs:
        used = set(re.findall(r"\bexpmon_\w+", expr)) | set(re.findall(r"(\w+)\{", expr))
        assert used, (title, expr)
        assert used <= known, (title, sorted(used - known))


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b["uid"])
def test_every_variable_used_is_defined(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]} | GRAFANA_MACROS
    used: set[str] = set()
    for title, expr in targets(board):
        names = set(re.findall(r"\$(\w+)", expr))
        assert names <= defined, (title, sorted(names - defined))
        used |= names
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    # every filter offered is applied somewhere (the datasource variable by every panel)
    assert {v["name"] for v in board["templating"]["list"]} - {"datasource"} <= used


def test_label_variables_are_label_values_of_exported_metrics() -> None:
    known = exported_series()
    for board in BOARDS:
        for query in variable_queries(board):
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
            assert match and match[1] in known, query


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b["uid"])
def test_layout_units_and_descriptions(board: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_every_dashboard_has_alert_annotations() -> None:
    for board in BOARDS:
        exprs = [a.get("expr", "") for a in board["annotations"]["list"]]
        assert any("expmon_alerts_firing" in e for e in exprs), board["uid"]
        assert any(e.startswith("ALERTS{") for e in exprs), board["uid"]


def test_threshold_lines_are_the_default_alert_thresholds() -> None:
    """A panel's line must move when alerts/defaults.yml moves."""
    rules = {(r.alert, r.severity): r.threshold for r in load_rules(signals=SIGNALS)}
    assert (
        (rules[("PageLoadSlow", "warning")], dashboards.ORANGE),
        (rules[("PageLoadSlow", "critical")], dashboards.RED),
    ) == dashboards.SLOW_ALERT
    pairs = [
        (dashboards.PAYMENT_ALERT, "PaymentFailureRateHigh"),
        (dashboards.DELIVERY_ALERT, "DeliveryExceptionRateHigh"),
        (dashboards.STALE_ALERT, "TrackingStale"),
        (dashboards.INVALID_ALERT, "InvalidEventRateHigh"),
        (dashboards.BOUNCE_ALERT, "BounceRateHigh"),
    ]
    for steps, alert in pairs:
        severity = next(sev for name, sev in rules if name == alert)
        assert steps[0][0] == rules[(alert, severity)], alert
    # the SLA panel shows shipped-in-time, the alert counts the rest
    assert dashboards.SLA_OK[0][0] == pytest.approx(1 - rules[("ShippingSLABreach", "warning")])


def test_timeseries_with_thresholds_draw_them() -> None:
    drawn = 0
    for board in BOARDS:
        for panel in board["panels"]:
            if panel["type"] != "timeseries":
                continue
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            style = panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"]
            assert style == ("line" if len(steps) > 1 else "off"), panel["title"]
            drawn += len(steps) > 1
    assert drawn >= 10


def test_docs_describe_every_panel() -> None:
    docs = (ROOT / "docs" / "dashboards.md").read_text()
    for board in BOARDS:
        assert board["uid"] in docs
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert f"*{panel['title']}*" in docs, panel["title"]


def test_grafana_provisioning_points_at_the_generated_files() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["uid"] == dashboards.DATASOURCE_UID
    assert source["type"] == "prometheus"
    for board in BOARDS:
        (ds_var,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        assert ds_var["current"]["value"] == dashboards.DATASOURCE_UID
    providers = yaml.safe_load((provisioning / "dashboards" / "expmon.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/etc/grafana/dashboards")


# ---------------------------------------------------------------- operations docs


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_section_its_url_points_at() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^## (.+)$", runbooks, re.MULTILINE)}
    alerts = {rule.alert: rule.runbook_url for rule in load_rules(signals=SIGNALS)}
    assert len(alerts) == 11
    for alert, url in alerts.items():
        path, _, anchor = url.partition("#")
        assert path == DEFAULT_RUNBOOK_BASE_URL + "docs/runbooks.md", alert
        assert anchor == github_anchor(alert) and anchor in anchors, alert
    assert len(anchors) == len(alerts), "one section per alert"


def test_operations_doc_references_every_metric_and_alert() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    metrics = {n.removesuffix("_bucket") for n in exported_series() if n.startswith("expmon_")}
    metrics -= {n for n in metrics if n.endswith(("_count", "_sum"))}
    missing = sorted(m for m in metrics if f"`{m}`" not in docs)
    assert not missing, f"not in docs/operations.md: {missing}"
    for rule in load_rules(signals=SIGNALS):
        assert f"| {rule.alert} |" in docs, rule.alert
