"""Stage 1 + merge, no broker: outcomes, dead letters, determinism, restart, worker count."""

import dataclasses
import random
from collections import Counter
from typing import Any

import pytest

from expmon.engine.labels import LabelLimiter
from expmon.engine.merge import ViewResult
from expmon.engine.sketch import exact_quantile
from expmon.engine.stage import RawRecord, StageOutput
from expmon.families.page_load import (
    LOAD_BUCKETS_SECONDS,
    LoadHistogram,
    PageLoadAccumulator,
    PageLoadStage,
    PageLoadSummary,
    new_page_load_merger,
    summarize,
)
from expmon.kafka.partition import partition_for
from expmon.settings import Settings
from expmon.sim.truth.page_load import page_load_truth
from schemas import codec
from tests.unit.helpers import CheckpointStore

T0 = 1_763_000_040_000
PAGES = ("/", "/product/:id", "/cart")


def event(i: int, t: int, load_ms: float, page: str = "/", **over: Any) -> dict[str, Any]:
    ev = {
        "event_id": f"e{i}",
        "occurred_at": t,
        "schema_version": 1,
        "session_id": f"s{i % 17}",
        "device": ("mobile", "desktop")[i % 2],
        "platform": "web",
        "region": ("eu-west", "us-east")[i % 3 == 0],
        "page": page,
        "load_ms": load_ms,
    }
    ev.update(over)
    return ev


def traffic(n: int = 3000, partitions: int = 3, seed: int = 1) -> list[RawRecord]:
    """In-order-ish traffic with jitter within lateness, spread over partitions."""
    rng = random.Random(seed)
    offsets = [0] * partitions
    records = []
    for i in range(n):
        t = T0 + i * 100 + rng.randint(-3000, 3000)
        p = i % partitions
        value = codec.dumps(event(i, t, rng.lognormvariate(6.8, 0.7), PAGES[i % 3]))
        records.append(RawRecord(p, offsets[p], None, value))
        offsets[p] += 1
    return records


def run(
    stage: PageLoadStage, batches: list[list[RawRecord]], finish: bool = True
) -> list[StageOutput]:
    outs = [stage.process(batch, now_ms=T0) for batch in batches]
    if finish:
        outs.append(stage.finish())
    return outs


def merged(outputs: list[StageOutput], settings: Settings) -> list[ViewResult]:
    merger = new_page_load_merger(settings)
    return merger.apply([m for out in outputs for m in out.partials]).results


