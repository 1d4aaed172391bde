"""What runs on a developer's machine: the embedded Kafka, local Prometheus and
Alertmanager, child processes, and the demo."""
