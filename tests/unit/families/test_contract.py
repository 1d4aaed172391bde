"""The family contract, run for every registered family: its windows equal its ground
truth, and do not depend on a restart, on how partitions are split over workers, on the
partition count or on how events are batched into records.

A new family joins the registry and gets this suite by adding its scenario below (the
suite fails for a registered family without one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from expmon.engine.stage import RawRecord, StageOutput
from expmon.families.base import Family
from expmon.families.registry import FAMILIES
from expmon.settings import Settings
from expmon.sim.encoding import encode_records
from expmon.sim.journeys import TrafficGenerator
from schemas.events import EventFamily
from tests.unit.helpers import CheckpointStore, last_revisions, merge, place, run_stage

START_MS = 1_704_067_200_000
NOW_MS = START_MS + 10**8  # validation's "now": every simulated event is in the past


@dataclass(frozen=True)
class Scenario:
    """Settings and simulated traffic that exercise a family's windows and timers."""

    settings: Settings
    traffic: Mapping[str, Any] = field(default_factory=dict)
    min_rows: int = 200  # truth rows the run must yield to count as exercised


SCENARIOS: dict[EventFamily, Scenario] = {
    EventFamily.PAGE_LOAD: Scenario(
        Settings(bounce_seconds=300),
        {"rate": 12, "duration_s": 900, "incidents": ["slow_pages@300s+200s:region=eu-west"]},
    ),
    EventFamily.CHECKOUT: Scenario(
        Settings(checkout_abandon_seconds=600),
        {
            "rate": 12,
            "duration_s": 1200,
            "incidents": ["payment_outage@240s+300s:provider=adyen", "checkout_stall@600s+240s"],
        },
    ),
    EventFamily.LOGISTICS: Scenario(
        Settings(ship_sla_seconds=48, tracking_stale_seconds=24),
        {
            "rate": 35,
            "duration_s": 600,
            "lifecycle_compression": 3600,
            "incidents": ["warehouse_backlog@120s+120s:warehouse=ams-1"],
        },
    ),
}


@pytest.fixture(params=FAMILIES, ids=lambda f: str(f.name))
def family(request: pytest.FixtureRequest) -> Family:
    fam: Family = request.param
    return fam


def scenario(family: Family) -> Scenario:
    assert family.name in SCENARIOS, f"family {family.name} has no contract scenario"
    return SCENARIOS[family.name]


@cache
def traffic(
    name: EventFamily, partitions: int, per_record: int = 1
) -> tuple[tuple[RawRecord, ...], tuple[Mapping[str, Any], ...]]:
    """The scenario's records on `partitions` partitions, and the events that count."""
    generator = TrafficGenerator(
        seed=5, start_ms=START_MS, families=[name], **SCENARIOS[name].traffic
    )
    records = list(
        encode_records(
            generator.generate(),
            per_record,
            duplicate_ratio=0.02,
            seed=5,
            partitions={name: partitions},
        )
    )
    events = tuple(e for r in records for e in r.events)
    return tuple(place(records, partitions)), events


def rows_of(outputs: Sequence[StageOutput], family: Family) -> dict[str, list[dict[str, Any]]]:
    results, _final = merge(family.new_merger(scenario(family).settings), outputs)
    return {key: r.rows for key, r in sorted(last_revisions(results).items())}


def run(
    family: Family, records: Sequence[RawRecord], partitions: int, batch: int = 500
) -> list[StageOutput]:
    stage = family.new_stage(scenario(family).settings, partitions, live=False)
    return run_stage(stage, records, batch=batch, now_ms=NOW_MS)


@pytest.mark.parametrize(("partitions", "per_record"), [(1, 1), (3, 1), (3, 20)])
def test_windows_equal_the_ground_truth(family: Family, partitions: int, per_record: int) -> None:
    settings = scenario(family).settings
    records, events = traffic(family.name, partitions, per_record)
    outs = run(family, records, partitions)
    counts = {o: sum(out.counts[o] for out in outs) for o in ("accepted", "invalid", "late")}
    assert counts == {"accepted": len(events), "invalid": 0, "late": 0}
    assert sum(out.counts["duplicate"] for out in outs) > 0  # de-duplication was exercised
    results, final_through = merge(family.new_merger(settings), outs)
    assert final_through is not None
    rows = [row for result in last_revisions(results).values() for row in result.rows]
    want = family.truth.rows(events, settings, final_through)
    assert len(want) >= scenario(family).min_rows
    assert family.truth.differences(rows, want) == []


