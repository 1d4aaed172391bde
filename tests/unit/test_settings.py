"""The start log's view of the settings: every setting, never a secret."""

from __future__ import annotations

from expmon.settings import Settings


def test_describe_lists_every_setting_and_hides_secrets() -> None:
    secret = "s3cr3t-value-9d1"
    settings = Settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="svc", kafka_sasl_password=secret,
    )  # fmt: skip
    line = settings.describe()
    assert secret not in line
    assert "kafka_sasl_password=***" in line and "kafka_sasl_username=svc" in line
    names = [part.split("=", 1)[0] for part in line.split(" ")]
    assert names == list(Settings.model_fields)
