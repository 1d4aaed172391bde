"""Every mistake a user makes ends as one line on stderr, exit 2, and no traceback.

The CLI runs in-process through `main(argv)` with a clean EXPMON_* environment (fast: one
import), and as a separate process where the process itself is the point (what a
terminal shows of a logging warning, the time to give up on a broker). No broker: the
mistakes are found before one is needed (an unreachable one is itself a mistake here).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from expmon.cli.main import main
from expmon.local.procs import free_port

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EXPMON_")}
    return subprocess.run(
        [sys.executable, "-m", "expmon.cli", *args],
        env={**clean, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EXPMON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`expmon ARGS` in-process, as a CompletedProcess (returncode, stdout, stderr)."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["expmon", *args], code, out, err)

    return run


Cli = Callable[..., subprocess.CompletedProcess[str]]


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    line = lines[0]
    assert line.startswith("expmon: error: "), line
    for text in expected:
        assert text in line, line
    return line


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port another process (this test) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def dead_bootstrap() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["worker", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
        ([], ["required: VERB"]),
        (["simulate", "--rate", "fast"], ["--rate", "'fast' is not a number"]),
        (["simulate", "--rate", "0"], ["--rate", "'0' must be above 0"]),
        (["demo", "--duration", "-5"], ["--duration", "'-5' must be above 0"]),
        (["worker", "--metrics-port", "70000"], ["--metrics-port", "not a port"]),
        (["topics", "delete"], ["invalid choice: 'delete'"]),
        (["--log-level", "LOUD", "rules", "check"], ["--log-level", "invalid choice"]),
    ],
)
def test_bad_flags(args: list[str], expected: list[str], cli: Cli) -> None:
    assert_one_line(cli(*args), *expected)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"EXPMON_ROLLING_VIEWS": "5x"}, ["EXPMON_ROLLING_VIEWS='5x'", "not a duration"]),
        ({"EXPMON_METRICS_PORT": "abc"}, ["EXPMON_METRICS_PORT='abc'", "integer"]),
        ({"EXPMON_ALERTMANAGER_URL": "notaurl"}, ["EXPMON_ALERTMANAGER_URL", "not a URL"]),
        (
            {"EXPMON_ALERTMANAGER_URL": "http://127.0.0.1:9093,ftp://x"},
            ["EXPMON_ALERTMANAGER_URL", "'ftp://x' is not a URL"],
        ),
        ({"EXPMON_ROLLING_VIEWS": "[5m"}, ["EXPMON_ROLLING_VIEWS", "not a JSON list"]),
        ({"EXPMON_LOG_LEVEL": "LOUD"}, ["EXPMON_LOG_LEVEL='LOUD'", "DEBUG, INFO"]),
    ],
)
def test_bad_env_values(env: dict[str, str], expected: list[str], cli: Cli) -> None:
    assert_one_line(cli("rules", "check", env=env), *expected)


@pytest.mark.parametrize("views", ["5m,15m,1h", '["5m", "15m", "1h"]', " 5m , 15m, 1h "])
def test_list_settings_take_commas_or_json(views: str, cli: Cli) -> None:
    result = cli("rules", "check", env={"EXPMON_ROLLING_VIEWS": views})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_unknown_env_variable_is_warned_about_with_the_closest_name() -> None:
    result = run_cli("rules", "check", env={"EXPMON_WINDOWS_SECONDS": "60"})
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert "EXPMON_WINDOWS_SECONDS" in line and "did you mean EXPMON_WINDOW_SECONDS?" in line


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("payment_outage@10s", "expected kind@start+duration"),
        ("payment_outage@10s+60s", "parameter 'provider' is required"),
        ("slow_pages@10s+60s:region=mars", "region='mars' is not one of"),
        ("meteor@10s+60s", "unknown incident kind 'meteor'"),
    ],
)
@pytest.mark.parametrize("verb", ["simulate", "demo"])
def test_bad_incident_spec(
    verb: str, spec: str, expected: str, dead_bootstrap: str, cli: Cli
) -> None:
    # found before any broker is looked for (the demo would start one)
    result = cli(verb, "--bootstrap", dead_bootstrap, "--incident", spec)
    assert_one_line(result, f"--incident {spec!r}", expected)


def test_metrics_port_in_use(listening_port: int, dead_bootstrap: str, cli: Cli) -> None:
    result = cli("worker", "--bootstrap", dead_bootstrap, "--metrics-port", str(listening_port))
    assert_one_line(result, f"127.0.0.1:{listening_port} is already in use", "--metrics-port")


def test_collect_port_in_use(listening_port: int, dead_bootstrap: str, cli: Cli) -> None:
    result = cli("collect", "--bootstrap", dead_bootstrap, "--port", str(listening_port))
    assert_one_line(result, f"127.0.0.1:{listening_port} is already in use", "--port")


def test_demo_metrics_port_in_use(listening_port: int, cli: Cli) -> None:
    result = cli("demo", "--metrics-port", str(listening_port))
    assert_one_line(result, f"127.0.0.1:{listening_port} is already in use")


def test_replay_metrics_port_in_use(listening_port: int, tmp_path: Path, cli: Cli) -> None:
    recording = tmp_path / "empty.ndjson"
    recording.write_text("")
    result = cli("replay", "--file", str(recording), "--metrics-port", str(listening_port))
    assert_one_line(result, f"127.0.0.1:{listening_port} is already in use")


@pytest.mark.parametrize(
    "args",
    [
        ["worker"],
        ["collect", "--port", "0"],
        ["topics", "check"],
        ["simulate", "--duration", "1"],
        ["record", "dump", "-o", "x.ndjson"],
        ["replay", "--no-progress"],
    ],
)
def test_broker_unreachable_is_one_line_within_seconds(
    args: list[str], dead_bootstrap: str, cli: Cli
) -> None:
    started = time.monotonic()
    result = cli(*args, "--bootstrap", dead_bootstrap)
    assert_one_line(result, f"cannot reach Kafka at {dead_bootstrap}", "Connection refused")
    assert time.monotonic() - started < 15


def test_log_level_from_the_environment() -> None:
    # WARNING from EXPMON_LOG_LEVEL: the unknown-variable warning shows, INFO lines do not
    quiet = run_cli("rules", "check", env={"EXPMON_LOG_LEVEL": "ERROR", "EXPMON_X": "1"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run_cli("rules", "check", env={"EXPMON_LOG_LEVEL": "warning", "EXPMON_X": "1"})
    assert "unknown environment variable EXPMON_X" in loud.stderr


def test_demo_with_an_unreachable_broker_is_one_line_and_leaves_no_folder(
    dead_bootstrap: str, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = cli("demo", "--bootstrap", dead_bootstrap, env={"TMPDIR": str(tmp_path)})
    assert_one_line(result, f"cannot reach Kafka at {dead_bootstrap}")
    assert list(tmp_path.iterdir()) == []


def test_broker_unreachable_as_a_process_is_one_line_within_seconds(dead_bootstrap: str) -> None:
    started = time.monotonic()
    result = run_cli("worker", "--bootstrap", dead_bootstrap)
    assert_one_line(result, f"cannot reach Kafka at {dead_bootstrap}", "Connection refused")
    assert time.monotonic() - started < 15


def test_global_flags_before_or_after_the_verb(dead_bootstrap: str, cli: Cli) -> None:
    before = cli("--bootstrap", dead_bootstrap, "topics", "check")
    after = cli("topics", "check", "--bootstrap", dead_bootstrap)
    assert_one_line(before, dead_bootstrap)
    assert before.stderr == after.stderr


def test_debug_adds_the_traceback_before_or_after_the_verb(dead_bootstrap: str, cli: Cli) -> None:
    for args in (["--debug", "topics", "check"], ["topics", "check", "--debug"]):
        result = cli(*args, "--bootstrap", dead_bootstrap)
        assert result.returncode == 2
        assert result.stderr.startswith("expmon: error: cannot reach Kafka")
        assert "Traceback" in result.stderr and "BrokerUnreachableError" in result.stderr
