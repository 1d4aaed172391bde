"""Settings -> client arguments for kafka-python, aiokafka and faust, per security protocol."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer

from expmon.errors import ConfigError
from expmon.kafka import connection
from expmon.local.kafka.tls import make_tls_material
from expmon.settings import Settings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls_material(tmp_path_factory.mktemp("tls")).ca_file


def settings(**values: Any) -> Settings:
    return Settings.from_env(kafka_bootstrap="b1:9093,b2:9093", **values)


def sasl(protocol: str = "SASL_SSL", **values: Any) -> Settings:
    return settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cret",
        **values,
    )


def test_plaintext_is_bare_bootstrap_for_every_client() -> None:
    s = settings()
    expected = {"bootstrap_servers": "b1:9093,b2:9093", "security_protocol": "PLAINTEXT"}
    assert connection.kafka_python_kwargs(s) == expected
    assert connection.aiokafka_kwargs(s) == expected
    assert connection.faust_credentials(s) is None
    assert connection.faust_brokers(s) == ["kafka://b1:9093", "kafka://b2:9093"]
    assert connection.librdkafka_config(s) == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "PLAINTEXT",
    }


def test_ssl_gives_kafka_python_a_ca_file_and_aiokafka_a_context(ca_file: Path) -> None:
    s = settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca_file)
    assert connection.kafka_python_kwargs(s)["ssl_cafile"] == str(ca_file)
    aio = connection.aiokafka_kwargs(s)
    assert "ssl_cafile" not in aio
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    assert aio["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert aio["ssl_context"].get_ca_certs()  # the given CA, loaded
    credentials = connection.faust_credentials(s)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"


def test_ssl_without_a_ca_file_trusts_the_system_store() -> None:
    s = settings(kafka_security_protocol="SSL")
    assert "ssl_cafile" not in connection.kafka_python_kwargs(s)
    assert isinstance(connection.aiokafka_kwargs(s)["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_credentials_for_every_client(protocol: str, ca_file: Path) -> None:
    extra = {"kafka_ssl_cafile": ca_file} if protocol == "SASL_SSL" else {}
    s = sasl(protocol, **extra)
    want = {
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
        "security_protocol": protocol,
    }
    assert want.items() <= connection.kafka_python_kwargs(s).items()
    aio = connection.aiokafka_kwargs(s)
    assert want.items() <= aio.items()
    assert ("ssl_context" in aio) is (protocol == "SASL_SSL")
    credentials = connection.faust_credentials(s)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == protocol
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("svc", "s3cret")
    rdkafka = connection.librdkafka_config(s)
    assert {
        "security.protocol": protocol,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret",
    }.items() <= rdkafka.items()
    assert rdkafka.get("ssl.ca.location") == (str(ca_file) if protocol == "SASL_SSL" else None)


def test_aiokafka_accepts_what_it_is_given(ca_file: Path) -> None:
    """The simulator's producer once got kafka-python's `ssl_cafile` and died on TLS."""

    async def construct(s: Settings) -> None:
        AIOKafkaProducer(**connection.aiokafka_kwargs(s))  # no TypeError, nothing sent

    for s in (settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca_file), sasl()):
        asyncio.run(construct(s))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs EXPMON_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN",
             "kafka_sasl_username": "u"},
            "needs EXPMON_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_sasl_mechanism": "PLAIN"}, "security protocol is PLAINTEXT"),
        ({"kafka_ssl_cafile": Path("/etc/hostname")}, "security protocol is PLAINTEXT"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": Path("/nonexistent/ca.pem")},
            "no such file",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": Path("/etc/hostname")},
            "not a CA bundle",
        ),
    ],
)  # fmt: skip
def test_unusable_connection_settings_are_one_clear_error(
    values: dict[str, Any], message: str
) -> None:
    s = settings(**values)
    with pytest.raises(ConfigError, match=message):
        connection.aiokafka_kwargs(s)
        connection.kafka_python_kwargs(s)


def test_the_password_never_shows_in_settings_repr() -> None:
    assert "s3cret" not in repr(sasl())


@pytest.mark.parametrize("max_poll_records", [1, 500, 30_000])
def test_the_worker_app_fetches_as_the_settings_say(tmp_path: Path, max_poll_records: int) -> None:
    from streams.app import new_faust_app

    s = settings(state_dir=tmp_path, kafka_max_poll_records=max_poll_records)
    tuning = connection.faust_consumer_tuning(s)
    assert tuning["broker_max_poll_records"] == max_poll_records
    conf = new_faust_app(s).conf
    assert conf.broker_max_poll_records == max_poll_records
    assert conf.consumer_max_fetch_size == tuning["consumer_max_fetch_size"]
