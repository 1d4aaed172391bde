"""The embedded Apache Kafka (KRaft, one node): jars by `mvn`, started with `java`.

`python -m expmon.local.kafka fetch|run`."""