def results_table(results: list[ViewResult]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    return {(r.view, r.end_ms): r.rows for r in results}


@pytest.fixture
def settings() -> Settings:
    return Settings()


def test_known_mix_outcomes_and_dead_letters(settings: Settings) -> None:
    stage = PageLoadStage(settings, "page-loads", 1, live=False)
    good = [event(i, T0 + i * 1000, 100 + i) for i in range(5)]
    batch_record = codec.dumps([event(10 + i, T0 + 6000 + i, 900) for i in range(3)])
    late = event(20, T0 - 60_000, 100)  # after watermark T0+4000-30000
    values = [codec.dumps(e) for e in good] + [
        batch_record,
        codec.dumps(good[0]),  # duplicate
        codec.dumps(late),
        b"{not json",
        codec.dumps(event(30, T0, -5)),
        codec.dumps(event(31, T0, 10, device="fridge")),
        codec.dumps({k: v for k, v in event(32, T0, 10).items() if k != "page"}),
        codec.dumps(event(33, 0, 10)),
        codec.dumps(event(34, T0, "slow")),
        b"[" + b" " * 1_000_001 + b"]",
    ]
    out = stage.process([RawRecord(0, i, b"k", v) for i, v in enumerate(values)], now_ms=T0)
    assert out.counts == {"accepted": 8, "invalid": 7, "late": 1, "duplicate": 1}
    reasons = sorted(d.reason for d in out.dead_letters)
    assert reasons == sorted(
        [
            "late",
            "not_json",
            "negative_value:load_ms",
            "unknown_enum:device",
            "missing_field:page",
            "absurd_timestamp",
            "wrong_type:load_ms",
            "oversize",
        ]
    )
    not_json = next(d for d in out.dead_letters if d.reason == "not_json")
    assert not_json.value == b"{not json"
    assert dict(not_json.headers)["expmon-source-offset"] == b"8"


def test_batched_record_with_one_bad_event_keeps_the_good_ones(settings: Settings) -> None:
    stage = PageLoadStage(settings, "page-loads", 1, live=False)
    value = codec.dumps([event(1, T0, 10), event(2, T0, -1), 7])
    out = stage.process([RawRecord(0, 0, None, value)], now_ms=T0)
    assert out.counts == {"accepted": 1, "invalid": 2, "late": 0, "duplicate": 0}
    headers = [dict(d.headers) for d in out.dead_letters]
    assert sorted(h["expmon-batch-index"] for h in headers) == [b"1", b"2"]
    assert b"_t" not in out.dead_letters[0].value


def test_closed_windows_match_exact_quantiles(settings: Settings) -> None:
    records = traffic()
    stage = PageLoadStage(settings, "page-loads", 3, live=False)
    outs = run(stage, [records])
    assert outs[0].counts["accepted"] == len(records)
    results = results_table(merged(outs, settings))
    loads: dict[tuple[int, str, str], list[float]] = {}
    for rec in records:
        ev = codec.loads(rec.value or b"")
        start = ev["occurred_at"] - ev["occurred_at"] % 60_000
        loads.setdefault((start + 60_000, ev["page"], ev["device"]), []).append(ev["load_ms"])
    checked = 0
    for (end, page, device), values in loads.items():
        rows = results[("1m", end)]
        row = next(
            r for r in rows if (r["page"], r["device"], r["region"]) == (page, device, "all")
        )
        ordered = sorted(values)
        assert row["count"] == len(values)
        for q, name in ((0.95, "p95"), (0.99, "p99"), (0.5, "p50")):
            assert abs(row[name] - exact_quantile(ordered, q)) <= 0.01 * exact_quantile(ordered, q)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("batch_size", [1, 7, 500])
def test_results_independent_of_batching_and_interleaving(
    settings: Settings, batch_size: int
) -> None:
    records = traffic(1500)
    reference = results_table(
        merged(run(PageLoadStage(settings, "t", 3, live=False), [records]), settings)
    )
    # Same per-partition order, different interleaving across partitions and batch cuts.
    shuffled = sorted(records, key=lambda r: (r.offset // 5, -r.partition))
    batches = [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]
    got = results_table(merged(run(PageLoadStage(settings, "t", 3, live=False), batches), settings))
    assert got == reference


def test_one_worker_equals_three_workers(settings: Settings) -> None:
    records = traffic(2000, partitions=6)
    one = run(PageLoadStage(settings, "t", 6, live=False), [records])
    three = []
    for worker in range(3):
        mine = [r for r in records if r.partition % 3 == worker]
        three.extend(run(PageLoadStage(settings, "t", 6, live=False), [mine]))
    assert results_table(merged(three, settings)) == results_table(merged(one, settings))


def test_restart_from_checkpoint_gives_the_same_windows(settings: Settings) -> None:
    records = traffic(2000)
    reference = results_table(
        merged(run(PageLoadStage(settings, "t", 3, live=False), [records]), settings)
    )

    first = PageLoadStage(settings, "t", 3, live=False)
    store = CheckpointStore()
    half = records[:1100]
    outs = []
    for i in range(0, len(half), 100):
        out = first.process(half[i : i + 100], now_ms=T0)
        outs.append(out)
        store.keep([out])
    # crash; the committed input offsets lag behind: everything from record 600 is re-read
    second = PageLoadStage(settings, "t", 3, live=False)
    store.restore(second, range(3))
    outs.extend(run(second, [records[600:]]))
    assert results_table(merged(outs, settings)) == reference
    assert sum(o.counts["duplicate"] for o in outs) == 0


def test_merger_ignores_redelivered_partials(settings: Settings) -> None:
    outs = run(PageLoadStage(settings, "t", 3, live=False), [traffic(1200)])
    messages = [m for out in outs for m in out.partials]
    merger = new_page_load_merger(settings)
    first = merger.apply(messages)
    again = merger.apply(messages)
    assert first.results and not again.results
    assert again.ignored_partials == sum(m["kind"] == "partial" for m in messages)


def test_merger_waits_for_every_partition(settings: Settings) -> None:
    outs = run(PageLoadStage(settings, "t", 3, live=False), [traffic(1200)])
    messages = [m for out in outs for m in out.partials if m.get("partition") != 2]
    assert new_page_load_merger(settings).apply(messages).results == []


def test_an_idle_partition_is_shown_early_without_moving_its_watermark(
    settings: Settings,
) -> None:
    stage = PageLoadStage(settings, "t", 2, live=True)
    stage.partition(1)  # assigned, never receives anything
    busy = [RawRecord(0, i, None, codec.dumps(event(i, T0 + i * 1000, 100))) for i in range(200)]
    out = stage.process(busy, now_ms=T0)
    merger = new_page_load_merger(settings)
    assert merger.apply(out.partials).results == []  # partition 1 holds the merge back
    frontier = T0 + 170_000
    tick = stage.tick({1: frontier})
    assert stage.partitions[1].watermark_ms is None  # only data moves a watermark
    progress = [m for m in tick.partials if m["kind"] == "progress"]
    assert progress == [
        {
            "kind": "progress",
            "family": "page_load",
            "partition": 1,
            "partitions": 2,
            "closed_through": None,
            "provisional_through": frontier - frontier % 60_000,
        }
    ]
    results = merger.apply(tick.partials).results
    assert {r.end_ms - T0 for r in results if r.view == "1m"} == {60_000, 120_000}
    assert stage.tick({1: frontier}).partials == []  # nothing new: nothing sent again


def test_an_event_for_a_window_shown_early_is_a_correction_not_late(settings: Settings) -> None:
    """Partition 1 looked idle and was shown; its next event is old but not late."""
    live = PageLoadStage(settings, "t", 2, live=True)
    records = [RawRecord(0, i, None, codec.dumps(event(i, T0 + i * 1000, 100))) for i in range(200)]
    records.append(RawRecord(1, 0, None, codec.dumps(event(900, T0 + 5_000, 7000))))
    merger = new_page_load_merger(settings)
    outs = [live.process(records[:200], now_ms=T0), live.tick({1: T0 + 170_000})]
    shown = merger.apply([m for o in outs for m in o.partials]).results
    first = next(r for r in shown if r.view == "1m" and r.end_ms == T0 + 60_000)
    assert first.revision == 0 and sum(row["count"] for row in first.rows) == 60 * 2
    late = live.process(records[200:], now_ms=T0)
    assert late.counts["late"] == 0 and late.counts["accepted"] == 1
    more = [RawRecord(1, 1, None, codec.dumps(event(901, T0 + 200_000, 100)))]
    closing = live.process(more, now_ms=T0)
    corrected = merger.apply(late.partials + closing.partials).results
    again = [r for r in corrected if r.view == "1m" and r.end_ms == T0 + 60_000]
    assert [r.revision for r in again] == [1]
    assert sum(row["count"] for row in again[0].rows) == 61 * 2  # row per region + `all`
    # the corrected view equals a replay of the same records
    replay = PageLoadStage(settings, "t", 2, live=False)
    outs = [replay.process(records + more, now_ms=T0), replay.finish()]
    replayed = new_page_load_merger(settings).apply([m for o in outs for m in o.partials]).results
    want = next(r for r in replayed if r.view == "1m" and r.end_ms == T0 + 60_000)
    assert again[0].rows == want.rows


def test_summary_rows_carry_every_field_in_order() -> None:
    acc = PageLoadAccumulator()
    acc.add(4000.0, 3000, 1800, "e1")
    row = summarize("5m", T0, T0 + 300_000, ("/", "mobile", "eu"), acc).to_dict()
    assert list(row) == [f.name for f in dataclasses.fields(PageLoadSummary)]
    assert row["sample_event_ids"] == ["e1"] and row["slow_ratio"] == 1.0


def test_a_bounce_shown_early_that_did_not_happen_is_taken_back(settings: Settings) -> None:
    """Partition 1's session looked ended (a bounce) in the look-ahead; its next view came."""
    bounce_ms = int(settings.bounce_seconds * 1000)
    stage = PageLoadStage(settings, "t", 2, live=True)
    merger = new_page_load_merger(settings)
    landing = RawRecord(1, 0, None, codec.dumps(event(1, T0 + 1000, 100, session_id="x")))
    busy = [
        RawRecord(0, i, None, codec.dumps(event(100 + i, T0 + i * 10_000, 100)))
        for i in range(1, (bounce_ms + 240_000) // 10_000)
    ]
    outs = [stage.process([landing, *busy], now_ms=T0)]
    outs.append(stage.tick({1: T0 + bounce_ms + 180_000}))
    shown = merger.apply([m for o in outs for m in o.partials]).results
    end = T0 + bounce_ms + 60_000 - (T0 + bounce_ms) % 60_000
    bounce_rows = [r for res in shown if res.view == "1m" and res.end_ms == end for r in res.rows]
    assert any(r["page"] == "/" and r["bounces"] for r in bounce_rows)
    # the session's second view, before its deadline: no bounce after all
    second = [
        RawRecord(1, 1, None, codec.dumps(event(2, T0 + 120_000, 100, session_id="x"))),
        RawRecord(1, 2, None, codec.dumps(event(3, T0 + bounce_ms + 240_000, 100))),
    ]
    later = stage.process(second, now_ms=T0)
    assert later.counts["accepted"] == 2 and later.counts["late"] == 0
    corrected = merger.apply(later.partials).results
    replay = PageLoadStage(settings, "t", 2, live=False)
    routs = [replay.process([landing, *busy, *second], now_ms=T0)]
    want = {
        r.record_key: r.rows
        for r in new_page_load_merger(settings)
        .apply([m for o in routs for m in o.partials])
        .results
    }
    final = {r.record_key: r.rows for r in shown}
    final.update({r.record_key: r.rows for r in corrected})
    assert any(r.revision for r in corrected)
    for key, rows in want.items():
        assert final[key] == rows, key


def many_pages(n: int, partitions: int, seed: int = 4) -> list[RawRecord]:
    """Far more distinct pages than the limit, with a long tail, on `partitions`."""
    rng = random.Random(seed)
    offsets = [0] * partitions
    records = []
    for i in range(n):
        page = f"/p/{min(int(rng.paretovariate(0.8)), 300)}"
        region = f"r{min(int(rng.paretovariate(1.0)), 40)}"
        p = rng.randrange(partitions)
        value = codec.dumps(event(i, T0 + i * 50, 100 + i % 900, page, region=region))
        records.append(RawRecord(p, offsets[p], None, value))
        offsets[p] += 1
    return records


def labelled_rows(outs: list[StageOutput], settings: Settings) -> dict[str, list[Any]]:
    results = new_page_load_merger(settings).apply([m for o in outs for m in o.partials]).results
    return {r.record_key: r.rows for r in results}


def test_label_limits_are_the_same_across_workers_restarts_and_batching(
    settings: Settings, checkpoint_store: Any
) -> None:
    limited = settings.model_copy(update={"max_pages": 8, "max_regions": 4})
    records = many_pages(12_000, 3)
    reference = labelled_rows(
        run(
            PageLoadStage(limited, "t", 3, live=False),
            [records[i : i + 500] for i in range(0, len(records), 500)],
        ),
        limited,
    )
    # every view shows at most N pages and N regions plus `other`
    for rows in reference.values():
        assert len({r["page"] for r in rows} - {"other"}) <= 8
        assert len({r["region"] for r in rows} - {"other", "all"}) <= 4
    assert any(r["page"] == "other" for rows in reference.values() for r in rows)
    # two workers (partition 2 alone), other batch sizes
    split = run(
        PageLoadStage(limited, "t", 3, live=False), [[r for r in records if r.partition != 2]]
    )
    split += run(
        PageLoadStage(limited, "t", 3, live=False), [[r for r in records if r.partition == 2]]
    )
    assert labelled_rows(split, limited) == reference
    # a crash after 60 %, restored from the checkpoints, resumed from 40 % (repeats skipped)
    first = PageLoadStage(limited, "t", 3, live=False)
    first.persist = True
    cut, resume = len(records) * 6 // 10, len(records) * 4 // 10
    outs = run(first, [records[i : i + 97] for i in range(0, cut, 97)], finish=False)
    checkpoint_store.keep(outs)
    second = PageLoadStage(limited, "t", 3, live=False)
    checkpoint_store.restore(second, range(3))
    outs += run(second, [records[i : i + 211] for i in range(resume, len(records), 211)])
    assert labelled_rows(outs, limited) == reference


def top(weights: Counter[str], limit: int) -> set[str]:
    return set(sorted(weights, key=lambda v: (-weights[v], v))[:limit])


def folded_truth(rows: list[dict[str, Any]], pages: int, regions: int) -> dict[Any, Any]:
    """(view, end, page, device, region) -> (loads, slow loads) of the ground truth with
    the README's rule applied per view: top pages and regions by loads, ties by name."""
    views: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        views.setdefault((row["view"], row["end_ms"]), []).append(row)
    out: dict[Any, list[int]] = {}
    for (view, end), vrows in views.items():
        by_page: Counter[str] = Counter()
        by_region: Counter[str] = Counter()
        for r in vrows:
            if r["region"] != "all":
                by_page[r["page"]] += r["count"]
                by_region[r["region"]] += r["count"]
        keep_p, keep_r = top(by_page, pages), top(by_region, regions) | {"all"}
        for r in vrows:
            page = r["page"] if r["page"] in keep_p else "other"
            region = r["region"] if r["region"] in keep_r else "other"
            figures = out.setdefault((view, end, page, r["device"], region), [0, 0])
            figures[0] += r["count"]
            figures[1] += round(r["slow_ratio"] * r["count"])
    return {key: tuple(v) for key, v in out.items()}


def stage_figures(results: list[ViewResult]) -> dict[Any, Any]:
    return {
        (res.view, res.end_ms, r["page"], r["device"], r["region"]): (
            r["count"],
            round(r["slow_ratio"] * r["count"]),
        )
        for res in results
        for r in res.rows
        if "kind" not in r
    }


@pytest.mark.parametrize(("partitions", "batch"), [(1, 1000), (3, 333), (5, 51)])
def test_label_limits_give_the_top_n_of_every_view_in_any_layout(
    settings: Settings, partitions: int, batch: int
) -> None:
    """15 pages and 3 regions, 5 and 2 shown: under the stage's caps (20 and 8), so every
    layout gives the ground truth's top N per view. No session ends before the last
    window (bounce after 11 days): the weights are the loads the truth counts."""
    limited = settings.model_copy(
        update={"max_pages": 5, "max_regions": 2, "bounce_seconds": 10**6}
    )
    rng = random.Random(8)
    events = [
        event(
            i, T0 + i * 40 + rng.randint(-2000, 2000), rng.lognormvariate(7.6, 0.6),
            f"/p/{min(int(rng.paretovariate(0.6)), 15)}", region=rng.choice(("r1", "r2", "r3")),
            session_id=f"s{i % 97}",
        )
        for i in range(9000)
    ]  # fmt: skip
    offsets = [0] * partitions
    records = []
    for ev in events:
        p = partition_for(ev["session_id"], partitions)
        records.append(RawRecord(p, offsets[p], ev["session_id"].encode(), codec.dumps(ev)))
        offsets[p] += 1
    stage = PageLoadStage(limited, "t", partitions, live=False)
    outs = [stage.process(records[i : i + batch], now_ms=T0) for i in range(0, len(records), batch)]
    last = max(ev["occurred_at"] for ev in events)
    outs.append(stage.finish(last - last % 60_000 + 60_000))
    merger = new_page_load_merger(limited)
    got = stage_figures(merger.apply([m for o in outs for m in o.partials]).results)
    assert merger.final_through is not None
    truth = [r for r in page_load_truth(events) if r["end_ms"] <= merger.final_through]
    assert got == folded_truth(truth, 5, 2)
    assert {key[2] for key in got} > {"other"} and "other" in {key[4] for key in got}


def test_a_client_clock_far_ahead_is_clock_skew_and_changes_nothing_else(
    settings: Settings,
) -> None:
    stamp = T0 + 10_000  # when the broker took the records
    ahead = event(1, stamp + 20 * 3_600_000, 100)  # inside max_future, 20 h ahead
    on_time = [event(2 + i, T0 + i * 1000, 100) for i in range(5)]
    records = [
        RawRecord(0, 0, None, codec.dumps(on_time[0]), stamp),
        RawRecord(0, 1, None, codec.dumps(ahead), stamp),
        *[RawRecord(0, 2 + i, None, codec.dumps(e), stamp) for i, e in enumerate(on_time[1:])],
    ]
    stage = PageLoadStage(settings, "t", 1, live=False)
    out = stage.process(records, now_ms=stamp)
    assert out.counts == {"accepted": 5, "invalid": 1, "late": 0, "duplicate": 0}
    [letter] = out.dead_letters
    assert letter.reason == "clock_skew"
    assert codec.loads(letter.value) == ahead  # as it was sent
    assert stage.partitions[0].max_event_ms == T0 + 4000  # the skewed event moved nothing


@pytest.mark.parametrize("reason", ["late", "clock_skew"])
def test_set_aside_events_of_an_array_carry_their_batch_index(
    settings: Settings, reason: str
) -> None:
    stamp = T0 + 600_000
    stage = PageLoadStage(settings, "t", 1, live=False)
    stage.process([RawRecord(0, 0, None, codec.dumps(event(0, T0 + 300_000, 100)), stamp)])
    odd = T0 if reason == "late" else stamp + 3_600_000
    batch = [event(1, T0 + 300_500, 100), event(2, odd, 100), event(3, T0 + 301_000, 100)]
    out = stage.process([RawRecord(0, 1, None, codec.dumps(batch), stamp)])
    [letter] = out.dead_letters
    assert letter.reason == reason
    assert dict(letter.headers)["expmon-batch-index"] == b"1"
    assert codec.loads(letter.value) == batch[1]


def test_idle_partitions_follow_the_busiest_and_lead_only_when_all_are_idle(
    settings: Settings,
) -> None:
    """A worker starts on empty topics: nothing is emitted while no partition has data,
    an idle partition never runs ahead of the busiest partition's data, and only when
    every partition is idle does the frontier (the wall clock) lead."""
    stage = PageLoadStage(settings, "t", 2, live=True)
    merger = new_page_load_merger(settings)
    far = T0 + 3_600_000
    results = merger.apply(stage.tick({0: far, 1: far}).partials).results
    assert merger.final_through is None and results == []  # no data anywhere yet
    records = [
        RawRecord(0, i, None, codec.dumps(event(i, T0 + i * 1000, 100 + i))) for i in range(400)
    ]
    out = stage.process(records, now_ms=T0)
    results += merger.apply(out.partials).results
    # partition 1 idle (shown far ahead): it follows partition 0's data
    assert merger.final_through == stage.partitions[0].closed_through_ms
    results += merger.apply(stage.tick({0: far, 1: far}).partials).results
    assert merger.final_through == far  # both idle: the frontier leads (timers fire)
    replay = PageLoadStage(settings, "t", 2, live=False)
    replayed = new_page_load_merger(settings).apply(
        [m for o in (replay.process(records, now_ms=T0), replay.finish(far)) for m in o.partials]
    )
    want = {r.record_key: r.rows for r in replayed.results}
    got = {r.record_key: r.rows for r in results}
    assert got == want


# (page, device, load ms) observed in order, two pages admitted process-wide
@pytest.mark.parametrize(
    ("loads", "want"),
    [
        ([("/a", "mobile", 90.0), ("/a", "mobile", 2000.0), ("/a", "desktop", 31_000.0)],
         {("/a", "mobile"): ({0: 1, 7: 1}, 2090.0), ("/a", "desktop"): ({15: 1}, 31_000.0)}),
        # a third page is `other` from then on; the first two keep their place
        ([("/a", "mobile", 100.0), ("/b", "mobile", 100.0), ("/c", "mobile", 100.0),
          ("/d", "tablet", 5000.0), ("/a", "mobile", 100.1), ("/c", "mobile", 1.0)],
         {("/a", "mobile"): ({0: 1, 1: 1}, 200.1), ("/b", "mobile"): ({0: 1}, 100.0),
          ("other", "mobile"): ({0: 2}, 101.0), ("other", "tablet"): ({10: 1}, 5000.0)}),
    ],
)  # fmt: skip
def test_load_histogram_counts_by_bounded_page(
    loads: list[tuple[str, str, float]], want: dict[tuple[str, str], tuple[dict[int, int], float]]
) -> None:
    hist = LoadHistogram(LabelLimiter(2))
    for page, device, load_ms in loads:
        hist.observe(page, device, load_ms)
    buckets = len(LOAD_BUCKETS_SECONDS) + 1
    assert hist.counts == {
        key: [counts.get(i, 0) for i in range(buckets)] for key, (counts, _sum) in want.items()
    }
    assert hist.sums_ms == pytest.approx({key: total for key, (_c, total) in want.items()})
