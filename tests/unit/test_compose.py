"""docker-compose.yml is checked, not run (no Docker engine here): pins, settings, ports,
volumes, and the files it mounts, with the real promtool and amtool (Debian packages
prometheus and prometheus-alertmanager; a missing tool fails these tests, never skips)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from expmon.alerting.promrules import export
from expmon.alerting.rules import load_rules
from expmon.families.registry import SIGNALS
from expmon.local.procs import binary
from expmon.settings import Settings
from expmon.sim.incidents import parse_incidents

ROOT = Path(__file__).resolve().parents[2]
# services that run until stopped, each with a health check
LONG_RUNNING = {
    "kafka",
    "worker",
    "collector",
    "collector-lb",
    "prometheus",
    "alertmanager",
    "grafana",
}
EXPMON_SERVICES = {"topics", "worker", "collector", "simulator"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def services() -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"]
    return result


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def bind_mounts() -> dict[str, tuple[Path, str]]:
    """container path -> (host path in the repo, service) of every bind mount."""
    mounts = {}
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts[target] = (ROOT / source, name)
    return mounts


def mounted(container_path: str) -> Path:
    return bind_mounts()[container_path][0]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=False, capture_output=True, text=True, cwd=ROOT)


# ---------------------------------------------------------------- images


def test_every_image_is_pinned() -> None:
    for name, service in services().items():
        image = service.get("image", "")
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image!r}"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"


def test_the_monitor_image_is_built_here_at_the_project_version() -> None:
    version = pyproject()["project"]["version"]
    for name in EXPMON_SERVICES:
        service = services()[name]
        assert service["image"] == f"expmon:{version}", name
        assert service["build"] == ".", f"{name} must build, not pull, the local image"


def test_dockerfile_copies_every_package() -> None:
    """`pip install .` in the image needs every package pyproject.toml lists."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, flags=re.MULTILINE))
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*").split(".")[0] for p in include}
    assert packages <= copied, sorted(packages - copied)


# ---------------------------------------------------------------- settings and ports


