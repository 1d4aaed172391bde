"""`expmon bench`, the pure parts: generated events, datasets, timing math, table, VmHWM."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from expmon.bench.run import (
    BARE,
    BATCH,
    BYTEWAX,
    COLUMNS,
    CONFLUENT,
    FAUST,
    PIPELINE,
    PIPELINE_1_OF_2,
    PIPELINE_2,
    POLL_SECONDS,
    POLL_SLOW_SECONDS,
    QUIX,
    SINGLE,
    CpuSample,
    ScenarioResult,
    bench_runs,
    build_datasets,
    cpu_figures,
    cpu_sample,
    dataset_specs,
    fill_ratios,
    free_ports,
    generate_events,
    machine_info,
    measure,
    measured_window,
    missing_package,
    next_poll_interval,
    parse_events_total,
    parse_machine_cpu_s,
    parse_process_cpu_s,
    processes_count,
    reference_ratio,
    solo_tail_seconds,
    table_rows,
)
from expmon.bench.scenarios import even_partitions
from expmon.memory import parse_vm_hwm_kb, read_vm_hwm_kb
from expmon.settings import Settings
from expmon.sim.catalogue import PAGES, PLATFORM_WEIGHTS, REGION_WEIGHTS
from schemas import codec
from schemas.events import EventFamily, make_validators

VALIDATE = make_validators(86_400_000)[EventFamily.PAGE_LOAD]


def test_generated_events_are_valid_page_loads() -> None:
    now = int(time.time() * 1000)
    events = list(generate_events(5000, seed=3))
    for event in events:
        assert VALIDATE(dict(event), now)["_t"] == event["occurred_at"]
        assert event["schema_version"] == 1
        assert event["page"] in PAGES
        assert event["load_ms"] > 0
    assert len({e["event_id"] for e in events}) == len(events)
    assert len({e["page"] for e in events}) == len(PAGES)
    # the simulator's shop: its regions, devices and platforms, nothing else
    assert {e["region"] for e in events} == set(REGION_WEIGHTS)
    assert {(e["device"], e["platform"]) for e in events} <= {
        (d, p) for d, platforms in PLATFORM_WEIGHTS.items() for p in platforms
    }
    assert all(e["occurred_at"] < now for e in events)


def test_event_time_increases_with_small_jitter() -> None:
    events = list(generate_events(3000, seed=1, start_ms=1_763_000_000_000, jitter_ms=200))
    times = [e["occurred_at"] for e in events]
    assert times[0] >= 1_763_000_000_000 - 200
    # Never further back than the jitter from the latest time seen so far.
    latest = times[0]
    for t in times:
        assert t >= latest - 200
        latest = max(latest, t)
    assert times[-1] > times[0] + 2_500  # 3000 events at 1000/s of event time


def test_generation_is_reproducible_and_load_is_log_normal() -> None:
    a = list(generate_events(2000, seed=9, start_ms=1_763_000_000_000))
    b = list(generate_events(2000, seed=9, start_ms=1_763_000_000_000))
    assert a == b
    loads = sorted(e["load_ms"] for e in a)
    median = loads[len(loads) // 2]
    assert 700 < median < 2500
    assert loads[-1] > 3 * median  # a long right tail


def test_datasets_hold_the_same_events_single_and_batched() -> None:
    events = list(generate_events(1050, seed=2))
    single, batched = build_datasets(iter(events), 100, 3, "t")
    assert single.name == SINGLE and batched.name == BATCH
    assert single.topic != batched.topic
    assert single.events == batched.events == 1050
    assert len(single.records) == 1050
    assert len(batched.records) == 11  # 10 full batches and one of 50
    assert [e["event_id"] for e in (codec.loads(v) for _, _, v in single.records)] == [
        e["event_id"] for e in events
    ]
    decoded = [codec.loads(v) for _, _, v in batched.records]
    assert all(isinstance(d, list) for d in decoded)
    assert [len(d) for d in decoded] == [100] * 10 + [50]
    assert [e["event_id"] for d in decoded for e in d] == [e["event_id"] for e in events]
    assert {p for p, _, _ in single.records} == {0, 1, 2}
    # A session always lands in the same partition.
    by_session: dict[bytes | None, set[int]] = {}
    for partition, key, _ in single.records:
        by_session.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_session.values())


def test_measure_from_first_nonzero_to_total() -> None:
    samples = [(0.0, 0.0), (0.1, 0.0), (0.2, 500.0), (1.2, 5500.0), (2.2, 10000.0), (2.3, 10000.0)]
    events, seconds, complete = measure(samples, 10000)
    assert events == 9500
    assert seconds == pytest.approx(2.0)
    assert complete


def test_measure_capped_and_empty() -> None:
    events, seconds, complete = measure([(0.0, 0.0), (1.0, 100.0), (3.0, 700.0)], 10000)
    assert (events, seconds, complete) == (600.0, 2.0, False)
    assert measure([(0.0, 0.0), (1.0, 0.0)], 10) == (0.0, 0.0, False)
    assert measure([], 10) == (0.0, 0.0, False)


def test_poll_interval_fast_at_the_ends_slow_in_between() -> None:
    assert next_poll_interval([], 1000) == POLL_SECONDS
    assert next_poll_interval([(0.0, 0.0), (0.1, 0.0)], 1000) == POLL_SECONDS
    assert next_poll_interval([(0.0, 10.0)], 1000) == POLL_SECONDS  # no rate yet
    # 100 events/s, 880 to go: 8.8 s left.
    assert next_poll_interval([(0.0, 10.0), (1.0, 120.0)], 1000) == POLL_SLOW_SECONDS
    # 100 events/s, 150 to go: 1.5 s left.
    assert next_poll_interval([(0.0, 10.0), (8.4, 850.0)], 1000) == POLL_SECONDS


def test_parse_events_total_sums_outcomes_of_one_topic() -> None:
    text = (
        "# HELP expmon_events_total Events\n"
        "# TYPE expmon_events_total counter\n"
        'expmon_events_total{outcome="accepted",topic="t1"} 1200.0\n'
        'expmon_events_total{outcome="invalid",topic="t1"} 3.0\n'
        'expmon_events_total{outcome="accepted",topic="t2"} 99.0\n'
        'expmon_events_created{outcome="accepted",topic="t1"} 1.7e+09\n'
        'expmon_events_total{topic="t1"} 7.0\n'
    )
    assert parse_events_total(text, "t1") == 1210.0
    assert parse_events_total(text, "t2") == 99.0
    assert parse_events_total(text, "t3") == 0.0
    peer = 'expmon_bench_windows_total{topic="t1"} 42.0\nexpmon_events_total{topic="t1"} 9.0\n'
    assert parse_events_total(peer, "t1", "expmon_bench_windows_total") == 42.0


def result(
    scenario: str, dataset: str, events: float, seconds: float, per: int = 1
) -> ScenarioResult:
    return ScenarioResult(scenario, dataset, per, measured_events=events, seconds=seconds)


def test_rates_and_ratios_to_the_ceiling() -> None:
    results = [
        result(BARE, SINGLE, 200_000, 1.0),
        result(BARE, BATCH, 600_000, 1.0, 100),
        result(PIPELINE, SINGLE, 50_000, 1.0),
        result(PIPELINE, BATCH, 300_000, 2.0, 100),
        ScenarioResult(FAUST, SINGLE, 1, error="did not finish within 180 s"),
    ]
    fill_ratios(results)
    assert results[0].events_per_s == 200_000
    assert results[0].ceiling_ratio == pytest.approx(1.0)
    assert results[2].ceiling_ratio == pytest.approx(0.25)
    assert results[3].events_per_s == 150_000
    assert results[3].records_per_s == 1_500
    assert results[3].ceiling_ratio == pytest.approx(0.25)
    assert results[4].events_per_s is None
    assert results[4].ceiling_ratio is None
    data = results[3].to_dict()
    assert data["events_per_s"] == 150_000
    assert data["records_per_s"] == 1_500


def test_no_ratio_without_a_ceiling() -> None:
    results = [ScenarioResult(BARE, SINGLE, 1, error="boom"), result(PIPELINE, SINGLE, 100, 1.0)]
    fill_ratios(results)
    assert results[1].ceiling_ratio is None


def test_table_rows() -> None:
    results = [
        result(BARE, SINGLE, 250_000, 1.0),
        result(PIPELINE, SINGLE, 10_000, 2.0),
        ScenarioResult(FAUST, SINGLE, 1, error="exited with 1\nTraceback ..."),
    ]
    results[1].peak_rss_mb = 151.4
    results[1].complete = False
    fill_ratios(results)
    rows = table_rows(results)
    # columns: vs aiokafka, vs confluent, vs Bytewax, vs Quix (no figure: "-")
    assert rows[0] == [
        BARE, SINGLE, "250,000", "250,000", "-", "1.00x", "-", "-", "-", "250,000 ev in 1.00 s",
    ]  # fmt: skip
    assert rows[1] == [
        PIPELINE, SINGLE, "5,000", "5,000", "151", "0.02x", "-", "-", "-",
        "10,000 ev in 2.00 s (capped)",
    ]  # fmt: skip
    assert rows[2][2:9] == ["-"] * 7
    assert rows[2][9] == "FAILED: exited with 1"
    assert len(COLUMNS) == len(rows[0])


def test_ratios_to_every_ceiling_and_peer_of_the_same_dataset() -> None:
    results = [
        result(BARE, SINGLE, 400_000, 1.0),
        result(CONFLUENT, SINGLE, 500_000, 1.0),
        result(BYTEWAX, SINGLE, 40_000, 1.0),
        result(QUIX, SINGLE, 8_000, 1.0),
        result(PIPELINE, SINGLE, 80_000, 1.0),
        result(PIPELINE, BATCH, 200_000, 1.0, 100),
        result(QUIX, BATCH, 10_000, 1.0, 100),
        ScenarioResult(BYTEWAX, BATCH, 100, error="boom"),
    ]
    fill_ratios(results)
    worker = results[4]
    assert worker.ratios == pytest.approx({BARE: 0.2, CONFLUENT: 0.16, BYTEWAX: 2.0, QUIX: 10.0})
    assert worker.ceiling_ratio == pytest.approx(0.2)
    # a reference is not divided by itself; the others are
    assert results[2].ratios == pytest.approx({BARE: 0.1, CONFLUENT: 0.08, QUIX: 5.0})
    assert reference_ratio(results[2], BYTEWAX) == 1.0
    # batch: only Quix has a figure (no ceiling run, Bytewax failed)
    assert results[5].ratios == pytest.approx({QUIX: 20.0})
    assert results[5].ceiling_ratio is None
    assert results[7].ratios == {}
    assert reference_ratio(results[7], BYTEWAX) is None
    assert results[4].to_dict()["ratios"] == worker.ratios


def test_missing_peer_packages_are_named(tmp_path: Path) -> None:
    assert missing_package(PIPELINE, tmp_path / "none") is None
    why = missing_package(QUIX, tmp_path / "no-venv" / "python")
    assert why is not None and "no Quix Streams venv" in why
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    assert "cannot import quixstreams" in (missing_package(QUIX, fake) or "")


def test_free_ports_are_consecutive_and_free() -> None:
    ports = free_ports(2)
    assert ports[1] == ports[0] + 1
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_parse_vm_hwm() -> None:
    status = "Name:\tpython\nVmPeak:\t  500000 kB\nVmHWM:\t  153600 kB\nVmRSS:\t  120000 kB\n"
    assert parse_vm_hwm_kb(status) == 153600
    assert parse_vm_hwm_kb("Name:\tpython\n") is None
    assert parse_vm_hwm_kb("VmHWM:\t garbage kB\n") is None


def test_read_vm_hwm_of_this_process() -> None:
    kb = read_vm_hwm_kb()
    assert kb is not None and kb > 1000
    assert read_vm_hwm_kb(2**22 + 12345) is None  # no such process


def test_machine_info() -> None:
    info = machine_info()
    assert info["cores"] == os.cpu_count()
    assert info["kafka"] == "4.1.1"
    assert info["python"].count(".") == 2


def test_latency_summary_percentiles() -> None:
    from expmon.bench.alert_latency import LatencyReport

    values = [float(v) for v in range(1, 101)]  # 1..100 ms
    summary = LatencyReport.summary(values)
    assert summary == {"n": 100, "p50_ms": 50.5, "p99_ms": 99.0, "max_ms": 100.0}
    assert LatencyReport.summary([]) == {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_latency_rules_keep_only_page_load_slow_on_the_1m_view() -> None:
    from expmon.alerting.rules import default_rules_text, parse_rules
    from expmon.bench.alert_latency import _rules_text
    from expmon.families.registry import SIGNALS

    rules = parse_rules([("d", default_rules_text()), ("bench", _rules_text())], signals=SIGNALS)
    assert [(r.alert, r.severity, r.window, r.for_ms) for r in rules] == [
        ("PageLoadSlow", "warning", "1m", 0)
    ]


def test_exposition_figures_show_the_budget_holding() -> None:
    from expmon.bench.exposition import measure_exposition

    figures = measure_exposition(Settings(max_pages=6, max_regions=4, series_budget=300))
    assert figures["unbudgeted"]["series"] > 1000
    assert figures["budgeted"]["series"] <= 300
    assert figures["budgeted"]["bytes"] < figures["unbudgeted"]["bytes"]
    assert figures["budgeted"]["healthz_ms"]["n"] >= 1


@pytest.mark.parametrize(
    ("counts", "total", "expected"),
    [
        ([None], 100, None),
        ([0.0], 100, 0.0),
        ([40.0], 100, 40.0),  # one process: its count
        ([40.0, None], 100, None),  # the second does not serve /metrics yet
        ([40.0, 0.0], 100, 0.0),  # the first alone at work: start-up, not timed
        ([40.0, 5.0], 100, 45.0),
        ([100.0, 0.0], 100, 100.0),  # all done by the first: the total counts
    ],
)
def test_processes_count(counts: list[float | None], total: float, expected: float | None) -> None:
    assert processes_count(counts, total) == expected


@pytest.mark.parametrize(
    ("partitions", "processes", "expected"),
    [(3, 2, 4), (4, 2, 4), (1, 2, 2), (3, 1, 3), (5, 3, 6), (6, 4, 8)],
)
def test_even_partitions_is_the_smallest_multiple_at_or_above(
    partitions: int, processes: int, expected: int
) -> None:
    assert even_partitions(partitions, processes) == expected


def test_even_partitions_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        even_partitions(0, 2)


def test_two_processes_run_on_even_topics_after_one_process_on_them() -> None:
    runs = bench_runs([BARE, PIPELINE, PIPELINE_2, BYTEWAX], 3)
    assert runs == [(BARE, 3), (PIPELINE, 3), (PIPELINE_1_OF_2, 4), (PIPELINE_2, 4), (BYTEWAX, 3)]
    # one pair of datasets per partition count, the first with plain topic names
    assert dataset_specs(runs) == [(3, ""), (4, "-p4")]
    assert dataset_specs(bench_runs([PIPELINE_2], 3)) == [(4, "")]
    assert dataset_specs(bench_runs([PIPELINE], 4)) == [(4, "")]


def test_datasets_on_another_partition_count_have_their_own_topics() -> None:
    events = list(generate_events(250, start_ms=0))
    plain = build_datasets(iter(events), 100, 3, "r")
    even = build_datasets(iter(events), 100, 4, "r", suffix="-p4")
    assert [d.topic for d in even] == [d.topic + "-p4" for d in plain]
    assert [d.events for d in even] == [d.events for d in plain]
    assert {p for p, _, _ in even[1].records} == {0, 1, 2}
    assert {p for p, _, _ in even[0].records} <= set(range(4))


def test_measured_window_indices() -> None:
    samples = [(0.0, 0.0), (1.0, 10.0), (2.0, 50.0), (3.0, 100.0), (4.0, 100.0)]
    assert measured_window(samples, 100) == (1, 3)
    assert measured_window(samples[:3], 100) == (1, 2)  # capped: to the last sample
    assert measured_window([(0.0, 0.0)], 100) is None


def test_process_cpu_from_proc_stat_with_spaces_in_the_name() -> None:
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "250", "50", "0", "0"]
    line = "4242 (python (worker) x) " + " ".join(fields) + "\n"
    assert parse_process_cpu_s(line, 100) == pytest.approx(3.0)


def test_machine_cpu_counts_iowait_as_idle() -> None:
    text = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n"
    assert parse_machine_cpu_s(text, 100) == pytest.approx((8.4, 10.0))
    with pytest.raises(ValueError, match="no cpu line"):
        parse_machine_cpu_s("intr 1 2\n", 100)


def test_cpu_figures_over_a_window() -> None:
    start, end = CpuSample(1.0, 10.0, 20.0), CpuSample(4.0, 10.5, 24.0)
    cpu_s, cores, busy = cpu_figures(start, end, seconds=2.0)
    assert (cpu_s, cores) == pytest.approx((3.0, 1.5))
    assert busy == pytest.approx(1 - 0.5 / 4.0)


def test_cpu_sample_of_this_process() -> None:
    sample = cpu_sample([os.getpid(), 2**22 + 1])  # the second does not exist
    assert sample is not None and sample.process_s > 0 and 0 <= sample.idle_s <= sample.total_s
    assert sample.per_process == (sample.process_s, 0.0)


def test_solo_tail_from_the_first_process_to_drain() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    counts = [[0, 0], [5, 5], [10, 10], [15, 12], [15, 14], [15, 16]]
    # the first reached its final 15 at t=3; the second worked on until t=5
    assert solo_tail_seconds(times, counts, 1, 5) == pytest.approx(2.0)
    even = [[0, 0], [5, 5], [10, 10], [15, 15]]
    assert solo_tail_seconds(times[:4], even, 1, 3) == 0.0
    assert solo_tail_seconds(times[:2], [[0], [4]], 0, 1) == 0.0  # one process: no tail


def test_table_shows_cores_machine_and_tail() -> None:
    r = ScenarioResult(PIPELINE_2, BATCH, 100, measured_events=1e6, seconds=5.0)
    r.cpu_seconds, r.busy_cores, r.machine_busy, r.tail_seconds = 9.0, 1.8, 0.97, 1.2
    assert r.events_per_cpu_s == pytest.approx(1e6 / 9.0)
    measured = table_rows([r])[0][-1]
    assert "1.80 cores, machine 97 % busy" in measured and "1.2 s solo tail" in measured
    assert r.to_dict()["events_per_cpu_s"] == pytest.approx(1e6 / 9.0)
