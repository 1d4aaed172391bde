"""Settings -> Kafka client arguments, for every client the project uses: the only place.

Three client libraries talk to Kafka and each wants the same connection in its own shape:
- kafka-python (admin, offsets, replay/record tools): a CA file path (`ssl_cafile`);
- aiokafka (the simulator, the bench, replay's reader): an `ssl.SSLContext`, and no
  `ssl_cafile` keyword at all;
- faust (the worker): broker URLs and a credentials object;
- librdkafka (confluent-kafka, in the bench's ceiling and peers): dotted config names.

The returned mappings hold the SASL password: pass them to a client, never log them.
"""

from __future__ import annotations

import ssl
from typing import Any

from expmon.errors import ConfigError
from expmon.settings import Settings

SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


def check(settings: Settings) -> None:
    """A clear ConfigError for a connection no client could use."""
    protocol = settings.kafka_security_protocol
    if protocol in SASL_PROTOCOLS:
        missing = [
            f"EXPMON_KAFKA_{name.upper()}"
            for name, value in (
                ("sasl_mechanism", settings.kafka_sasl_mechanism),
                ("sasl_username", settings.kafka_sasl_username),
                ("sasl_password", settings.kafka_sasl_password),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"security protocol {protocol} needs {', '.join(missing)}")
    elif settings.kafka_sasl_mechanism:
        raise ConfigError(
            f"EXPMON_KAFKA_SASL_MECHANISM is set but the security protocol is {protocol}: "
            "use SASL_PLAINTEXT or SASL_SSL"
        )
    cafile = settings.kafka_ssl_cafile
    if cafile is not None:
        if protocol not in SSL_PROTOCOLS:
            raise ConfigError(
                f"EXPMON_KAFKA_SSL_CAFILE is set but the security protocol is {protocol}: "
                "use SSL or SASL_SSL"
            )
        if not cafile.is_file():
            raise ConfigError(f"EXPMON_KAFKA_SSL_CAFILE {cafile}: no such file")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (system CAs unless a CA file is given)."""
    if settings.kafka_security_protocol not in SSL_PROTOCOLS:
        return None
    cafile = settings.kafka_ssl_cafile
    try:
        return ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"EXPMON_KAFKA_SSL_CAFILE {cafile}: not a CA bundle ({exc})") from exc


def _sasl(settings: Settings) -> dict[str, Any]:
    if settings.kafka_security_protocol not in SASL_PROTOCOLS:
        return {}
    password = settings.kafka_sasl_password
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": password.get_secret_value() if password is not None else None,
    }


def kafka_python_kwargs(settings: Settings) -> dict[str, Any]:
    """Keywords for kafka-python's KafkaAdminClient, KafkaConsumer and KafkaProducer."""
    check(settings)
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        **_sasl(settings),
    }
    if settings.kafka_security_protocol in SSL_PROTOCOLS and settings.kafka_ssl_cafile:
        kwargs["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return kwargs


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keywords for aiokafka's AIOKafkaProducer and AIOKafkaConsumer."""
    check(settings)
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        **_sasl(settings),
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def librdkafka_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's configuration (confluent-kafka's Consumer and Producer, Bytewax)."""
    check(settings)
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": protocol,
    }
    if protocol in SASL_PROTOCOLS:
        password = settings.kafka_sasl_password
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = password.get_secret_value() if password is not None else None
    if protocol in SSL_PROTOCOLS and settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return config


def faust_brokers(settings: Settings) -> list[str]:
    """faust's `broker` argument: one kafka:// URL per bootstrap server."""
    return [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")]


def faust_consumer_tuning(settings: Settings) -> dict[str, Any]:
    """faust's consumer keywords for the worker's fetches: few, large hand-overs from
    faust's consumer thread to the event loop (each fetched partition batch goes to its
    stage in one call, and each stage batch costs a checkpoint round trip)."""
    return {
        "broker_max_poll_records": settings.kafka_max_poll_records,
        "consumer_max_fetch_size": 16 * 1024 * 1024,  # per partition and fetch
    }


def faust_credentials(settings: Settings) -> Any:
    """faust's `broker_credentials`: SASL or SSL credentials, or None for PLAINTEXT."""
    check(settings)
    import faust  # deferred: importing faust is slow and only the worker needs it

    protocol = settings.kafka_security_protocol
    if protocol in SASL_PROTOCOLS:
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password is not None else None,
            mechanism=settings.kafka_sasl_mechanism,
            # with a context faust speaks SASL_SSL, without one SASL_PLAINTEXT
            ssl_context=ssl_context(settings),
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return None
