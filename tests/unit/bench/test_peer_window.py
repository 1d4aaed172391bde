"""The bench peers' per-event work (expmon.bench.peers.window) against truth computed here."""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from expmon.bench.peers.common import EventCount, WindowLog, serve_event_count
from expmon.bench.peers.window import (
    APDEX_T_MS,
    GRACE_MS,
    SLOW_MS,
    WINDOW_MS,
    Decoder,
    Deduplicator,
    WindowFigures,
    event_time_ms,
    summarize,
    window_key,
    window_start,
)
from expmon.bench.run import generate_events, parse_events_total
from expmon.local.procs import free_port
from schemas import codec
from schemas.events import Event

START_MS = 1_763_000_000_000


@pytest.mark.parametrize(
    ("t_ms", "start"),
    [
        (0, 0),
        (59_999, 0),
        (60_000, 60_000),
        (START_MS + 1, START_MS - START_MS % 60_000),
    ],
)
def test_window_start(t_ms: int, start: int) -> None:
    assert window_start(t_ms) == start


def test_decoder_takes_single_and_batch_records_and_counts_rejects() -> None:
    events = list(generate_events(5, seed=4, start_ms=START_MS))
    decoder = Decoder()
    one = decoder.decode(codec.dumps(events[0]), now_ms=START_MS + 60_000)
    assert [e["event_id"] for e in one] == [events[0]["event_id"]]
    assert event_time_ms(one[0]) == events[0]["occurred_at"]
    batch = decoder.decode(codec.dumps(events), now_ms=START_MS + 60_000)
    assert [e["event_id"] for e in batch] == [e["event_id"] for e in events]
    assert decoder.rejected == 0
    assert decoder.decode(b"not json", now_ms=START_MS) == []
    bad = dict(events[1], load_ms=-5)
    assert decoder.decode(codec.dumps(bad), now_ms=START_MS + 60_000) == []
    assert decoder.rejected == 2


def test_deduplicator_forgets_only_past_the_horizon() -> None:
    dedup = Deduplicator(horizon_ms=1_000)
    assert dedup.first_seen("a", 0)
    assert not dedup.first_seen("a", 10)
    assert dedup.first_seen("b", 999)
    assert dedup.first_seen("c", 1_000)  # rotates: a and b now in the older generation
    assert not dedup.first_seen("a", 1_500)
    assert not dedup.first_seen("b", 1_999)
    assert dedup.first_seen("d", 2_000)  # rotates again: a and b forgotten
    assert dedup.first_seen("a", 2_001)
    assert not dedup.first_seen("c", 2_002)  # c was in the recent generation
    assert len(dedup) == 3  # c (older); d, a (recent)


def exact_quantile_bounds(values: list[float], q: float) -> tuple[float, float]:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    return ordered[math.floor(rank)], ordered[math.ceil(rank)]


def run_job(events: list[Event]) -> list[dict[str, Any]]:
    """The peers' pipeline with a plain watermark (latest event time - grace)."""
    dedup: dict[str, Deduplicator] = defaultdict(Deduplicator)
    open_windows: dict[tuple[str, int], WindowFigures] = {}
    emitted = []
    watermark = -(2**62)
    for event in events:
        key, t = window_key(event), event_time_ms(event)
        if not dedup[key].first_seen(event["event_id"], t):
            continue
        watermark = max(watermark, t - GRACE_MS)
        start = window_start(t)
        if start + WINDOW_MS > watermark:
            open_windows.setdefault((key, start), WindowFigures()).add(event)
        for wkey, wstart in sorted(open_windows):
            if wstart + WINDOW_MS <= watermark:
                emitted.append(summarize(wkey, wstart, open_windows.pop((wkey, wstart))))
    emitted += [summarize(k, s, f) for (k, s), f in sorted(open_windows.items())]
    return emitted


def test_window_figures_match_truth_with_duplicates_in_the_stream() -> None:
    events = [
        {**e, "_t": e["occurred_at"]}
        for e in generate_events(6_000, seed=11, start_ms=START_MS, rate_per_s=40.0)
    ]
    stream = events + events[::7]  # repeats, later in the stream
    summaries = run_job(stream)

    truth: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for e in events:
        truth[(e["page"], e["device"], e["occurred_at"] // 60_000 * 60_000)].append(e["load_ms"])
    assert len(summaries) == len(truth)  # each window emitted once
    for s in summaries:
        loads = truth[(s["page"], s["device"], s["start_ms"])]
        assert s["count"] == len(loads)
        assert s["end_ms"] == s["start_ms"] + 60_000
        assert s["slow_ratio"] == pytest.approx(sum(v > SLOW_MS for v in loads) / len(loads))
        satisfied = sum(v <= APDEX_T_MS for v in loads)
        tolerating = sum(APDEX_T_MS < v <= 4 * APDEX_T_MS for v in loads)
        assert s["apdex"] == pytest.approx((satisfied + tolerating / 2) / len(loads))
        for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            low, high = exact_quantile_bounds(loads, q)
            assert low * 0.98 <= s[name] <= high * 1.02, (name, s[name], low, high)


def test_figures_merge_and_survive_json() -> None:
    events = list(generate_events(400, seed=5, start_ms=START_MS))
    whole, left, right = WindowFigures(), WindowFigures(), WindowFigures()
    for i, e in enumerate(events):
        whole.add(e)
        (left if i % 2 else right).add(e)
    merged = left.merge(right)
    again = WindowFigures.from_dict(codec.loads(codec.dumps(merged.to_dict())))
    assert summarize("home|mobile", 0, again) == summarize("home|mobile", 0, whole)
    assert whole.count == 400


def test_an_event_without_a_load_time_is_not_a_page_load_figure() -> None:
    figures = WindowFigures().add({"page": "home", "device": "mobile", "lcp_ms": 900.0})
    summary = summarize("home|mobile", 0, figures)
    assert summary["count"] == 0
    assert summary["p50"] is None and summary["apdex"] is None


def test_event_count_is_served_to_the_benchs_filtered_scrape() -> None:
    """The bench asks for `?name[]=expmon_events_total`: a collector without describe()
    is left out of that page (the first peers run counted nothing)."""
    port = free_port()
    count = serve_event_count(port, "t1")
    count.events += 1234
    count.windows = 5
    page = (
        urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics?name[]=expmon_events_total", timeout=5
        )
        .read()
        .decode()
    )
    assert parse_events_total(page, "t1") == 1234.0
    assert "expmon_bench_windows_total" not in page
    whole = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'expmon_bench_windows_total{topic="t1"} 5.0' in whole


def test_window_log_counts_and_writes_each_window(tmp_path: Path) -> None:
    count = EventCount("t")
    out = tmp_path / "windows.jsonl"
    log = WindowLog(count, str(out))
    figures = WindowFigures().add({"page": "home", "device": "mobile", "load_ms": 4000.0})
    log.emit(summarize("home|mobile", 60_000, figures))
    log.emit(summarize("cart|desktop", 0, WindowFigures()))
    WindowLog(count, None).emit({"page": "x"})
    assert count.windows == 3
    lines = [codec.loads(line) for line in out.read_bytes().splitlines()]
    assert [(r["page"], r["start_ms"], r["count"], r["slow_ratio"]) for r in lines] == [
        ("home", 60_000, 1, 1.0),
        ("cart", 0, 0, None),
    ]
