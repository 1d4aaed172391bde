"""`expmon replay` and `expmon record`: the replay session over the live stages, ranges and
offsets on Kafka, NDJSON recordings, reports."""
