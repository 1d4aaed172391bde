"""Helpers shared by the unit tests: placing records on partitions as Kafka would, running
a stage over them, merging, and a crash/restore store that replays checkpoints exactly as
the worker's table state applies them (purges, then writes, then deletes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from expmon.engine.merge import ViewResult, WindowMerger
from expmon.engine.stage import RawRecord, StageOutput, WindowedStage
from expmon.engine.windows import Checkpoint, partition_of_state_key
from expmon.kafka.partition import partition_for
from expmon.sim.encoding import Record
from schemas import codec
from schemas.events import EventFamily

NOW_MS = 1_704_067_200_000  # the wall clock of contract tests: 2024-01-01T00:00:00Z


def contract_event(family: EventFamily, **over: Any) -> dict[str, Any]:
    """A valid event of `family` with every required field (`over` replaces fields)."""
    common: dict[str, Any] = {
        "event_id": "e-1",
        "occurred_at": NOW_MS - 1000,
        "schema_version": 1,
        "session_id": "s-1",
        "device": "mobile",
        "platform": "web",
        "region": "eu-west",
    }
    per_family: dict[EventFamily, dict[str, Any]] = {
        EventFamily.PAGE_LOAD: {"page": "/product/:id", "load_ms": 812.5},
        EventFamily.CHECKOUT: {
            "checkout_id": "c-1",
            "step": "payment_failed",
            "payment_provider": "adyen",
            "payment_method": "card",
            "failure_reason": "declined",
        },
        EventFamily.LOGISTICS: {
            "order_id": "o-1",
            "status": "shipped",
            "carrier": "ups",
            "warehouse": "ams-1",
        },
    }
    return {**common, **per_family[family], **over}


def place(records: Iterable[Record], partitions: int) -> list[RawRecord]:
    """Simulated records on `partitions` partitions by key, offsets in arrival order."""
    offsets = [0] * partitions
    placed: list[RawRecord] = []
    for record in records:
        p = partition_for(record.key, partitions)
        placed.append(RawRecord(p, offsets[p], record.key.encode(), record.value))
        offsets[p] += 1
    return placed


def place_events(
    events: Iterable[dict[str, Any]], key_field: str, partitions: int
) -> list[RawRecord]:
    """Events one per record, keyed by `key_field` and placed as Kafka would, in order."""
    offsets = [0] * partitions
    placed: list[RawRecord] = []
    for event in events:
        key = event[key_field]
        p = partition_for(key, partitions)
        placed.append(RawRecord(p, offsets[p], key.encode(), codec.dumps(event)))
        offsets[p] += 1
    return placed


def top_by_weight(weights: Mapping[str, int], limit: int) -> set[str]:
    """The test's own top N (largest weight, ties by name): truth for the label folds."""
    return set(sorted(weights, key=lambda v: (-weights[v], v))[:limit])


def run_stage(
    stage: WindowedStage[Any],
    records: Sequence[RawRecord],
    batch: int = 500,
    now_ms: int | None = None,
    finish: bool = True,
) -> list[StageOutput]:
    """The stage over the records in batches of `batch`; `finish` closes every window."""
    outs = [
        stage.process(records[i : i + batch], now_ms=now_ms) for i in range(0, len(records), batch)
    ]
    if finish:
        outs.append(stage.finish())
    return outs


def merge(
    merger: WindowMerger[Any], outputs: Iterable[StageOutput]
) -> tuple[list[ViewResult], int | None]:
    """Every final view of the outputs' partials, and how far windows became final."""
    results = merger.apply([m for out in outputs for m in out.partials]).results
    return results, merger.final_through


def last_revisions(results: Iterable[ViewResult]) -> dict[str, ViewResult]:
    """The last result of every window view (a re-emitted view replaces the earlier one)."""
    return {result.record_key: result for result in results}


class CheckpointStore:
    """A stage's state table as the changelog holds it, to crash and restore from.

    `apply` follows `TableState.apply`: purged keys go first, then writes in order (a
    checkpoint's meta last), then deletes; values go through the codec, as they would
    through Kafka.
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, checkpoint: Checkpoint) -> None:
        for key in checkpoint.purges:
            self.data.pop(key, None)
        self.data.update(codec.loads(codec.dumps(checkpoint.writes)))
        for key in checkpoint.deletes:
            self.data.pop(key, None)

    def keep(self, outputs: Iterable[StageOutput]) -> None:
        for out in outputs:
            for checkpoint in out.checkpoints.values():
                self.apply(checkpoint)

    def items(self, partition: int) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.data.items() if partition_of_state_key(k) == partition]

    def restore(self, stage: WindowedStage[Any], partitions: Iterable[int]) -> None:
        """Assign every partition to a fresh stage from what was checkpointed."""
        for partition in partitions:
            stage.assign(partition, self.items(partition))
