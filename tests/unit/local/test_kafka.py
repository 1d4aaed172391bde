"""Local broker helpers that need no broker: config rendering, cluster ids, tool lookup."""

from __future__ import annotations

import base64
import re
import shutil
import socket
import ssl
import threading
import uuid
from pathlib import Path

import pytest

from expmon.errors import LocalKafkaError
from expmon.local.kafka import broker
from expmon.local.kafka.broker import (
    LocalKafka,
    ScramUser,
    SecureListeners,
    ensure_jars,
    new_cluster_id,
    port_in_use,
    render_server_properties,
)
from expmon.local.kafka.tls import TlsMaterial, make_tls_material


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


def test_server_properties_with_kafkas_initial_rebalance_delay(tmp_path: Path) -> None:
    props = _parse(
        render_server_properties(
            port=19092,
            controller_port=19093,
            log_dir=tmp_path / "logs",
            group_initial_rebalance_delay_ms=3000,
        )
    )
    assert props["group.initial.rebalance.delay.ms"] == "3000"


def test_server_properties_with_tls_listeners(tmp_path: Path) -> None:
    tls = TlsMaterial(tmp_path / "ca.pem", tmp_path / "broker.p12", "pw")
    secure = SecureListeners(ssl_port=19094, sasl_ssl_port=19095, tls=tls)
    props = _parse(
        render_server_properties(
            port=19092, controller_port=19093, log_dir=tmp_path / "logs", secure=secure
        )
    )
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19094,SASL_SSL://127.0.0.1:19095,"
        "CONTROLLER://127.0.0.1:19093"
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19094,SASL_SSL://127.0.0.1:19095"
    )
    assert props["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["ssl.keystore.location"] == str(tmp_path / "broker.p12")
    assert props["ssl.keystore.password"] == props["ssl.key.password"] == "pw"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert (
        "ScramLoginModule required"
        in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )


def test_tls_material_is_a_ca_and_a_broker_certificate_it_signed(tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "tls")
    assert tls.keystore.stat().st_size > 0 and len(tls.password) >= 16
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    (ca,) = context.get_ca_certs()
    assert dict(x[0] for x in ca["subject"])["commonName"] == "expmon local Kafka CA"
    broker_pem = (tmp_path / "tls" / "broker.pem").read_text()
    # the broker certificate verifies against the CA for 127.0.0.1 (what clients check)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls" / "broker.pem", tmp_path / "tls" / "broker.key")
    client_sock, server_sock = socket.socketpair()
    with client_sock, server_sock:
        accept = threading.Thread(
            target=lambda: server.wrap_socket(server_sock, server_side=True), daemon=True
        )
        accept.start()
        with context.wrap_socket(client_sock, server_hostname="127.0.0.1") as tls_client:
            alt_names = tls_client.getpeercert()["subjectAltName"]
        accept.join(10)
    assert ("IP Address", "127.0.0.1") in alt_names
    assert "BEGIN CERTIFICATE" in broker_pem


def test_scram_users_need_the_secure_listeners(tmp_path: Path) -> None:
    with pytest.raises(LocalKafkaError, match="secure=True"):
        LocalKafka(tmp_path, scram_users=[ScramUser("u", "p")])
    with pytest.raises(LocalKafkaError, match="no TLS listeners"):
        _ = LocalKafka(tmp_path).ssl_bootstrap


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
