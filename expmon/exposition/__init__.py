"""What the worker exposes to Prometheus: every metric, built from a registry argument."""
