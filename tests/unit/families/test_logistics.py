"""Logistics stage + merge, no broker: SLA, staleness, delivery, restart, split, simulation."""

import gc
import random
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from expmon.engine.counters import SAMPLES_KEY
from expmon.engine.merge import ViewResult
from expmon.engine.stage import RawRecord, StageOutput
from expmon.families.logistics import LogisticsStage, new_logistics_merger
from expmon.kafka.partition import partition_for
from expmon.settings import Settings
from expmon.sim.encoding import encode_records
from expmon.sim.journeys import TrafficGenerator
from expmon.sim.truth.logistics import delivery_row as truth_delivery_row
from expmon.sim.truth.logistics import logistics_truth
from expmon.sim.truth.logistics import sla_row as truth_sla_row
from expmon.sim.truth.logistics import tracking_row as truth_tracking_row
from schemas import codec
from schemas.eventtime import format_ms, parse_event_time_ms
from tests.unit.helpers import CheckpointStore, place_events, top_by_weight

T0 = 1_763_000_040_000  # a whole minute
NOW = T0 + 10**8  # `now` for the absurd-timestamp check: every test event is in the past
SLA_S = 120
STALE_S = 60

Step = tuple[Any, ...]  # (seconds after T0, status[, promised_by seconds after T0])


def lev(i: int, order: str, status: str, t: int, **over: Any) -> dict[str, Any]:
    event = {
        "event_id": f"e{i}",
        "occurred_at": t,
        "schema_version": 1,
        "session_id": "s1",
        "device": "mobile",
        "platform": "web",
        "region": "eu-west",
        "order_id": order,
        "status": status,
        "carrier": "dhl",
        "warehouse": "ams-1",
    }
    event.update(over)
    return event


class Feed:
    """Hand-made records of one partition, with unique event ids and offsets."""

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.offset = 0
        self.events: list[dict[str, Any]] = []

    def record(self, order: str, status: str, t: int, **over: Any) -> RawRecord:
        event = lev(self.offset + 1000 * self.partition, order, status, t, **over)
        self.events.append(event)
        rec = RawRecord(self.partition, self.offset, order.encode(), codec.dumps(event))
        self.offset += 1
        return rec

    def steps(self, order: str, steps: Iterable[Step]) -> list[RawRecord]:
        out = []
        for step in steps:
            over = {"promised_by": format_ms(T0 + step[2] * 1000)} if len(step) > 2 else {}
            out.append(self.record(order, step[1], T0 + step[0] * 1000, **over))
        return out

    def clock(self, seconds: int) -> RawRecord:
        """An event on another order that moves the partition's watermark and leaves no state
        (a lone `returned`: no SLA clock, terminal)."""
        return self.record(f"clock-{self.offset}", "returned", T0 + seconds * 1000)


