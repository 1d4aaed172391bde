"""Shared by every unit test (no broker anywhere below this folder).

Helpers that tests import live in `tests/unit/helpers.py` (records on partitions by
Kafka's partitioner, running a stage, merging, the crash/restore store); fixtures here.
"""

from __future__ import annotations

import pytest

from tests.unit.helpers import CheckpointStore


@pytest.fixture
def checkpoint_store() -> CheckpointStore:
    """An empty state table to checkpoint into, crash, and restore from."""
    return CheckpointStore()
