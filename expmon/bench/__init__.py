"""`expmon bench`: throughput beside the peers, alert latency, state memory."""
