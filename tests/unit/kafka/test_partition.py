"""The one partitioner is Kafka's: the Java client's murmur2 test vectors, made positive."""

from __future__ import annotations

import pytest

from expmon.kafka.partition import partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2: key -> Utils.murmur2(key)
KAFKA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "murmur2"), KAFKA_MURMUR2.items())
@pytest.mark.parametrize("partitions", [1, 3, 6, 7])
def test_partition_is_the_java_clients(key: str, murmur2: int, partitions: int) -> None:
    expected = (murmur2 & 0x7FFFFFFF) % partitions  # Utils.toPositive(murmur2) % n
    assert partition_for(key, partitions) == expected
    assert partition_for(key.encode(), partitions) == expected
