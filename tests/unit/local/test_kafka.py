"""Local broker helpers that need no broker: config rendering, cluster ids, tool lookup."""

from __future__ import annotations

import base64
import re
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from expmon.errors import LocalKafkaError
from expmon.local.kafka import broker
from expmon.local.kafka.broker import (
    LocalKafka,
    ensure_jars,
    new_cluster_id,
    port_in_use,
    render_server_properties,
)


def _parse(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    props = _parse(
        render_server_properties(port=19092, controller_port=19093, log_dir=tmp_path / "logs")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "logs")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "1"


def test_cluster_id_is_22_char_base64url_of_16_bytes() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid), cid
        raw = base64.urlsafe_b64decode(cid + "==")
        assert len(raw) == 16
        assert uuid.UUID(bytes=raw).version == 4


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda name, *a, **k: None if name == "java" else real_which(name, *a, **k),
    )
    kafka = LocalKafka(tmp_path / "cache")
    with pytest.raises(LocalKafkaError, match="openjdk-17-jre-headless"):
        kafka.start(timeout=1)
    # Failing on java must come before any fetch attempt or process start.
    assert not (tmp_path / "cache").exists()
    assert not kafka.running
    kafka.stop()  # idempotent even though it never started


def test_missing_mvn_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(LocalKafkaError, match=r"apt-get install maven"):
        ensure_jars(tmp_path / "cache")


def test_port_in_use_detects_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use(port)


def test_requested_busy_port_fails_before_starting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Pretend the jars and java are there: the port check must reject before any launch.
    monkeypatch.setattr(broker, "find_java", lambda: "/usr/bin/java")
    monkeypatch.setattr(broker, "ensure_jars", lambda cache_dir: tmp_path / "libs")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        kafka = LocalKafka(tmp_path / "cache", port=port)
        with pytest.raises(LocalKafkaError, match=rf"port {port} .*already in use"):
            kafka.start(timeout=1)
    assert not kafka.running
