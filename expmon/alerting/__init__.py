"""Alert rules, the in-stream engine, sinks and the Prometheus twin (no Kafka imports)."""
