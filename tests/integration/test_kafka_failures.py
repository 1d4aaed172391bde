"""Fast, true failures for every Kafka verb: a wrong SASL password, a broker that is not
there, an output topic that does not exist. One line naming the cause, exit 2, within
10 s, and the password in no output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from expmon.local.kafka.broker import ScramUser
from expmon.local.procs import free_port
from tests.integration.conftest import SECURE_USER, SecureSettingsFactory, SettingsFactory
from tests.integration.worker_process import expmon_cli

WRONG_PASSWORD = "not-the-password-7f3a9c"


def kafka_verbs(bootstrap: str, tmp_path: Path) -> list[list[str]]:
    recording = tmp_path / "rec.ndjson"
    recording.write_text("")
    return [
        ["worker"],
        ["topics", "create"],
        ["topics", "check"],
        ["simulate", "--fast", "--duration", "5"],
        ["replay", "--from", "-1h"],
        ["record", "dump", "-o", str(tmp_path / "out.ndjson")],
        ["record", "load", "-i", str(recording)],
        ["collect", "--port", str(free_port())],
        ["bench", "--bootstrap", bootstrap, "--only-alert-latency"],
    ]


def one_line_failure(args: list[str], proc_out: str, proc_err: str, elapsed: float) -> str:
    lines = [line for line in (proc_out + proc_err).splitlines() if line.strip()]
    assert elapsed < 10, f"{args}: {elapsed:.1f} s\n{proc_err[-2000:]}"
    assert len(lines) == 1, f"{args}: {len(lines)} lines\n" + "\n".join(lines[-20:])
    return lines[0]


def test_a_wrong_password_fails_every_kafka_verb_at_once(
    secure_settings_factory: SecureSettingsFactory, tmp_path: Path
) -> None:
    settings = secure_settings_factory("SASL_SSL", user=ScramUser(SECURE_USER.name, WRONG_PASSWORD))
    for args in kafka_verbs(settings.kafka_bootstrap, tmp_path):
        started = time.monotonic()
        proc = expmon_cli(settings, *args, timeout=60)
        elapsed = time.monotonic() - started
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr[-2000:])
        line = one_line_failure(args, proc.stdout, proc.stderr, elapsed)
        assert "authentication" in line.lower(), (args, line)
        assert WRONG_PASSWORD not in proc.stdout + proc.stderr


def test_a_broker_that_is_not_there_fails_every_kafka_verb_at_once(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    for args in kafka_verbs(settings.kafka_bootstrap, tmp_path):
        started = time.monotonic()
        proc = expmon_cli(settings, *args, timeout=60)
        elapsed = time.monotonic() - started
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr[-2000:])
        line = one_line_failure(args, proc.stdout, proc.stderr, elapsed)
        assert "cannot reach Kafka" in line, (args, line)


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--from", "-1h", "--into", "no-such-windows"],
        ["replay", "--from", "-1h", "--alerts-into", "no-such-alerts"],
        ["simulate", "--fast", "--duration", "5"],
    ],
)
def test_an_unknown_topic_fails_before_any_work(
    args: list[str], settings_factory: SettingsFactory
) -> None:
    settings = settings_factory()  # its unique input topics do not exist yet
    started = time.monotonic()
    proc = expmon_cli(settings, *args, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    line = one_line_failure(args, proc.stdout, proc.stderr, elapsed)
    assert "do not exist" in line, line