def window_counts(outputs: Iterable[StageOutput]) -> Counter[tuple[str, int]]:
    """(counter name, window start in seconds after T0) -> count, over every closed window."""
    counts: Counter[tuple[str, int]] = Counter()
    for out in outputs:
        for msg in out.partials:
            if msg["kind"] == "partial":
                for _key, named in msg["entries"]:
                    for name, n in named.items():
                        if name != SAMPLES_KEY:  # evidence, not a count
                            counts[(name, (msg["start"] - T0) // 1000)] += n
    return counts


def expected_counts(expected: Iterable[tuple[str, int]]) -> Counter[tuple[str, int]]:
    return Counter((name, at - at % 60) for name, at in expected)


@pytest.fixture
def settings() -> Settings:
    return Settings(ship_sla_seconds=SLA_S, tracking_stale_seconds=STALE_S)


CASES: dict[str, tuple[list[Step], list[tuple[str, int]], int]] = {
    # name: (steps of order o1 in arrival order, counts (name, at seconds), open orders after)
    "shipped_in_time": (
        [(0, "order_placed"), (100, "shipped"), (130, "delivered", 200)],
        [("within", 100), ("delivered", 130), ("on_time", 130)],
        0,
    ),
    "shipped_at_the_deadline_is_in_time": (
        [(0, "order_placed"), (120, "shipped"), (150, "delivered")],
        [("within", 120), ("delivered", 150)],
        0,
    ),
    "shipped_late_breaches_at_the_deadline": (
        [(0, "order_placed"), (150, "shipped"), (200, "delivered", 180)],
        [("breach", 120), ("delivered", 200), ("late", 200)],
        0,
    ),
    "never_shipped_breaches_and_stays_open": (
        [(0, "order_placed")],
        [("breach", 120)],
        1,
    ),
    "shipment_after_breach_does_not_count_again": (
        [(0, "order_placed"), (200, "shipped"), (210, "in_transit"), (230, "delivered")],
        [("breach", 120), ("delivered", 230)],
        0,
    ),
    "delivered_as_first_shipment_event": (
        [(0, "order_placed"), (50, "delivered")],
        [("within", 50), ("delivered", 50)],
        0,
    ),
    "stale_then_fresh_again": (
        [
            (0, "order_placed"),
            (10, "shipped"),
            (100, "in_transit"),
            (140, "out_for_delivery"),
            (170, "delivered"),
        ],
        [("within", 10), ("became_stale", 70), ("delivered", 170)],
        0,
    ),
    "update_at_the_stale_deadline_keeps_it_fresh": (
        [(0, "order_placed"), (10, "shipped"), (70, "in_transit"), (100, "delivered")],
        [("within", 10), ("delivered", 100)],
        0,
    ),
    "stale_order_stays_open": (
        [(0, "order_placed"), (10, "shipped")],
        [("within", 10), ("became_stale", 70)],
        1,
    ),
    "lost_order_placed_has_no_sla_clock": (
        [(0, "packed"), (500, "shipped"), (520, "delivered")],
        [("delivered", 520)],
        0,
    ),
    "delivery_failed_is_not_terminal": (
        [
            (0, "order_placed"),
            (10, "shipped"),
            (40, "out_for_delivery"),
            (60, "delivery_failed"),
            (90, "out_for_delivery"),
            (120, "delivered"),
        ],
        [("within", 10), ("failed", 60), ("delivered", 120)],
        0,
    ),
    "returned_before_shipping_waits_for_the_deadline": (
        [(0, "order_placed"), (30, "returned")],
        [("breach", 120)],
        0,
    ),
    "reordered_shipments_count_the_earliest": (
        [(0, "order_placed"), (121, "in_transit"), (119, "shipped"), (150, "delivered")],
        [("within", 119), ("delivered", 150)],
        0,
    ),
    "reordered_order_placed_still_starts_the_clock": (
        [(5, "packed"), (3, "order_placed"), (200, "shipped"), (210, "delivered")],
        [("breach", 123), ("delivered", 210)],
        0,
    ),
    "event_after_delivery_starts_a_new_lifecycle": (
        [
            (0, "order_placed"),
            (10, "shipped"),
            (20, "delivered"),
            (300, "returned"),
            (400, "packed"),
        ],
        [("within", 10), ("delivered", 20)],
        1,
    ),
}


@pytest.mark.parametrize("batch_size", [1, 100])
@pytest.mark.parametrize("case", sorted(CASES))
def test_order_lifecycles(settings: Settings, case: str, batch_size: int) -> None:
    steps, expected, open_after = CASES[case]
    feed = Feed()
    records = [*feed.steps("o1", steps), feed.clock(1000)]
    stage = LogisticsStage(settings, "t", 1, live=False, breach_sample_size=10)
    outs = [
        stage.process(records[i : i + batch_size], now_ms=NOW)
        for i in range(0, len(records), batch_size)
    ]
    outs.append(stage.finish())
    assert window_counts(outs) == expected_counts(expected)
    assert stage.open_orders() == open_after
    breaches = [(order, (ship_by - T0) // 1000) for order, ship_by, _w, _c in stage.breaches]
    assert breaches == [("o1", at) for name, at in expected if name == "breach"]
    assert stage.sla_breaches_total == len(breaches)
    # the ground truth applies the same definitions
    closed = stage.partitions[0].closed_through_ms
    assert closed is not None
    truth = logistics_truth(
        feed.events,
        closed,
        views=[("1m", 1)],
        ship_sla_ms=SLA_S * 1000,
        tracking_stale_ms=STALE_S * 1000,
    )
    truth_counts: Counter[tuple[str, int]] = Counter()
    for row in truth.rows:
        if row["carrier"] == "all":
            continue
        for name in ("within", "breach", "delivered", "failed", "on_time", "late", "became_stale"):
            if row.get(name):
                truth_counts[(name, (row["start_ms"] - T0) // 1000)] += row[name]
    assert truth_counts == expected_counts(expected)
    assert truth.breached_orders == ({"o1"} if breaches else set())


def test_a_quiet_partition_shows_its_breach_early_and_an_in_time_shipment_corrects_it(
    settings: Settings,
) -> None:
    stage = LogisticsStage(settings, "t", 2, live=True)
    quiet, busy = Feed(0), Feed(1)
    out = stage.process([quiet.record("o1", "order_placed", T0), busy.clock(0)], now_ms=NOW)
    out2 = stage.process([busy.clock(300)], now_ms=NOW)
    frontier = T0 + 300_000 - settings.lateness_ms
    tick = stage.tick({0: frontier})  # partition 0 verified idle: shown up to the frontier
    assert stage.sla_breaches_total == 0  # a look-ahead counts nothing for real
    assert stage.partitions[0].watermark_ms == T0 - settings.lateness_ms
    merger = new_logistics_merger(settings)
    results = merger.apply(out.partials + out2.partials + tick.partials).results

    def sla(results: list[Any]) -> set[tuple[int, int, str, int]]:
        return {
            (res.revision, r["end_ms"] - T0, r["carrier"], r["breach"])
            for res in results
            if res.view == "1m"
            for r in res.rows
            if r["kind"] == "sla"
        }

    assert sla(results) == {(0, 180_000, "dhl", 1), (0, 180_000, "all", 1)}
    # The shipment was made in time; it only reached the broker now. Not late: corrected.
    shipped = stage.process([quiet.record("o1", "shipped", T0 + 60_000)], now_ms=NOW)
    assert shipped.counts["accepted"] == 1 and shipped.counts["late"] == 0
    closing = stage.process([quiet.clock(400)], now_ms=NOW)
    corrected = merger.apply(shipped.partials + closing.partials).results
    again = {r.end_ms: r for r in corrected if r.view == "1m"}
    assert again[T0 + 180_000].revision == 1
    assert {breach for *_rest, breach in sla(corrected)} <= {0}  # no breach any more
    # every corrected view equals a replay of the same records
    replay = LogisticsStage(settings, "t", 2, live=False)
    records = [quiet.record("o1", "order_placed", T0), busy.clock(0), busy.clock(300)]
    records += [quiet.record("o1", "shipped", T0 + 60_000), quiet.clock(400)]
    outs = [replay.process(records, now_ms=NOW), replay.finish()]
    replayed = new_logistics_merger(settings).apply([m for o in outs for m in o.partials])
    want = {r.end_ms: r.rows for r in replayed.results if r.view == "1m"}
    for end, result in again.items():
        assert result.rows == want[end]
    assert stage.sla_breaches_total == 0


@pytest.mark.parametrize(
    ("shipped", "want"),
    [
        # max_label_values 1: a partition shows its 4 carriers with most tracked orders
        ({"a": 1, "b": 3, "c": 2, "d": 2, "e": 2, "f": 5},
         {"f": (5, 0), "b": (3, 0), "c": (2, 0), "d": (2, 0), "other": (3, 0)}),
        ({"z": 1, "y": 1}, {"z": (1, 0), "y": (1, 0)}),
    ],
)  # fmt: skip
def test_tracking_gauges_show_each_partitions_top_carriers(
    settings: Settings, shipped: dict[str, int], want: dict[str, Any]
) -> None:
    small = settings.model_copy(update={"max_label_values": 1})
    orders = [(f"{c}{i}", c) for c, n in shipped.items() for i in range(n)]
    for order_of_arrival in (orders, orders[::-1]):
        stage = LogisticsStage(small, "t", 1, live=False)
        stage.persist = True
        feed = Feed()
        records = [feed.record(o, "shipped", T0 + 1000, carrier=c) for o, c in order_of_arrival]
        out = stage.process([*records, feed.clock(40)], now_ms=NOW)
        assert stage.tracking_gauges() == want
        # a restart from the checkpoint shows the same
        store = CheckpointStore()
        store.keep([out])
        restored = LogisticsStage(small, "t", 1, live=False)
        store.restore(restored, [0])
        assert restored.tracking_gauges() == want


def test_tracking_gauges_follow_staleness(settings: Settings) -> None:
    stage = LogisticsStage(settings, "t", 1, live=False)
    feed = Feed()

    def step(*records: RawRecord) -> None:
        stage.process(list(records), now_ms=NOW)

    step(feed.record("o1", "order_placed", T0), feed.record("o1", "shipped", T0 + 10_000))
    step(feed.record("o2", "order_placed", T0 + 20_000, carrier="ups"))
    step(feed.clock(100))  # watermark 70 s: shipped applied; stale at 70 s not yet passed
    assert stage.tracking_gauges() == {"dhl": (1, 0)}
    step(feed.clock(101))  # watermark 71 s: the watermark passed 70 s
    assert stage.tracking_gauges() == {"dhl": (1, 1)}
    step(feed.record("o1", "in_transit", T0 + 105_000), feed.clock(140))
    assert stage.tracking_gauges() == {"dhl": (1, 0)}  # fresh again
    step(feed.record("o1", "delivered", T0 + 120_000), feed.clock(200))
    assert stage.tracking_gauges() == {}
    assert stage.open_orders() == 2  # o2 (placed, never shipped), and clock-8 still waiting
    stage.finish()
    assert stage.open_orders() == 1
    assert stage.shipments_total == {
        ("order_placed", "dhl"): 1,
        ("order_placed", "ups"): 1,
        ("shipped", "dhl"): 1,
        ("in_transit", "dhl"): 1,
        ("delivered", "dhl"): 1,
        ("returned", "dhl"): 4,
    }


def test_labels_are_decided_where_each_count_is_made(settings: Settings) -> None:
    """max_label_values 1: a partition keeps 4 values per window and key space."""
    small = settings.model_copy(update={"max_label_values": 1, "ship_sla_seconds": SLA_S})
    stage = LogisticsStage(small, "t", 1, False)
    feed = Feed()
    carriers = ["c1", "c2", "c3", "c4", "c5"]
    records = [
        feed.record(f"o{i}", "delivered", T0 + i, carrier=c, warehouse=f"w{i}")
        for i, c in enumerate(carriers)
    ]
    # five orders placed in the first window, all breaching in a later one (ship_by)
    records += [
        feed.record(f"b{i}", "order_placed", T0 + 10 + i, carrier=c, warehouse="w")
        for i, c in enumerate(reversed(carriers))
    ]
    records.append(feed.clock(SLA_S + 120))
    outs = [stage.process(records, now_ms=NOW), stage.finish()]
    partials = [m for out in outs for m in out.partials if m["kind"] == "partial"]
    keys = Counter((m["start"], tuple(key)) for m in partials for key, _counts in m["entries"])
    delivery = {key[1] for (start, key) in keys if key[0] == "delivery"}
    assert delivery == {"c1", "c2", "c3", "c4", "other"}
    # a breach's carrier is the order's own value, labelled in the window of its ship_by
    breach_window = T0 + SLA_S * 1000 - (T0 + SLA_S * 1000) % 60_000
    sla = {key[2] for (start, key) in keys if key[0] == "sla" and start == breach_window}
    assert sla == {"c5", "c4", "c3", "c2", "other"}
    # the cumulative counters are process-wide: first come, max_label_values of them
    assert {carrier for _status, carrier in stage.shipments_total} == {"c1", "other"}


# ------------------------------------------------------------------ simulated traffic

SIM_SETTINGS = Settings(ship_sla_seconds=48, tracking_stale_seconds=24)
SIM_START = 1_704_067_200_000


def simulated(
    duration_s: float = 600, partitions: int = 3, seed: int = 7
) -> tuple[list[RawRecord], list[dict[str, Any]]]:
    """Logistics traffic, 1 h of lifecycle per second, with a warehouse backlog at ams-1."""
    gen = TrafficGenerator(
        seed=seed,
        rate=35,
        start_ms=SIM_START,
        duration_s=duration_s,
        families=["logistics"],
        lifecycle_compression=3600,
        incidents=["warehouse_backlog@120s+120s:warehouse=ams-1"],
    )
    records: list[RawRecord] = []
    events: list[dict[str, Any]] = []
    offsets = [0] * partitions
    for rec in encode_records(gen.generate()):
        p = partition_for(rec.key, partitions)
        records.append(RawRecord(p, offsets[p], rec.key.encode(), rec.value))
        offsets[p] += 1
        events.extend(rec.events)
    return records, events


def new_stage(partitions: int = 3) -> LogisticsStage:
    return LogisticsStage(SIM_SETTINGS, "t", partitions, live=False, breach_sample_size=10**6)


def run(stage: LogisticsStage, records: list[RawRecord], batch: int = 500) -> list[StageOutput]:
    outs = [
        stage.process(records[i : i + batch], now_ms=NOW) for i in range(0, len(records), batch)
    ]
    outs.append(stage.finish())
    return outs


def merge(outputs: list[StageOutput]) -> tuple[list[ViewResult], int]:
    merger = new_logistics_merger(SIM_SETTINGS)
    results = merger.apply([m for out in outputs for m in out.partials]).results
    assert merger.final_through is not None
    return results, merger.final_through


RowKey = tuple[str, int, str, str, str]


def by_key(rows: Iterable[dict[str, Any]]) -> dict[RowKey, dict[str, Any]]:
    return {
        (r["view"], r["end_ms"], r["kind"], r.get("warehouse", ""), r["carrier"]): r for r in rows
    }


def result_rows(results: list[ViewResult]) -> dict[RowKey, dict[str, Any]]:
    table = by_key(row for res in results for row in res.rows)
    assert len(table) == sum(len(res.rows) for res in results)  # no row twice
    return table


def breached(stages: Iterable[LogisticsStage], closed_through: int) -> set[str]:
    return {
        o for stage in stages for o, ship_by, _w, _c in stage.breaches if ship_by < closed_through
    }


@pytest.fixture(scope="module")
def traffic() -> tuple[list[RawRecord], list[dict[str, Any]]]:
    return simulated()


def test_simulated_traffic_matches_the_ground_truth(
    traffic: tuple[list[RawRecord], list[dict[str, Any]]],
) -> None:
    records, events = traffic
    stage = new_stage()
    outs = run(stage, records)
    assert sum(o.counts["accepted"] for o in outs) == len(events)
    results, closed = merge(outs)
    truth = logistics_truth(
        events,
        closed,
        views=[("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60)],
        ship_sla_ms=48_000,
        tracking_stale_ms=24_000,
    )
    got, want = result_rows(results), by_key(truth.rows)
    assert got.keys() == want.keys()
    ratios = {"within_sla_ratio", "breach_ratio", "exception_ratio", "on_time_ratio"}
    for key, row in want.items():
        mine = dict(got[key])
        # evidence: a few ids of breached orders' order_placed events / failed deliveries
        evidence = mine.pop("sample_event_ids", [])
        shown = row.get("breach", row.get("failed", 0))
        assert len(evidence) == min(3, shown), key
        assert evidence == sorted(evidence), key
        assert mine.keys() == row.keys(), key
        for name, value in row.items():
            if name in ratios and value is not None:
                assert mine[name] == pytest.approx(value, abs=1e-9), (key, name)
            else:
                assert mine[name] == value, (key, name)
    assert breached([stage], closed) == truth.breached_orders
    # the scenario exercises what it claims to
    totals: Counter[str] = Counter()
    for row in truth.rows:
        if row["view"] == "1m" and row["carrier"] != "all":
            totals.update(
                {k: v for k, v in row.items() if k in {"breach", "became_stale", "failed"}}
            )
    assert totals["breach"] >= 50 and totals["became_stale"] >= 5 and totals["failed"] >= 20
    backlog = [r for r in truth.rows if r["view"] == "15m" and r["kind"] == "sla"]
    assert max(r["breach_ratio"] or 0 for r in backlog if r["warehouse"] == "ams-1") > 0.3
    assert max(r["breach_ratio"] or 0 for r in backlog if r["warehouse"] != "ams-1") < 0.1


def test_restart_from_checkpoint_gives_the_same_windows(
    traffic: tuple[list[RawRecord], list[dict[str, Any]]],
) -> None:
    records = traffic[0][:8000]
    reference_stage = new_stage()
    reference, closed = merge(run(reference_stage, records))

    first = new_stage()
    store = CheckpointStore()
    outs = []
    for i in range(0, 4400, 100):
        out = first.process(records[i : i + 100], now_ms=NOW)
        outs.append(out)
        store.keep([out])
    assert any(k.startswith("ent/") for k in store.data)  # orders mid-lifecycle at the crash
    # crash; the committed offsets lag behind: everything from record 3000 is re-read
    second = new_stage()
    store.restore(second, range(3))
    outs.extend(run(second, records[3000:]))
    results, closed_again = merge(outs)
    assert closed_again == closed
    assert result_rows(results) == result_rows(reference)
    assert breached([first, second], closed) == breached([reference_stage], closed)
    assert sum(o.counts["duplicate"] for o in outs) == 0


def test_three_partitions_on_two_stages_equal_one_stage(
    traffic: tuple[list[RawRecord], list[dict[str, Any]]],
) -> None:
    records = traffic[0]
    one = new_stage()
    reference, closed = merge(run(one, records))
    a, b = new_stage(), new_stage()
    outs = run(a, [r for r in records if r.partition != 2], batch=333)
    outs += run(b, [r for r in records if r.partition == 2], batch=77)
    results, closed_split = merge(outs)
    assert closed_split == closed
    assert result_rows(results) == result_rows(reference)
    assert breached([a, b], closed) == breached([one], closed)
    assert a.open_orders() + b.open_orders() == one.open_orders()
    gauges = Counter[str]()
    for stage in (a, b):
        for carrier, (n, stale) in stage.tracking_gauges().items():
            gauges[carrier + "/n"] += n
            gauges[carrier + "/stale"] += stale
    assert gauges == Counter(
        {
            f"{c}/{x}": v
            for c, (n, s) in one.tracking_gauges().items()
            for x, v in (("n", n), ("stale", s))
        }
    )


def test_memory_per_open_order_is_small(settings: Settings) -> None:
    n = 10_000
    feed = Feed()
    records = [feed.record(f"ord-{10**9 + o}", "order_placed", T0 + o * 10) for o in range(n)]
    records += [feed.record(f"ord-{10**9 + o}", "shipped", T0 + 100_000 + o * 10) for o in range(n)]
    feed.events.clear()
    stage = LogisticsStage(Settings(), "t", 1, live=False)
    stage.partition(0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(0, len(records), 5000):
            stage.process(records[i : i + 5000], now_ms=NOW)
        stage.finish()
        stage.partitions[0].ids.clear()  # de-duplication ids are the window engine's, not ours
        gc.collect()
        per_order = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert stage.open_orders() == n
    assert stage.tracking_gauges() == {"dhl": (n, 0)}
    assert per_order < 1500, per_order  # measured ~730 bytes (entity, id, timer entry)


@pytest.mark.parametrize(("last_event_s", "expired"), [(0, True), (400, False)])
def test_orders_that_never_finish_expire_after_their_last_event(
    settings: Settings, last_event_s: int, expired: bool
) -> None:
    bounded = settings.model_copy(update={"order_expiry_seconds": 600})
    stage = LogisticsStage(bounded, "t", 1, live=False)
    feed = Feed()
    # shipped, then the `delivered` event never comes
    stage.process(feed.steps("o1", [(0, "order_placed"), (10, "shipped")]), now_ms=NOW)
    if last_event_s:
        stage.process([feed.record("o1", "in_transit", T0 + last_event_s * 1000)], now_ms=NOW)
    stage.process([feed.clock(700)], now_ms=NOW)  # watermark 670 s: past 10 + 600, not 400 + 600
    # the clock's own order waits for the watermark to pass its event: one open order more
    assert stage.open_orders() == (1 if expired else 2)
    assert stage.expired_total == (1 if expired else 0)


# ------------------------------------------------------------------ label limits

CARRIERS = tuple(f"carrier-{i:02}" for i in range(12))
WAREHOUSES = tuple(f"wh-{i}" for i in range(9))
LIMITED = 3  # max_label_values: a stage keeps up to 12 per window and partition


def skewed(choices: Sequence[str], seed: str) -> str:
    """A value of `choices`, the first ones likelier, fixed by `seed`."""
    rng = random.Random(zlib.crc32(seed.encode()))
    return rng.choices(choices, weights=[2 ** (len(choices) - i) for i in range(len(choices))])[0]


@pytest.fixture(scope="module")
def label_events(traffic: tuple[list[RawRecord], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The simulated orders with 12 carriers and 9 warehouses; one order in ten changes
    carrier on its way (a breach then counts under its latest event's carrier)."""
    out = []
    for original in {e["event_id"]: e for e in traffic[1][:9000]}.values():
        event = dict(original)
        order = event["order_id"]
        switch = zlib.crc32(order.encode()) % 10 == 0 and event["status"] != "order_placed"
        event["carrier"] = skewed(CARRIERS, order + ("switched" if switch else ""))
        event["warehouse"] = skewed(WAREHOUSES, order + "w")
        out.append(event)
    return out


def placed(events: Sequence[dict[str, Any]], partitions: int) -> list[RawRecord]:
    return place_events(events, "order_id", partitions)


def folded_truth(rows: list[dict[str, Any]], limit: int) -> dict[RowKey, dict[str, Any]]:
    """The ground truth's rows with the README's rule applied to each view: the top
    `limit` carriers (orders decided + deliveries + orders gone stale, one set for every
    row kind) and warehouses (orders decided); the rest summed into `other`."""
    views: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for row in rows:
        views.setdefault((row["view"], row["start_ms"], row["end_ms"]), []).append(row)
    out: list[dict[str, Any]] = []
    for (view, start, end), vrows in views.items():
        carriers: Counter[str] = Counter()
        warehouses: Counter[str] = Counter()
        for r in vrows:
            if r["kind"] == "sla" and r["carrier"] != "all":
                carriers[r["carrier"]] += r["within"] + r["breach"]
                warehouses[r["warehouse"]] += r["within"] + r["breach"]
            elif r["kind"] == "delivery":
                carriers[r["carrier"]] += r["delivered"] + r["failed"]
            elif r["kind"] == "tracking":
                carriers[r["carrier"]] += r["became_stale"]
        keep_c, keep_w = top_by_weight(carriers, limit), top_by_weight(warehouses, limit)
        sums: dict[tuple[str, str, str], Counter[str]] = {}
        for r in vrows:
            carrier = r["carrier"] if r["carrier"] in keep_c | {"all"} else "other"
            warehouse = r.get("warehouse", "")
            warehouse = warehouse if warehouse in keep_w | {""} else "other"
            counts = {
                k: v for k, v in r.items() if isinstance(v, int) and k not in {"start_ms", "end_ms"}
            }
            sums.setdefault((r["kind"], warehouse, carrier), Counter()).update(counts)
        for (kind, warehouse, carrier), c in sums.items():
            if kind == "sla":
                out.append(
                    truth_sla_row(view, start, end, warehouse, carrier, c["within"], c["breach"])
                )
            elif kind == "delivery":
                out.append(truth_delivery_row(view, start, end, carrier, c))
            else:
                out.append(truth_tracking_row(view, start, end, carrier, c["became_stale"]))
    return by_key(out)


def label_run(
    records: list[RawRecord], partitions: int, batch: int, through: int
) -> dict[RowKey, dict[str, Any]]:
    settings = SIM_SETTINGS.model_copy(update={"max_label_values": LIMITED})
    stage = LogisticsStage(settings, "t", partitions, live=False)
    outs = [
        stage.process(records[i : i + batch], now_ms=NOW) for i in range(0, len(records), batch)
    ]
    outs.append(stage.finish(through))
    merger = new_logistics_merger(settings)
    return result_rows(merger.apply([m for out in outs for m in out.partials]).results)


def through_of(events: Sequence[dict[str, Any]]) -> int:
    """A final watermark past every event and deadline: the same for every layout."""
    last = max(parse_event_time_ms(e["occurred_at"]) for e in events)
    return last - last % 60_000 + 120_000


@pytest.mark.parametrize(("partitions", "batch"), [(1, 500), (3, 250), (5, 41)])
def test_label_limits_give_the_top_n_of_every_view_in_any_layout(
    label_events: list[dict[str, Any]], partitions: int, batch: int
) -> None:
    through = through_of(label_events)
    got = label_run(placed(label_events, partitions), partitions, batch, through)
    truth = logistics_truth(
        label_events,
        through,
        views=[("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60)],
        ship_sla_ms=48_000,
        tracking_stale_ms=24_000,
    )
    want = folded_truth(truth.rows, LIMITED)
    assert got.keys() == want.keys()
    for key, row in want.items():
        mine = {k: v for k, v in got[key].items() if k != "sample_event_ids"}
        assert mine == pytest.approx(row, abs=1e-9), key
    # the data set exercises the fold, for every row kind
    for kind in ("sla", "delivery", "tracking"):
        assert any(k[2] == kind and k[4] == "other" for k in got), kind
    assert any(k[2] == "sla" and k[3] == "other" for k in got)


def test_label_limits_are_the_same_after_a_split_and_a_restart(
    label_events: list[dict[str, Any]],
) -> None:
    through = through_of(label_events)
    records = placed(label_events, 3)
    reference = label_run(records, 3, 500, through)
    settings = SIM_SETTINGS.model_copy(update={"max_label_values": LIMITED})
    outs = []
    for mine in ({0, 1}, {2}):  # two workers: partition 2 alone
        stage = LogisticsStage(settings, "t", 3, live=False)
        part = [r for r in records if r.partition in mine]
        outs += [stage.process(part, now_ms=NOW), stage.finish(through)]
    merger = new_logistics_merger(settings)
    assert result_rows(merger.apply([m for o in outs for m in o.partials]).results) == reference
    # a crash after 60 %, restored from its checkpoints, resumed from 40 % (repeats skipped)
    first = LogisticsStage(settings, "t", 3, live=False)
    first.persist = True
    store = CheckpointStore()
    cut, resume = len(records) * 6 // 10, len(records) * 4 // 10
    outs = [first.process(records[i : i + 97], now_ms=NOW) for i in range(0, cut, 97)]
    store.keep(outs)
    assert first.open_orders() > 100  # the crash falls in the middle of lifecycles
    second = LogisticsStage(settings, "t", 3, live=False)
    store.restore(second, range(3))
    outs += [
        second.process(records[i : i + 211], now_ms=NOW) for i in range(resume, len(records), 211)
    ]
    outs.append(second.finish(through))
    merger = new_logistics_merger(settings)
    assert result_rows(merger.apply([m for o in outs for m in o.partials]).results) == reference
