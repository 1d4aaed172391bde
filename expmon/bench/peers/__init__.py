"""The bench's peers: the same windowed page-load job on Bytewax and on Quix Streams.

Each peer runs as its own process (`python -m expmon.bench.peers.bytewax_job`, ...); the
modules here import only the standard library, `schemas`, `expmon.engine.sketch` and
prometheus_client, so that Quix Streams can run them from a venv of its own (its pins
exclude the project's pydantic)."""
