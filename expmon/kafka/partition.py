"""Which partition Kafka's default partitioner gives a keyed record: the one formula the
simulator, the bench and the tests use to place records as a broker would."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes | str, partitions: int) -> int:
    """murmur2 of the key, positive, modulo the partition count (Java client, aiokafka)."""
    raw = key.encode() if isinstance(key, str) else key
    hashed: int = murmur2(raw)
    return (hashed & 0x7FFFFFFF) % partitions
