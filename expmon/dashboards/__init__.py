"""Grafana dashboards generated from code (`python -m expmon.dashboards`)."""
