"""`expmon collect`: HTTP ingestion from browsers and services into the input topics.

The contract's events (per family route), `web-vitals` library beacons and Grafana Faro
web SDK payloads are mapped to contract events, validated with the worker's own decoder
(`expmon.engine.stage.record_decoder`), and produced with acks from every in-sync replica
before the request is answered 202: what a browser was told is accepted is on the broker.
Stateless apart from bounded caches (rate-limit buckets, recent event ids), so replicas
scale out behind any load balancer.
"""
