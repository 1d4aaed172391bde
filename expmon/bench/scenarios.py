"""The names of `expmon bench`'s scenarios and datasets, and which are references."""

from __future__ import annotations

BARE = "bare aiokafka+orjson"
CONFLUENT = "bare confluent-kafka+orjson"
PIPELINE = "expmon pipeline"
PIPELINE_2 = "expmon pipeline, 2 processes"
FAUST = "plain faust agent"
BYTEWAX = "Bytewax"
QUIX = "Quix Streams"
REPLAY_KAFKA = "expmon replay (Kafka)"
REPLAY_FILE = "expmon replay (file)"
SCENARIOS = (
    BARE, CONFLUENT, PIPELINE, PIPELINE_2, FAUST, BYTEWAX, QUIX, REPLAY_KAFKA, REPLAY_FILE,
)  # fmt: skip
# what every other scenario's events/s is divided by, in the table and the JSON (`ratios`)
REFERENCES = (BARE, CONFLUENT, BYTEWAX, QUIX)
REFERENCE_COLUMNS = {BARE: "vs aiokafka", CONFLUENT: "vs confluent", BYTEWAX: "vs Bytewax",
                     QUIX: "vs Quix"}  # fmt: skip
PIPELINE_PROCESSES = 2
# the ratios the README's second table states: subject / reference
RATIO_PAIRS = (
    *((PIPELINE, ref) for ref in REFERENCES),
    *((PIPELINE_2, ref) for ref in REFERENCES),
    (PIPELINE_2, PIPELINE),
    (REPLAY_KAFKA, PIPELINE),
)

SINGLE = "single"
BATCH = "batch100"