def test_a_restart_from_the_checkpoints_changes_nothing(
    family: Family, checkpoint_store: CheckpointStore
) -> None:
    records, _events = traffic(family.name, 3)
    reference = rows_of(run(family, records, 3), family)
    settings = scenario(family).settings
    first = family.new_stage(settings, 3, live=False)
    crash_at, resume_at = len(records) * 11 // 20, len(records) * 7 // 20
    outs = run_stage(first, records[:crash_at], batch=100, now_ms=NOW_MS, finish=False)
    store = checkpoint_store
    store.keep(outs)
    # crash; the committed offsets lag behind the checkpoints: records are read again
    second = family.new_stage(settings, 3, live=False)
    store.restore(second, range(3))
    outs += run_stage(second, records[resume_at:], batch=100, now_ms=NOW_MS)
    assert sum(out.counts["duplicate"] for out in outs) == sum(
        out.counts["duplicate"] for out in run(family, records, 3)
    )
    assert rows_of(outs, family) == reference


def test_partitions_split_over_workers_equal_one_worker(family: Family) -> None:
    records, _events = traffic(family.name, 3)
    one = run(family, records, 3)
    split = run(family, [r for r in records if r.partition != 2], 3, batch=333)
    split += run(family, [r for r in records if r.partition == 2], 3, batch=77)
    assert rows_of(split, family) == rows_of(one, family)


def outcomes(outputs: Sequence[StageOutput]) -> dict[str, int]:
    """Every outcome over the run: accepted, duplicate, late, invalid and the rest."""
    totals: dict[str, int] = {}
    for out in outputs:
        for outcome, n in out.counts.items():
            totals[outcome] = totals.get(outcome, 0) + n
    return {outcome: n for outcome, n in sorted(totals.items()) if n}


def test_batching_changes_nothing(family: Family) -> None:
    """The same events in records of 1, 7 and 20 events (three array groupings), in stage
    batches of 500 or 25 records: the same outcome per event and the same windows."""
    single, _events = traffic(family.name, 3)
    reference_outs = run(family, single, 3)
    reference = rows_of(reference_outs, family)
    assert outcomes(reference_outs)["duplicate"] > 0  # the copies are what grouping moves
    for per_record, batch in ((1, 25), (7, 500), (20, 500), (20, 25)):
        records, _same = traffic(family.name, 3, per_record=per_record)
        outs = run(family, records, 3, batch=batch)
        assert outcomes(outs) == outcomes(reference_outs), (per_record, batch)
        assert rows_of(outs, family) == reference, (per_record, batch)


@pytest.mark.parametrize("quiet", [0, 2])
def test_a_partition_shown_early_then_corrected_ends_equal_to_a_replay(
    family: Family, quiet: int
) -> None:
    """One partition goes quiet for the middle third of the run and is shown early (as a
    verified-idle partition is) up to the busiest partition's event time; then its held
    records arrive. Every view's last revision equals a replay of the same records."""
    settings = scenario(family).settings
    records, _events = traffic(family.name, 3, 1)
    n = len(records)
    held = [r for r in records[n // 3 : 2 * n // 3] if r.partition == quiet]
    held_ids = {id(r) for r in held}
    before = [r for r in records[: 2 * n // 3] if id(r) not in held_ids]
    after = records[2 * n // 3 :]
    live = family.new_stage(settings, 3, live=True)
    merger = family.new_merger(settings)
    results = []
    shown = 0
    for i in range(0, len(before), 300):
        out = live.process(before[i : i + 300], now_ms=NOW_MS)
        results += merger.apply(out.partials).results
        frontier = live.max_event_ms()
        if i >= n // 3 and frontier is not None:
            tick = live.tick({quiet: frontier})
            shown += sum(1 for m in tick.partials if m.get("provisional"))
            results += merger.apply(tick.partials).results
    for chunk in (held, after):
        for i in range(0, len(chunk), 300):
            results += merger.apply(
                live.process(chunk[i : i + 300], now_ms=NOW_MS).partials
            ).results
    assert shown > 0, "the quiet partition was never shown early"
    assert any(r.revision for r in results), "nothing was corrected: the test lost its point"
    settled = merger.settled_through()
    assert settled is not None
    replay = family.new_stage(settings, 3, live=False)
    want, _ = merge(
        family.new_merger(settings), run_stage(replay, records, finish=False, now_ms=NOW_MS)
    )
    expected = {k: r.rows for k, r in last_revisions(want).items() if r.end_ms <= settled}
    got = {k: r.rows for k, r in last_revisions(results).items() if r.end_ms <= settled}
    assert {k for k, rows in got.items() if rows or k in expected} == expected.keys()
    for key, rows in expected.items():
        assert got[key] == rows, key