def test_every_expmon_variable_is_a_setting() -> None:
    known = {f"EXPMON_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for service in services().values():
        env = service.get("environment") or {}
        for key, value in env.items():
            if key.startswith("EXPMON_"):
                seen.add(key)
                assert key in known, key
                # the value must also be valid for that setting
                Settings.from_env(**{key.removeprefix("EXPMON_").lower(): value})
    assert {"EXPMON_KAFKA_BOOTSTRAP", "EXPMON_ALERTMANAGER_URL", "EXPMON_METRICS_HOST"} <= seen


def test_every_interpolated_variable_is_in_env_example_with_the_same_default() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    example = env_example()
    found = re.findall(r"\$\{(\w+)(?::-([^}]*))?\}", text)
    assert found
    for name, default in found:
        assert name in example, f"${{{name}}} is not in .env.example"
        assert default == example[name], f"{name}: compose default {default!r} vs .env.example"


def test_published_ports_come_from_env_and_do_not_clash() -> None:
    host_ports = []
    for name, service in services().items():
        for port in service.get("ports", []):
            match = re.fullmatch(r"\$\{(\w+):-(\d+)\}:(\d+)", port)
            assert match, f"{name}: publish ports as ${{VAR:-default}}:port, got {port!r}"
            host_ports.append(int(env_example()[match[1]]))
    assert len(host_ports) == len(set(host_ports)) >= 4
    assert "ports" not in services()["worker"], "replicas cannot share a host port"
    assert "ports" not in services()["collector"], "replicas cannot share a host port"


def test_worker_metrics_port_is_what_prometheus_scrapes() -> None:
    worker = services()["worker"]
    port = int(worker["environment"]["EXPMON_METRICS_PORT"])
    assert str(port) in worker["expose"]
    config = yaml.safe_load(mounted("/etc/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "expmon"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == port
    (am,) = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert worker["environment"]["EXPMON_ALERTMANAGER_URL"] == "http://alertmanager:9093"


# ---------------------------------------------------------------- volumes and files


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for service in services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared


def test_every_mounted_host_file_exists() -> None:
    mounts = bind_mounts()
    assert len(mounts) >= 5
    for target, (host, service) in mounts.items():
        assert host.exists(), f"{service}: {host.relative_to(ROOT)} (-> {target}) is missing"


# ---------------------------------------------------------------- services


def test_workers_are_scaled_and_topics_come_first() -> None:
    worker = services()["worker"]
    assert worker["deploy"]["replicas"] == 2
    depends = worker["depends_on"]["topics"]
    assert depends["condition"] == "service_completed_successfully"
    partitions = int(compose()["x-expmon-env"]["EXPMON_TOPIC_PARTITIONS"])
    assert partitions >= worker["deploy"]["replicas"], "an extra worker would sit idle"
    assert services()["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_long_running_services_have_health_checks() -> None:
    for name in LONG_RUNNING:
        assert services()[name]["healthcheck"]["test"], name


def test_simulator_injects_incidents() -> None:
    command = services()["simulator"]["command"]
    assert command[0] == "simulate"
    specs = [command[i + 1] for i, arg in enumerate(command) if arg == "--incident"]
    kinds = {incident.kind for incident in parse_incidents(specs)}  # raises on a bad spec
    assert {"slow_pages", "payment_outage", "bad_records"} <= kinds


# ---------------------------------------------------------------- Prometheus, Alertmanager


def test_committed_rules_are_the_exported_rules() -> None:
    """deploy/prometheus/rules/expmon.rules.yml = `expmon rules export-prometheus`."""
    rules = mounted("/etc/prometheus/rules") / "expmon.rules.yml"
    assert rules.read_text() == export(load_rules(signals=SIGNALS)), (
        "stale: run `expmon rules export-prometheus -o deploy/prometheus/rules/expmon.rules.yml`"
    )


def test_promtool_accepts_the_config_and_its_rules() -> None:
    config = mounted("/etc/prometheus/prometheus.yml")
    check = run_tool(binary("promtool"), "check", "config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    # the config's rule_files glob (relative to it, as inside the container) found them
    assert "SUCCESS: 1 rule files found" in check.stdout, check.stdout
    rules = run_tool(
        binary("promtool"),
        "check",
        "rules",
        str(mounted("/etc/prometheus/rules") / "expmon.rules.yml"),
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 13 rules found" in rules.stdout


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check can fail: a scrape job without a name is refused."""
    broken = tmp_path / "prometheus.yml"
    broken.write_text("scrape_configs:\n  - static_configs: [{targets: ['x:1']}]\n")
    check = run_tool(binary("promtool"), "check", "config", str(broken))
    assert check.returncode != 0


def test_amtool_accepts_the_alertmanager_config() -> None:
    config = mounted("/etc/alertmanager/alertmanager.yml")
    check = run_tool(binary("amtool"), "check-config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    routes = yaml.safe_load(config.read_text())["route"]["routes"]
    assert any('severity="critical"' in r["matchers"] for r in routes)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ("severity=critical alertname=PaymentFailureRateHigh provider=adyen", "oncall-pager"),
        ("severity=warning alertname=PageLoadSlow page=/checkout", "team-chat"),
        ("severity=critical alertname=PageLoadSlow source=prometheus", "prometheus-twin"),
    ],
)
def test_sample_route(labels: str, receiver: str) -> None:
    config = mounted("/etc/alertmanager/alertmanager.yml")
    routed = run_tool(
        binary("amtool"), "config", "routes", "test", f"--config.file={config}", *labels.split()
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == [receiver]


def test_grafana_mounts_the_provisioning_and_dashboards() -> None:
    mounts = bind_mounts()
    assert mounts["/etc/grafana/provisioning"][0] == ROOT / "deploy" / "grafana" / "provisioning"
    provider = yaml.safe_load(
        (mounted("/etc/grafana/provisioning") / "dashboards" / "expmon.yml").read_text()
    )["providers"][0]
    dashboards_dir = mounted(provider["options"]["path"])
    assert sorted(dashboards_dir.glob("*.json")), "the provider's path holds no dashboards"
    source = yaml.safe_load(
        (mounted("/etc/grafana/provisioning") / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    scrape = yaml.safe_load(mounted("/etc/prometheus/prometheus.yml").read_text())["global"]
    assert source["jsonData"]["timeInterval"] == scrape["scrape_interval"]


# ---------------------------------------------------------------- collectors


def test_collectors_are_replicas_behind_the_load_balancer() -> None:
    collector = services()["collector"]
    assert collector["command"] == ["collect"] and collector["deploy"]["replicas"] >= 2
    env = collector["environment"]
    port = int(env["EXPMON_COLLECT_PORT"])
    assert str(port) in collector["expose"] and env["EXPMON_COLLECT_HOST"] == "0.0.0.0"
    assert collector["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    lb = services()["collector-lb"]
    assert lb["depends_on"]["collector"]["condition"] == "service_healthy"
    conf = mounted("/etc/nginx/conf.d/default.conf").read_text()
    assert re.search(rf"server collector:{port}\b", conf), "nginx must proxy to the replicas"
    # the header nginx sets is the one the collectors read the client from
    header = env["EXPMON_COLLECT_CLIENT_IP_HEADER"]
    assert f"proxy_set_header {header} $proxy_add_x_forwarded_for;" in conf
    listen = re.search(r"listen (\d+);", conf)
    assert listen is not None and lb["ports"] == [f"${{COLLECTOR_PORT:-{port}}}:{listen[1]}"]
    body = re.search(r"client_max_body_size (\d+)m;", conf)
    assert body is not None and int(body[1]) * 1_000_000 >= Settings().collect_max_body_bytes


def test_prometheus_scrapes_every_collector() -> None:
    config = yaml.safe_load(mounted("/etc/prometheus/prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "expmon-collector"]
    sd = job["dns_sd_configs"][0]
    port = services()["collector"]["environment"]["EXPMON_COLLECT_PORT"]
    assert sd["names"] == ["collector"] and sd["port"] == int(port)
