"""Integration fixtures: one real Kafka broker for the whole session, unique names per test.

Set EXPMON_KAFKA_BOOTSTRAP to run against an existing broker instead of the local one.
These tests never skip: if the broker cannot start, the fixture errors with its reason.

`secure_kafka` is a second local broker, started on first use, with an SSL and a
SASL_SSL (SCRAM-SHA-512) listener and a throw-away CA; `secure_settings_factory` gives
settings for either listener (any user name and password, to try wrong ones). It is
always local, whatever EXPMON_KAFKA_BOOTSTRAP says: the test must own the CA and users.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from expmon.local.kafka.broker import LocalKafka, ScramUser, SecureProtocol
from expmon.local.procs import LocalAlertmanager
from expmon.settings import Settings, default_cache_dir
from tests.integration.alertmanager import WebhookReceiver
from tests.integration.sim_outage import SimOutage

logger = logging.getLogger(__name__)

SettingsFactory = Callable[..., Settings]
SecureSettingsFactory = Callable[..., Settings]

# the user the secure broker knows (created when its storage is formatted)
SECURE_USER = ScramUser("expmon-test", "expmon-test-secret")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("EXPMON_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    # Startup errors (no java, no mvn, port clash, broker crash) propagate as LocalKafkaError
    # with the broker log tail, which pytest shows as the fixture error.
    kafka = LocalKafka(default_cache_dir())
    kafka.start(timeout=120)  # generous: CI machines have 2 cores shared with the tests
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """`<test name>-<8 hex>`: safe in topic names and consumer group ids."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-").lower()
    # Kafka topic names max out at 249 chars; keep ours short and readable in logs.
    return f"{name[:40].rstrip('-')}-{uuid.uuid4().hex[:8]}"


def _unique_values(unique: str, tmp_path: Path) -> dict[str, Any]:
    """Topics, consumer group and state of one test: nothing shared with another test."""
    return {
        "app_id": f"expmon-{unique}",
        "topic_page_loads": f"page-loads-{unique}",
        "topic_checkout": f"checkout-events-{unique}",
        "topic_logistics": f"logistics-events-{unique}",
        "topic_alerts": f"experience-alerts-{unique}",
        "topic_dlq": f"experience-dlq-{unique}",
        "topic_window_partials": f"expmon-window-partials-{unique}",
        "topic_windows": f"expmon-windows-{unique}",
        "metrics_port": 0,
        "state_dir": tmp_path / "state",
    }


@pytest.fixture
def settings_factory(kafka_bootstrap: str, unique: str, tmp_path: Path) -> SettingsFactory:
    """Returns `(**overrides) -> Settings` on the test broker with unique topics and group."""

    def make(**overrides: Any) -> Settings:
        values = {"kafka_bootstrap": kafka_bootstrap, **_unique_values(unique, tmp_path)}
        values.update(overrides)
        return Settings.from_env(**values)

    return make


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[LocalKafka]:
    """A local broker with SSL and SASL_SSL listeners (and PLAINTEXT), for the session."""
    kafka = LocalKafka(default_cache_dir(), secure=True, scram_users=[SECURE_USER])
    kafka.start(timeout=120)
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture
def secure_settings_factory(
    secure_kafka: LocalKafka, unique: str, tmp_path: Path
) -> SecureSettingsFactory:
    """Returns `(protocol, user=SECURE_USER, **overrides) -> Settings` on the SSL or
    SASL_SSL listener of `secure_kafka`, with unique topics and group.

    `user` matters for SASL_SSL only: pass `ScramUser(name, "wrong")` for a bad password.
    """

    def make(protocol: SecureProtocol, user: ScramUser = SECURE_USER, **overrides: Any) -> Settings:
        env = secure_kafka.client_env(protocol, user)
        values = {k.removeprefix("EXPMON_").lower(): v for k, v in env.items()}
        values.update(_unique_values(unique, tmp_path))
        values.update(overrides)
        return Settings.from_env(**values)

    return make


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook that records every notification Alertmanager sends."""
    hook = WebhookReceiver()
    yield hook
    hook.close()


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: WebhookReceiver) -> Iterator[LocalAlertmanager]:
    """A real Alertmanager (Debian package) routing to `receiver`; tests call start()."""
    am = LocalAlertmanager(tmp_path / "alertmanager", receiver.url)
    yield am
    am.stop()


@pytest.fixture(scope="session")
def simulate_outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimOutage]:
    """`expmon simulate` through a broker outage of its own, run in the background from
    the first test that asks: the two-minute outage test does, so that the two outages
    overlap; test_simulate_outage asserts on its result."""
    run = SimOutage(tmp_path_factory.mktemp("simulate-outage")).start()
    yield run
    run.thread.join(300)  # it stops its broker itself, whichever way it ends
