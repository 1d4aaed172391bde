"""The replication factor of the topics the monitor creates: the setting, else 3 on a
cluster of >= 3 brokers, else the broker's default (read from the broker)."""

from __future__ import annotations

import pytest

from expmon.errors import TopicError
from expmon.kafka.admin import broker_default_replication, replication_factor
from tests.integration.conftest import SettingsFactory


def test_a_single_broker_gets_its_default(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    assert broker_default_replication(settings) == 1  # the local broker's default
    replicas, why = replication_factor(settings, brokers=1)
    assert replicas == 1 and "default.replication.factor=1" in why


def test_three_brokers_get_three_and_the_setting_wins(settings_factory: SettingsFactory) -> None:
    assert replication_factor(settings_factory(), brokers=3) == (3, "3 brokers")
    assert replication_factor(settings_factory(replication_factor=2), brokers=5)[0] == 2
    with pytest.raises(TopicError, match="has 1 broker"):
        replication_factor(settings_factory(replication_factor=3), brokers=1)
