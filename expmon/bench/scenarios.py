"""The names of `expmon bench`'s scenarios and datasets, and which are references."""

from __future__ import annotations

BARE = "bare aiokafka+orjson"
CONFLUENT = "bare confluent-kafka+orjson"
PIPELINE = "expmon pipeline"
PIPELINE_2 = "expmon pipeline, 2 processes"
# 1 process on PIPELINE_2's topics (a partition count N divides): what PIPELINE_2 is divided by
PIPELINE_1_OF_2 = "expmon pipeline, 1 process on the 2-process topics"
FAUST = "plain faust agent"
BYTEWAX = "Bytewax"
QUIX = "Quix Streams"
REPLAY_KAFKA = "expmon replay (Kafka)"
REPLAY_FILE = "expmon replay (file)"
SCENARIOS = (
    BARE, CONFLUENT, PIPELINE, PIPELINE_2, FAUST, BYTEWAX, QUIX, REPLAY_KAFKA, REPLAY_FILE,
)  # fmt: skip
# the scenarios of the report, in the order of its tables (`pipeline-2` runs PIPELINE_1_OF_2 too)
REPORTED = (
    BARE, CONFLUENT, PIPELINE, PIPELINE_1_OF_2, PIPELINE_2, FAUST, BYTEWAX, QUIX, REPLAY_KAFKA,
    REPLAY_FILE,
)  # fmt: skip
# what every other scenario's events/s is divided by, in the table and the JSON (`ratios`)
REFERENCES = (BARE, CONFLUENT, BYTEWAX, QUIX)
REFERENCE_COLUMNS = {BARE: "vs aiokafka", CONFLUENT: "vs confluent", BYTEWAX: "vs Bytewax",
                     QUIX: "vs Quix"}  # fmt: skip
PIPELINE_PROCESSES = 2


def even_partitions(partitions: int, processes: int) -> int:
    """The partition count of the N-process scenario's topics: the smallest multiple of
    `processes` at or above `partitions` (3 partitions over 2 processes would leave one
    child a third of the work: at most 1.5x by construction; a user running N processes
    sizes the topic as a multiple of N)."""
    if partitions < 1 or processes < 1:
        raise ValueError(f"partitions {partitions} and processes {processes} must be >= 1")
    return -(-partitions // processes) * processes


# the ratios the README's second table states: subject / reference
RATIO_PAIRS = (
    *((PIPELINE, ref) for ref in REFERENCES),
    *((PIPELINE_2, ref) for ref in REFERENCES),
    (PIPELINE_2, PIPELINE_1_OF_2),
    (REPLAY_KAFKA, PIPELINE),
)

SINGLE = "single"
BATCH = "batch100"
