"""The event-time engine: windows, watermarks, entities and timers, stage 1 (a batch of
records to outcomes, dead letters, partials and a checkpoint), the merge (stage 2), sketches,
counters and label limits. Knows no event family and imports no Kafka client."""
