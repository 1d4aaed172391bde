"""`expmon bench`: page-load throughput of the pipeline beside a bare consumer, and RSS.

One run, one broker (a local Kafka 4.1.1 unless `--bootstrap` is given). Two datasets of
valid page_load events are produced first, untimed, into fresh 3-partition topics:
single-event records and batch records (100 events, a JSON array). Then, per dataset:

* bare aiokafka+orjson ceiling: a consumer that only decodes (`expmon.bench.baseline`,
  `--mode bare`), timed by itself from its first record, best of 3 passes;
* bare confluent-kafka+orjson ceiling: the same with librdkafka's prefetch tuned
  (`--mode confluent`);
* expmon pipeline: the real `expmon worker` as a subprocess, `expmon_events_total` polled
  from its /metrics (`name[]` filter; 0.1 s near the start and the end, 1 s in between);
  throughput = events from the first nonzero `expmon_events_total` to the total, over
  the time between (start-up, topic creation and rebalance are excluded);
* expmon pipeline, 2 processes: `expmon worker --processes 2`, both children's counts
  summed;
* plain faust agent: `expmon.bench.baseline` (faust mode), the same per-record work one
  event at a time, timed like the worker;
* Bytewax and Quix Streams: the same windowed job on those frameworks
  (`expmon.bench.peers`), timed like the worker.

A scenario whose package is not installed (the `bench` extra, `make bench`) is skipped
with one note.

A watched scenario that does not finish within `timeout_s` fails; one still running
`measure_s` after its first event is stopped and measured over what it did ("capped").

Every scenario runs in its own process so that its peak RSS (VmHWM) is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import importlib.util
import logging
import math
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from expmon.bench.alert_latency import measure_alert_latency
from expmon.bench.exposition import CONCURRENT_SCRAPES, measure_exposition
from expmon.bench.markdown import markdown_report
from expmon.bench.scenarios import (
    BARE,
    BATCH,
    BYTEWAX,
    CONFLUENT,
    FAUST,
    PIPELINE,
    PIPELINE_1_OF_2,
    PIPELINE_2,
    PIPELINE_PROCESSES,
    QUIX,
    REFERENCE_COLUMNS,
    REFERENCES,
    REPLAY_FILE,
    REPLAY_KAFKA,
    SCENARIOS,
    SINGLE,
    even_partitions,
)
from expmon.bench.statemem import measure_state_memory
from expmon.errors import ExpmonError
from expmon.kafka.admin import TopicSpec, ensure_topics
from expmon.kafka.connection import aiokafka_kwargs, kafka_python_kwargs
from expmon.kafka.partition import partition_for
from expmon.local.kafka.broker import KAFKA_VERSION, LocalKafka
from expmon.local.procs import free_port, stop_process
from expmon.memory import read_vm_hwm_kb
from expmon.settings import Settings, default_cache_dir
from expmon.sim.catalogue import (
    CHANNEL_WEIGHTS,
    DEVICE_FACTOR,
    DEVICE_WEIGHTS,
    LOAD_SIGMA,
    PAGE_MEDIAN_MS,
    PAGE_VIEW_WEIGHTS,
    PLATFORM_WEIGHTS,
    REGION_FACTOR,
    REGION_WEIGHTS,
)
from schemas import codec
from schemas.events import Event

log = logging.getLogger(__name__)


POLL_SECONDS = 0.1
# The bench polls `expmon_events_total` alone (`/metrics?name[]=...`): the whole page
# costs the worker's event loop tens of ms once the page-load views are populated (~5k
# series, ~600 kB), a load no Prometheus puts on it. Still, poll fast only to catch the
# first event and the end.
POLL_SLOW_SECONDS = 1.0
STOP_GRACE_SECONDS = 15.0
GROUP_INITIAL_REBALANCE_DELAY_MS = 3000
DEFAULT_TIMEOUT_SECONDS = 180.0
DEFAULT_MEASURE_SECONDS = 60.0
LOG_TAIL_LINES = 25
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# `make bench` puts Quix Streams in a venv of its own (its pins exclude the project's)
DEFAULT_QUIX_PYTHON = PROJECT_ROOT / ".venv-quix" / "bin" / "python"


class BenchError(ExpmonError):
    """A bench scenario could not be run or did not finish."""


# --------------------------------------------------------------------------- data
def generate_events(
    n: int,
    *,
    seed: int = 7,
    start_ms: int | None = None,
    rate_per_s: float = 1000.0,
    jitter_ms: int = 200,
    sessions: int = 5000,
) -> Iterator[Event]:
    """`n` valid page_load events of the simulator's shop (`expmon.sim.catalogue`), event
    time increasing at `rate_per_s` with small jitter.

    Cheaper than the simulator's journeys (pages drawn by their share of page views, not
    walked), so producing a million events takes seconds. By default the last event lies
    a minute before now, so event times are plausible.
    """
    rng = random.Random(seed)
    step_ms = 1000.0 / rate_per_s
    if start_ms is None:
        start_ms = int(time.time() * 1000 - n * step_ms - 60_000)
    devices, device_cum = tuple(DEVICE_WEIGHTS), _cumulative(DEVICE_WEIGHTS.values())
    regions, region_cum = tuple(REGION_WEIGHTS), _cumulative(REGION_WEIGHTS.values())
    channels, channel_cum = tuple(CHANNEL_WEIGHTS), _cumulative(CHANNEL_WEIGHTS.values())
    pool: list[tuple[str, str, str, str, str, bool]] = []
    for s in range(sessions):
        device = rng.choices(devices, cum_weights=device_cum)[0]
        platforms = PLATFORM_WEIGHTS[device]
        pool.append(
            (
                f"s-{seed}-{s:06d}",
                device,
                rng.choices(tuple(platforms), weights=tuple(platforms.values()))[0],
                rng.choices(regions, cum_weights=region_cum)[0],
                rng.choices(channels, cum_weights=channel_cum)[0],
                rng.random() < 0.2,
            )
        )
    pages = tuple(PAGE_VIEW_WEIGHTS)
    page_cum = _cumulative(PAGE_VIEW_WEIGHTS.values())
    for i in range(n):
        session_id, device, platform_, region, channel, new_user = pool[rng.randrange(sessions)]
        page = rng.choices(pages, cum_weights=page_cum)[0]
        median = PAGE_MEDIAN_MS[page] * DEVICE_FACTOR[device] * REGION_FACTOR[region]
        t = start_ms + int(i * step_ms)
        yield {
            "event_id": f"pl-{seed}-{i:09d}",
            "occurred_at": t - (rng.randint(0, jitter_ms) if jitter_ms else 0),
            "schema_version": 1,
            "session_id": session_id,
            "device": device,
            "platform": platform_,
            "region": region,
            "channel": channel,
            "is_new_user": new_user,
            "page": page,
            "load_ms": round(rng.lognormvariate(math.log(median), LOAD_SIGMA), 1),
        }


def _cumulative(weights: Iterable[float]) -> list[float]:
    total = 0.0
    out = []
    for w in weights:
        total += w
        out.append(total)
    return out


Record = tuple[int, bytes | None, bytes]  # partition, key, value


@dataclass
class Dataset:
    name: str
    topic: str
    events_per_record: int
    events: int = 0
    records: list[Record] = field(default_factory=list)


def build_datasets(
    events: Iterator[Event],
    batch_size: int,
    partitions: int,
    run_id: str,
    single_limit: int | None = None,
    suffix: str = "",
) -> tuple[Dataset, Dataset]:
    """One pass over the events: single-event records keyed by session, and batch records.

    `single_limit` caps the single-event dataset (the batched one takes every event): the
    batched pipeline is ten times faster and needs more events for a steady measurement.
    `suffix` ends the topic names (the same events on a second partition count).
    """
    single = Dataset(SINGLE, f"expmon-bench-{run_id}-{SINGLE}{suffix}", 1)
    batched = Dataset(BATCH, f"expmon-bench-{run_id}-{BATCH}{suffix}", batch_size)
    chunk: list[Event] = []

    def flush() -> None:
        n = len(batched.records)
        batched.records.append((n % partitions, f"batch-{n}".encode(), codec.dumps(chunk)))
        batched.events += len(chunk)
        chunk.clear()

    for event in events:
        if single_limit is None or single.events < single_limit:
            key = event["session_id"].encode()
            single.records.append((partition_for(key, partitions), key, codec.dumps(event)))
            single.events += 1
        chunk.append(event)
        if len(chunk) >= batch_size:
            flush()
    if chunk:
        flush()
    return single, batched


async def produce(
    settings: Settings,
    dataset: Dataset,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Send the dataset's records with large explicit per-partition batches."""
    producer = AIOKafkaProducer(
        **aiokafka_kwargs(settings),
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=1024 * 1024,
        acks=1,
    )
    await producer.start()
    try:
        batches: dict[int, Any] = {}
        counts: dict[int, int] = {}
        pending: list[asyncio.Future[Any]] = []

        async def send(partition: int) -> None:
            batch = batches.pop(partition)
            pending.append(await producer.send_batch(batch, dataset.topic, partition=partition))
            if on_progress is not None:
                on_progress(counts.pop(partition))

        for partition, key, value in dataset.records:
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                await send(partition)
                batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise BenchError(f"a record of {len(value)} bytes does not fit a batch")
            counts[partition] = counts.get(partition, 0) + 1
        for partition in list(batches):
            await send(partition)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- results
@dataclass
class ScenarioResult:
    scenario: str
    dataset: str
    events_per_record: int
    measured_events: float = 0.0
    seconds: float = 0.0
    peak_rss_mb: float | None = None
    ceiling_ratio: float | None = None  # to the aiokafka ceiling (BARE), as before 0.6.0
    ratios: dict[str, float] = field(default_factory=dict)  # to each of REFERENCES
    complete: bool = True
    error: str | None = None
    polls: int | None = None
    scrape_kb: float | None = None
    scrape_ms: float | None = None
    # the peers' own account at the end (expmon.bench.peers.common.EventCount)
    windows_emitted: int | None = None
    late_events: int | None = None
    # over the measured window (watched scenarios): CPU seconds of the scenario's
    # processes, the cores they kept busy, the machine's busy share (any process: the
    # broker, other load), and for N processes each one's events and the solo tail
    cpu_seconds: float | None = None
    busy_cores: float | None = None
    machine_busy: float | None = None
    process_events: list[float] | None = None
    process_cpu_seconds: list[float] | None = None
    tail_seconds: float | None = None

    @property
    def events_per_cpu_s(self) -> float | None:
        if not self.cpu_seconds or self.measured_events <= 0 or self.error is not None:
            return None
        return self.measured_events / self.cpu_seconds

    @property
    def events_per_s(self) -> float | None:
        if self.error is not None or self.seconds <= 0 or self.measured_events <= 0:
            return None
        return self.measured_events / self.seconds

    @property
    def records_per_s(self) -> float | None:
        eps = self.events_per_s
        return None if eps is None else eps / self.events_per_record

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["events_per_s"] = self.events_per_s
        data["records_per_s"] = self.records_per_s
        data["events_per_cpu_s"] = self.events_per_cpu_s
        return data


def fill_ratios(results: Sequence[ScenarioResult]) -> None:
    """Set each result's events/s ratio to each reference (ceilings and peers) of the same
    dataset that has a figure; `ceiling_ratio` is the one to the aiokafka ceiling."""
    references = {
        (r.scenario, r.dataset): r.events_per_s for r in results if r.scenario in REFERENCES
    }
    for result in results:
        eps = result.events_per_s
        result.ratios = {}
        for reference in REFERENCES:
            base = references.get((reference, result.dataset))
            if eps is not None and base and reference != result.scenario:
                result.ratios[reference] = eps / base
        result.ceiling_ratio = reference_ratio(result, BARE)


def reference_ratio(result: ScenarioResult, reference: str) -> float | None:
    """The result's ratio to `reference` (1.0 to itself when it has a figure)."""
    if result.scenario == reference:
        return None if result.events_per_s is None else 1.0
    return result.ratios.get(reference)


def measured_window(samples: Sequence[tuple[float, float]], total: float) -> tuple[int, int] | None:
    """Indices of the first sample with a nonzero count and of the first reaching `total`
    (else the last sample); None before any event."""
    first = next((i for i, s in enumerate(samples) if s[1] > 0), None)
    if first is None:
        return None
    last = next((i for i, s in enumerate(samples) if s[1] >= total), len(samples) - 1)
    return first, last


def measure(samples: Sequence[tuple[float, float]], total: float) -> tuple[float, float, bool]:
    """(events, seconds, complete) from (time, count) samples.

    From the first sample with a nonzero count to the first reaching `total` (or the
    last sample, then `complete` is False).
    """
    window = measured_window(samples, total)
    if window is None:
        return 0.0, 0.0, False
    first, last = samples[window[0]], samples[window[1]]
    return last[1] - first[1], last[0] - first[0], last[1] >= total


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds at one poll: the scenario's processes (a supervisor's children), and
    the machine's idle and total time over all cores (/proc/stat)."""

    process_s: float
    idle_s: float
    total_s: float
    per_process: tuple[float, ...] = ()  # each pid's share of process_s, in their order


def parse_process_cpu_s(stat_text: str, hz: int) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds (the name may hold spaces)."""
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / hz


def parse_machine_cpu_s(stat_text: str, hz: int) -> tuple[float, float]:
    """(idle incl. iowait, total) seconds over all cores from /proc/stat's `cpu` line."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(x) for x in line.split()[1:9]]
            return (ticks[3] + ticks[4]) / hz, sum(ticks) / hz
    raise ValueError("no cpu line in /proc/stat")


def cpu_sample(pids: Iterable[int]) -> CpuSample | None:
    """The CPU of `pids` (those still running) and of the machine, None off Linux."""
    hz = os.sysconf("SC_CLK_TCK")
    try:
        idle, total = parse_machine_cpu_s(Path("/proc/stat").read_text(), hz)
    except (OSError, ValueError):
        return None
    per_process = []
    for pid in pids:
        try:
            per_process.append(parse_process_cpu_s(Path(f"/proc/{pid}/stat").read_text(), hz))
        except (OSError, ValueError, IndexError):
            per_process.append(0.0)
    return CpuSample(sum(per_process), idle, total, tuple(per_process))


def cpu_figures(start: CpuSample, end: CpuSample, seconds: float) -> tuple[float, float, float]:
    """(CPU seconds of the processes, cores they kept busy, share of the machine busy with
    anything) between two samples."""
    cpu_s = end.process_s - start.process_s
    total = end.total_s - start.total_s
    busy = 1.0 - (end.idle_s - start.idle_s) / total if total > 0 else 0.0
    return cpu_s, cpu_s / seconds if seconds > 0 else 0.0, busy


def solo_tail_seconds(
    times: Sequence[float], per_process: Sequence[Sequence[float]], first: int, last: int
) -> float:
    """Seconds at the end of the window [first, last] during which some process had
    already done its last event while another still worked (their partitions drained
    unevenly): from the earliest sample at which a process's count reached its final one."""
    if last <= first or not per_process or len(per_process[0]) < 2:
        return 0.0
    final = per_process[last]
    done = [
        next(i for i in range(first, last + 1) if per_process[i][p] >= final[p])
        for p in range(len(final))
    ]
    return times[last] - times[min(done)]


def next_poll_interval(samples: Sequence[tuple[float, float]], total: float) -> float:
    """0.1 s until the first event and when the end is near (by the rate so far), else 1 s."""
    first = next((s for s in samples if s[1] > 0), None)
    if first is None or not samples:
        return POLL_SECONDS
    last = samples[-1]
    if last[0] <= first[0] or last[1] <= first[1]:
        return POLL_SECONDS
    rate = (last[1] - first[1]) / (last[0] - first[0])
    remaining_s = (total - last[1]) / rate
    return POLL_SLOW_SECONDS if remaining_s > 2 * POLL_SLOW_SECONDS else POLL_SECONDS


def parse_events_total(text: str, topic: str, name: str = "expmon_events_total") -> float:
    """Sum of `name` samples labelled with `topic` in a Prometheus text page."""
    needle = f'topic="{topic}"'
    start = name + "{"
    total = 0.0
    for line in text.splitlines():
        if line.startswith(start) and needle in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ram_gb: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return {
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "cpu": cpu_model,
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_rows(results: Sequence[ScenarioResult]) -> list[list[str]]:
    rows = []
    for r in results:
        if r.error is not None:
            measured = f"FAILED: {r.error.splitlines()[0][:60]}"
        else:
            measured = f"{r.measured_events:,.0f} ev in {r.seconds:.2f} s"
            if not r.complete:
                measured += " (capped)"
            if r.windows_emitted is not None:
                measured += f"; {r.windows_emitted:,} windows, {r.late_events or 0:,} late"
            if r.busy_cores is not None and r.machine_busy is not None:
                measured += f"; {r.busy_cores:.2f} cores, machine {100 * r.machine_busy:.0f} % busy"
            if r.tail_seconds:
                measured += f"; {r.tail_seconds:.1f} s solo tail"
        rows.append(
            [
                r.scenario,
                r.dataset,
                _fmt(r.events_per_s, ",.0f"),
                _fmt(r.records_per_s, ",.0f"),
                _fmt(r.peak_rss_mb, ".0f"),
                *(_ratio(reference_ratio(r, ref)) for ref in REFERENCES),
                measured,
            ]
        )
    return rows


COLUMNS = (
    "scenario", "dataset", "events/s", "records/s", "peak RSS MB",
    *(REFERENCE_COLUMNS[ref] for ref in REFERENCES), "measured",
)  # fmt: skip


def render(console: Console, report: dict[str, Any], results: Sequence[ScenarioResult]) -> None:
    m = report["machine"]
    table = Table(
        title=(
            f"expmon bench: page_load events, {report['events']:,} single-event records, "
            f"{report.get('batch_events', report['events']):,} in batch records"
        ),
        caption=(
            f"{m['cores']} cores, {m['ram_gb']} GB RAM, {m['cpu']}; "
            f"Python {m['python']}, Kafka {m['kafka']}; {report.get('date', '')}, "
            f"load average {report.get('load_average')}; peers: "
            + ", ".join(f"{k} {v}" for k, v in report.get("peers", {}).items())
        ),
    )
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="right" if 2 <= i < len(COLUMNS) - 1 else "left")
    for row in table_rows(results):
        table.add_row(*row)
    if results:
        console.print(table)
        for note in report["notes"]:
            console.print(f"- {note}", highlight=False)
    for skip in report.get("skipped", ()):
        console.print(
            f"skipped {skip['scenario']}: {skip['reason']} (`make bench` installs the peers)",
            highlight=False,
        )
    memory = report.get("state_memory")
    if memory:
        console.print(
            f"state memory: {memory['sessions']:,} open sessions ~{memory['bytes_per_session']} B "
            f"each, {memory['orders']:,} open orders ~{memory['bytes_per_order']} B each "
            f"(tracemalloc over the stages, in-process; process RSS {memory['rss_mb']} MB)",
            highlight=False,
        )
    latency = report.get("alert_latency")
    if latency:
        stream, prom = latency["in_stream"], latency["prometheus_twin"]
        console.print(
            f"alert latency, revealing event -> Alertmanager: in-stream p50 {stream['p50_ms']} ms, "
            f"p99 {stream['p99_ms']} ms (n={stream['n']}); Prometheus twin (scrape and "
            f"evaluation every {latency['prometheus_scrape_and_evaluation_interval']}) p50 "
            f"{prom['p50_ms']} ms, p99 {prom['p99_ms']} ms (n={prom['n']})",
            highlight=False,
        )
    expo = report.get("exposition")
    if expo:
        for label, fig in (("no budget", expo["unbudgeted"]), ("budget", expo["budgeted"])):
            console.print(
                f"/metrics at {expo['pages']} pages x {expo['devices']} devices x "
                f"{expo['regions']} regions, {label}"
                f"{'' if fig['budget'] is None else ' ' + format(fig['budget'], ',')}: "
                f"{fig['series']:,} series, {fig['bytes'] / 1e6:.2f} MB, render "
                f"{fig['render_s']:.2f} s (off the event loop); /healthz during "
                f"{CONCURRENT_SCRAPES} concurrent scrapes p50 {fig['healthz_ms']['p50']} ms, "
                f"max {fig['healthz_ms']['max']} ms",
                highlight=False,
            )
    console.print(f"total bench time {report['total_seconds']:.0f} s", highlight=False)


NOTES = (
    "events/s: events counted from the first nonzero count to the total, over the time "
    "between; process start-up, topic creation, rebalance and the first fetch are excluded",
    "records/s = events/s / events per record (1 or 100)",
    "bare ceilings (aiokafka; confluent-kafka with librdkafka's prefetch tuned): best of 3 "
    "passes over the topic by one consumer process, each timed from its first record",
    "expmon pipeline, 2 processes: `expmon worker --processes 2`, the children's counts "
    "summed, timed from the first sample at which both have processed events (until the "
    "second joins the group the first has every partition); peak RSS is the larger child's",
    "the 2-process scenario runs on its own topics (the same events) with a partition count "
    "2 divides (4 beside the others' 3: over 3 partitions one child has twice the other's "
    "work, at most 1.5x); `expmon pipeline, 1 process on the 2-process topics` is one worker "
    "on those topics in the same run, what the 2-process figure is divided by",
    "Bytewax and Quix Streams: the same windowed job (expmon.bench.peers), timed like the "
    "worker by the events reaching their de-duplication; measured also shows the windows they "
    "emitted and the events they dropped as late",
    "every scenario is its own process; peak RSS = its VmHWM at the end",
    "watched scenarios (the worker, faust, the peers): over the measured window, the cores "
    "their processes kept busy (utime+stime) and the machine's busy share (any process, "
    "the broker too; near 100 % the figure is bound by the shared cores); JSON "
    "`cpu_seconds`, `events_per_cpu_s`; for N processes `process_events` and "
    "`process_cpu_seconds` (each one's share) and `tail_seconds` (at the end, one had "
    "drained its partitions while another worked)",
    "expmon pipeline and plain faust agent: expmon_events_total polled from "
    "/metrics?name[]=expmon_events_total every 0.1 s until the first event and near the "
    "end, every 1 s in between (the full page is scraped only at the end: its size and time)",
    "expmon replay: the whole topic through the same stages, mergers and rules in one "
    "process, state in memory; timed by itself from start to report (Kafka: including the "
    "offset look-up and consumer start), the file a recording made beforehand, untimed",
    "plain faust agent: stream.events(), one event at a time: RecordDecoder + "
    "PageLoadStage.process([record]) per record (so the stage's checkpoint is computed per "
    "record); it does not publish partials, dead letters or state (the pipeline does)",
)


# --------------------------------------------------------------------------- processes
def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _scrape(port: int, topic: str, only_events: bool = True) -> tuple[float, int, float] | None:
    """(events counted, page bytes, seconds the request took) or None if not reachable.

    `only_events`: ask for `expmon_events_total` alone (`name[]`), so that polling does
    not cost the worker a full page each time.
    """
    query = "?name[]=expmon_events_total" if only_events else ""
    started = time.perf_counter()
    try:
        url = f"http://127.0.0.1:{port}/metrics{query}"
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            body = resp.read()
    except (urllib.error.URLError, OSError):
        return None
    took = time.perf_counter() - started
    try:
        return parse_events_total(body.decode(), topic), len(body), took
    except ValueError:
        return None


def _scrape_counts(ports: Sequence[int], topic: str) -> list[float | None]:
    return [None if s is None else s[0] for s in (_scrape(p, topic) for p in ports)]


def processes_count(counts: Sequence[float | None], total: float) -> float | None:
    """The count to time N processes by: None until every one serves /metrics, 0 until
    every one has processed events (the first to join the group has every partition until
    the others join: that is start-up, not N processes at work), then their sum. The
    total counts as soon as it is reached."""
    if any(c is None for c in counts):
        return None
    done = sum(c for c in counts if c is not None)
    if done >= total or len(counts) == 1 or all(counts):
        return done
    return 0.0


def _child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def free_ports(n: int, attempts: int = 50) -> list[int]:
    """`n` consecutive free ports (`expmon worker --processes` serves on base + i)."""
    for _ in range(attempts):
        base = free_port()
        if all(_port_is_free(base + i) for i in range(1, n)):
            return [base + i for i in range(n)]
    raise BenchError(f"found no {n} consecutive free ports")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Runner:
    """What every scenario run needs: settings, scratch space, limits, progress."""

    settings: Settings
    workdir: Path
    run_id: str
    progress: Progress
    timeout_s: float = DEFAULT_TIMEOUT_SECONDS
    measure_s: float = DEFAULT_MEASURE_SECONDS
    log_level: str = "WARNING"
    quix_python: Path = field(default_factory=lambda: DEFAULT_QUIX_PYTHON)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["EXPMON_KAFKA_BOOTSTRAP"] = self.settings.kafka_bootstrap
        env["EXPMON_LOG_LEVEL"] = self.log_level
        env.update(extra)
        return env

    def ceiling(self, dataset: Dataset, partitions: int, scenario: str = BARE) -> ScenarioResult:
        """A decode-only consumer (aiokafka, or confluent-kafka for CONFLUENT), timed by itself."""
        result = ScenarioResult(scenario, dataset.name, dataset.events_per_record)
        mode = "confluent" if scenario == CONFLUENT else "bare"
        logfile = self.workdir / f"{mode}-{dataset.name}.log"
        cmd = [
            sys.executable, "-m", "expmon.bench.baseline", "--mode", mode,
            "--bootstrap", self.settings.kafka_bootstrap, "--topic", dataset.topic,
            "--events", str(dataset.events), "--timeout", str(self.timeout_s),
            "--partitions", str(partitions), "--log-level", self.log_level,
        ]  # fmt: skip
        task = self.progress.add_task(f"{scenario} / {dataset.name}", total=None)
        try:
            with logfile.open("wb") as err:
                done = subprocess.run(
                    cmd, stdout=subprocess.PIPE, stderr=err, env=self.env(),
                    timeout=self.timeout_s + 30, check=False,
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BenchError(f"did not finish within {self.timeout_s + 30:.0f} s") from None
        finally:
            self.progress.remove_task(task)
        if done.returncode != 0:
            raise BenchError(f"exited with {done.returncode}\n{_tail(logfile)}")
        data = orjson.loads(done.stdout.strip().splitlines()[-1])
        result.measured_events = float(data["measured_events"])
        result.seconds = float(data["seconds"])
        if data.get("peak_rss_kb"):
            result.peak_rss_mb = data["peak_rss_kb"] / 1024
        return result

    def watched(
        self,
        scenario: str,
        dataset: Dataset,
        cmd: list[str],
        env: dict[str, str],
        port: int,
        ports: Sequence[int] = (),
    ) -> ScenarioResult:
        """Run `cmd`, poll its /metrics until the dataset is through, then stop it.

        `ports`: a supervisor's children's /metrics (their counts summed), else `port`."""
        ports = tuple(ports) or (port,)
        result = ScenarioResult(scenario, dataset.name, dataset.events_per_record)
        logfile = self.workdir / f"{scenario.replace(' ', '-')}-{dataset.name}.log"
        total = float(dataset.events)
        task = self.progress.add_task(f"{scenario} / {dataset.name}", total=total)
        samples: list[tuple[float, float]] = []
        per_process: list[list[float]] = []  # each process's count at each sample
        cpu: list[CpuSample | None] = []
        started = time.monotonic()
        with logfile.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            first_at: float | None = None
            while True:
                tick = time.monotonic()
                if proc.poll() is not None:
                    raise BenchError(
                        f"exited with {proc.returncode} before finishing"
                        f" ({samples[-1][1] if samples else 0:.0f}/{total:.0f} events)"
                        f"\n{_tail(logfile)}"
                    )
                counts = _scrape_counts(ports, dataset.topic)
                count = processes_count(counts, total)
                if count is not None:
                    samples.append((time.perf_counter(), count))
                    per_process.append([c or 0.0 for c in counts])
                    cpu.append(cpu_sample(_child_pids(proc.pid) or [proc.pid]))
                    self.progress.update(task, completed=count)
                    if count > 0 and first_at is None:
                        first_at = tick
                    if count >= total:
                        break
                    if first_at is not None and tick - first_at >= self.measure_s:
                        log.info(
                            "%s / %s: measured for %.0f s, stopping at %.0f/%.0f events",
                            scenario,
                            dataset.name,
                            self.measure_s,
                            count,
                            total,
                        )
                        break
                if tick - started > self.timeout_s:
                    seen = samples[-1][1] if samples else 0
                    raise BenchError(
                        f"did not finish within {self.timeout_s:.0f} s "
                        f"({seen:.0f}/{total:.0f} events)\n{_tail(logfile)}"
                    )
                interval = next_poll_interval(samples, total)
                time.sleep(max(0.0, interval - (time.monotonic() - tick)))
            # per process: a supervisor's largest child (the supervisor itself is small)
            rss = [read_vm_hwm_kb(pid) for pid in (_child_pids(proc.pid) or [proc.pid])]
            rss_kb = max((kb for kb in rss if kb is not None), default=None)
            result.peak_rss_mb = rss_kb / 1024 if rss_kb is not None else None
            self._measure_full_page(result, port, dataset.topic)
            if scenario in (BYTEWAX, QUIX):
                self._peer_account(result, port, dataset.topic)
        finally:
            self.progress.remove_task(task)
            stop_process(proc, scenario)
        events, seconds, complete = measure(samples, total)
        if seconds <= 0:
            raise BenchError(
                "the whole dataset was done before the second metrics sample; use more --events"
            )
        result.measured_events, result.seconds, result.complete = events, seconds, complete
        result.polls = len(samples)
        window = measured_window(samples, total)
        if window is not None:
            first, last = window
            start, end = cpu[first], cpu[last]
            if start is not None and end is not None:
                result.cpu_seconds, result.busy_cores, result.machine_busy = (
                    round(x, 3) for x in cpu_figures(start, end, seconds)
                )
                if len(ports) > 1 and len(start.per_process) == len(end.per_process):
                    result.process_cpu_seconds = [
                        round(b - a, 2)
                        for a, b in zip(start.per_process, end.per_process, strict=True)
                    ]
            if len(ports) > 1:
                result.process_events = [
                    b - a for a, b in zip(per_process[first], per_process[last], strict=True)
                ]
                times = [t for t, _ in samples]
                result.tail_seconds = round(solo_tail_seconds(times, per_process, first, last), 2)
        return result

    @staticmethod
    def _measure_full_page(result: ScenarioResult, port: int, topic: str) -> None:
        """Size and time of the whole /metrics page at the end (at its largest then)."""
        pages = [p for p in (_scrape(port, topic, only_events=False) for _ in range(3)) if p]
        if pages:
            result.scrape_kb = round(max(n for _, n, _ in pages) / 1024, 1)
            result.scrape_ms = round(1000 * sorted(t for _, _, t in pages)[len(pages) // 2], 1)

    def run(self, scenario: str, dataset: Dataset, partitions: int) -> ScenarioResult:
        if scenario in (BARE, CONFLUENT):
            return self.ceiling(dataset, partitions, scenario)
        if scenario == PIPELINE:
            return self.pipeline(dataset)
        if scenario == PIPELINE_1_OF_2:
            return self.pipeline(dataset, reference_for=PIPELINE_PROCESSES)
        if scenario == PIPELINE_2:
            return self.pipeline(dataset, processes=PIPELINE_PROCESSES)
        if scenario in (REPLAY_KAFKA, REPLAY_FILE):
            return self.replay(dataset, from_file=scenario == REPLAY_FILE)
        if scenario in (BYTEWAX, QUIX):
            return self.peer(scenario, dataset, partitions)
        return self.faust(dataset, partitions)

    @staticmethod
    def _peer_account(result: ScenarioResult, port: int, topic: str) -> None:
        """Windows a peer emitted and events it dropped as late, when it was stopped."""
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                text = resp.read().decode()
        except (urllib.error.URLError, OSError):
            return
        result.windows_emitted = int(parse_events_total(text, topic, "expmon_bench_windows_total"))
        result.late_events = int(parse_events_total(text, topic, "expmon_bench_late_events_total"))

    def pipeline(
        self, dataset: Dataset, processes: int = 1, reference_for: int | None = None
    ) -> ScenarioResult:
        """`expmon worker` (`--processes N` when N > 1); `reference_for`: one process on the
        N-process topics (PIPELINE_1_OF_2)."""
        app_id = f"expmon-bench-{self.run_id}-{dataset.name}"
        if processes > 1:
            app_id += f"-p{processes}"
        elif reference_for is not None:
            app_id += f"-p1of{reference_for}"
        ports = free_ports(processes)
        port = ports[0]
        state_dir = self.workdir / f"state-{app_id}"
        env = self.env(
            EXPMON_APP_ID=app_id,
            EXPMON_TOPIC_PAGE_LOADS=dataset.topic,
            EXPMON_METRICS_PORT=str(port),
            EXPMON_STATE_DIR=str(state_dir),
            **{
                f"EXPMON_TOPIC_{name.upper()}": f"{app_id}-{name.replace('_', '-')}"
                for name in (
                    "checkout", "logistics", "dlq", "alerts", "window_partials", "windows",
                )
            },
        )  # fmt: skip
        cmd = [sys.executable, "-m", "expmon.cli", "--log-level", self.log_level, "worker"]
        if processes == 1:
            scenario = PIPELINE if reference_for is None else PIPELINE_1_OF_2
            return self.watched(scenario, dataset, cmd, env, port)
        cmd += ["--processes", str(processes)]
        return self.watched(PIPELINE_2, dataset, cmd, env, port, ports=ports)

    def peer(self, scenario: str, dataset: Dataset, partitions: int) -> ScenarioResult:
        """The same windowed job on Bytewax or Quix Streams (`expmon.bench.peers`)."""
        port = free_port()
        group = f"expmon-bench-{self.run_id}-{scenario.split(maxsplit=1)[0].lower()}-{dataset.name}"
        module, python = (
            ("bytewax_job", sys.executable) if scenario == BYTEWAX
            else ("quix_job", str(self.quix_python))
        )  # fmt: skip
        cmd = [
            python, "-m", f"expmon.bench.peers.{module}",
            "--bootstrap", self.settings.kafka_bootstrap, "--topic", dataset.topic,
            "--group", group, "--port", str(port), "--partitions", str(partitions),
            "--events-per-record", str(dataset.events_per_record),
            "--state-dir", str(self.workdir / f"{module}-{dataset.name}"),
            "--log-level", self.log_level,
        ]  # fmt: skip
        # the Quix venv has not this project installed: it imports it from the source tree
        paths = (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", ""))
        env = self.env(PYTHONPATH=os.pathsep.join(p for p in paths if p))
        return self.watched(scenario, dataset, cmd, env, port)

    def faust(self, dataset: Dataset, partitions: int) -> ScenarioResult:
        app_id = f"expmon-bench-{self.run_id}-faust-{dataset.name}"
        port = free_port()
        env = self.env(EXPMON_STATE_DIR=str(self.workdir / f"faust-{dataset.name}"))
        cmd = [
            sys.executable, "-m", "expmon.bench.baseline",
            "--bootstrap", self.settings.kafka_bootstrap, "--topic", dataset.topic,
            "--app-id", app_id, "--port", str(port), "--partitions", str(partitions),
            "--log-level", self.log_level,
        ]  # fmt: skip
        return self.watched(FAUST, dataset, cmd, env, port)

    def replay(self, dataset: Dataset, from_file: bool) -> ScenarioResult:
        """`expmon replay` of the whole topic, from Kafka or from a recording of it."""
        scenario = REPLAY_FILE if from_file else REPLAY_KAFKA
        result = ScenarioResult(scenario, dataset.name, dataset.events_per_record)
        env = self.env(EXPMON_TOPIC_PAGE_LOADS=dataset.topic)
        base = [sys.executable, "-m", "expmon.cli", "--log-level", self.log_level]
        source = ["--topic", dataset.topic]
        logfile = self.workdir / f"replay-{dataset.name}.log"
        if from_file:
            recording = self.workdir / f"{dataset.name}.ndjson"
            if not recording.exists():  # untimed: the recording is the input, not the work
                self._run([*base, "record", "dump", *source, "-o", str(recording),
                           "--no-progress"], env, logfile)  # fmt: skip
            source = ["--file", str(recording)]
        stats = self.workdir / f"replay-{dataset.name}-stats.json"
        task = self.progress.add_task(f"{scenario} / {dataset.name}", total=None)
        try:
            self._run(
                [*base, "replay", *source, "--no-progress", "--stats", str(stats),
                 "--report", str(self.workdir / f"replay-{dataset.name}.json")],
                env, logfile,
            )  # fmt: skip
        finally:
            self.progress.remove_task(task)
        data = orjson.loads(stats.read_bytes())
        result.measured_events = float(data["events"])
        result.seconds = float(data["seconds"])
        if data.get("peak_rss_kb"):
            result.peak_rss_mb = data["peak_rss_kb"] / 1024
        return result

    def _run(self, cmd: list[str], env: dict[str, str], logfile: Path) -> None:
        try:
            with logfile.open("ab") as out:
                done = subprocess.run(
                    cmd, stdout=subprocess.DEVNULL, stderr=out, env=env,
                    timeout=self.timeout_s, check=False,
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BenchError(f"did not finish within {self.timeout_s:.0f} s") from None
        if done.returncode != 0:
            raise BenchError(f"exited with {done.returncode}\n{_tail(logfile)}")


def missing_package(scenario: str, quix_python: Path) -> str | None:
    """Why `scenario` cannot run here (a peer's package not installed), or None."""
    needs = {CONFLUENT: ("confluent_kafka",), BYTEWAX: ("bytewax", "confluent_kafka")}
    for module in needs.get(scenario, ()):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed in {sys.prefix}"
    if scenario == QUIX:
        if not quix_python.exists():
            return f"no Quix Streams venv at {quix_python}"
        probe = subprocess.run(
            [str(quix_python), "-c", "import quixstreams, msgspec, prometheus_client"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        if probe.returncode != 0:
            return f"{quix_python} cannot import quixstreams"
    return None


QUIX_VERSION_PROBE = "import importlib.metadata as m; print(m.version('quixstreams'))"


def peer_versions(quix_python: Path) -> dict[str, str]:
    """Installed versions of the peers' packages (the Quix one from its own venv)."""
    versions = {}
    for name in ("confluent-kafka", "bytewax"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(
            [str(quix_python), "-c", QUIX_VERSION_PROBE],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            versions["quixstreams"] = probe.stdout.strip()
    return versions


def _delete_topics(settings: Settings, run_id: str) -> None:
    """Best effort: drop every topic this run created on a broker that outlives it."""
    try:
        admin = KafkaAdminClient(**kafka_python_kwargs(settings), client_id="expmon-bench")
    except Exception as exc:
        log.warning("could not clean up the bench topics: %r", exc)
        return
    try:
        names = [t for t in admin.list_topics() if run_id in t]
        if names:
            admin.delete_topics(names)
            log.info("deleted %d bench topics", len(names))
    except Exception as exc:
        log.warning("could not clean up the bench topics: %r", exc)
    finally:
        admin.close()


# --------------------------------------------------------------------------- entry point
def run_bench(
    bootstrap: str | None,
    log_level: str,
    events: int,
    output: str | None,
    *,
    batch_events: int = 1_000_000,
    batch_size: int = 100,
    partitions: int = 3,
    seed: int = 7,
    timeout_s: float = DEFAULT_TIMEOUT_SECONDS,
    measure_s: float = DEFAULT_MEASURE_SECONDS,
    scenarios: Sequence[str] = SCENARIOS,
    keep_topics: bool = False,
    throughput: bool = True,
    alert_latency: bool = True,
    latency_samples: int = 20,
    quix_python: Path = DEFAULT_QUIX_PYTHON,
    markdown: bool = False,
) -> int:
    """Run every scenario on both datasets and the alert latency, print the tables;
    0 if all succeeded, else 1."""
    if events < batch_size:
        raise BenchError(f"--events must be at least {batch_size}")
    began = time.monotonic()
    kafka = None
    if bootstrap is None:
        log.info("starting a local Kafka %s broker", KAFKA_VERSION)
        # Kafka's default delay (tests use 0): N worker processes join in one generation
        kafka = LocalKafka(
            default_cache_dir(), group_initial_rebalance_delay_ms=GROUP_INITIAL_REBALANCE_DELAY_MS
        )
        kafka.start()
        bootstrap = kafka.bootstrap
    settings = Settings.from_env(kafka_bootstrap=bootstrap, log_level=log_level)
    run_id = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    results: list[ScenarioResult] = []
    latency: dict[str, Any] | None = None
    latency_error: str | None = None
    stderr = Console(stderr=True)
    if not throughput:
        scenarios = ()
    skipped = {s: why for s in scenarios if (why := missing_package(s, quix_python))}
    for scenario, why in skipped.items():
        log.warning("skipping %s: %s (`make bench` installs the peers)", scenario, why)
    scenarios = [s for s in scenarios if s not in skipped]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="expmon-bench-") as tmp,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:>9,.0f}"),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            ) as progress,
        ):
            runner = Runner(
                settings, Path(tmp), run_id, progress, timeout_s, measure_s,
                log_level="WARNING" if log_level == "INFO" else log_level,
                quix_python=quix_python,
            )  # fmt: skip
            prepare = functools.partial(
                _prepare,
                settings,
                events=events,
                batch_events=batch_events,
                batch_size=batch_size,
                seed=seed,
                start_ms=int(time.time() * 1000 - max(events, batch_events) - 60_000),
                run_id=run_id,
                progress=progress,
            )
            runs = bench_runs(scenarios, partitions)
            datasets = {p: prepare(partitions=p, suffix=s) for p, s in dataset_specs(runs)}
            for scenario, count in runs:
                for dataset in datasets[count]:
                    log.info("scenario %s on %s (%d partitions)", scenario, dataset.name, count)
                    try:
                        result = runner.run(scenario, dataset, count)
                    except (BenchError, OSError, ValueError, KeyError) as exc:
                        log.error("scenario %s on %s failed: %s", scenario, dataset.name, exc)
                        result = ScenarioResult(
                            scenario, dataset.name, dataset.events_per_record, error=str(exc)
                        )
                    results.append(result)
                    log.info(
                        "%s / %s: %s events/s", scenario, dataset.name,
                        _fmt(result.events_per_s, ",.0f"),
                    )  # fmt: skip
            if alert_latency:
                log.info("alert latency: in-stream engine vs Prometheus twin (a few minutes)")
                try:
                    latency = measure_alert_latency(
                        settings, Path(tmp), samples=latency_samples
                    ).to_dict()
                except (ExpmonError, OSError) as exc:
                    log.error("alert latency failed: %s", exc)
                    latency_error = str(exc)
    finally:
        if kafka is not None:
            kafka.stop()
        elif not keep_topics:
            _delete_topics(settings, run_id)

    fill_ratios(results)
    log.info("measuring state memory (100k open sessions, 10k open orders)")
    state_memory = measure_state_memory().to_dict()
    log.info("measuring /metrics at the default label limits, with and without the budget")
    exposition = measure_exposition(settings)
    report: dict[str, Any] = {
        "events": events,
        "batch_events": batch_events,
        "batch_size": batch_size,
        "partitions": partitions,
        "processes_partitions": even_partitions(partitions, PIPELINE_PROCESSES),
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": _load_average(),
        "peers": peer_versions(quix_python),
        "notes": list(NOTES),
        "skipped": [{"scenario": s, "reason": why} for s, why in skipped.items()],
        "total_seconds": round(time.monotonic() - began, 1),
        "results": [r.to_dict() for r in results],
        "state_memory": state_memory,
        "alert_latency": latency,
        "exposition": exposition,
    }
    console = Console(width=None if sys.stdout.isatty() else 140)
    render(console, report, results)
    if markdown:
        sys.stdout.write(markdown_report(report))
    if output:
        Path(output).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        log.info("results written to %s", output)
    failed = any(r.error is not None for r in results) or latency_error is not None
    return 1 if failed else 0


def bench_runs(scenarios: Sequence[str], partitions: int) -> list[tuple[str, int]]:
    """(scenario, partition count of its topics) in the order they run.

    The 2-process scenario runs on topics whose partition count 2 divides, after one
    process on those same topics (its reference, PIPELINE_1_OF_2); every other scenario on
    `partitions`.
    """
    even = even_partitions(partitions, PIPELINE_PROCESSES)
    runs: list[tuple[str, int]] = []
    for scenario in scenarios:
        if scenario == PIPELINE_2:
            runs += [(PIPELINE_1_OF_2, even), (PIPELINE_2, even)]
        else:
            runs.append((scenario, partitions))
    return runs


def dataset_specs(runs: Sequence[tuple[str, int]]) -> list[tuple[int, str]]:
    """(partition count, topic-name suffix) of each pair of datasets the runs need: the
    first count has plain names, another one `-p<count>`."""
    counts = list(dict.fromkeys(count for _, count in runs))
    return [(count, "" if i == 0 else f"-p{count}") for i, count in enumerate(counts)]


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _prepare(
    settings: Settings,
    *,
    events: int,
    batch_events: int,
    batch_size: int,
    partitions: int,
    seed: int,
    start_ms: int,
    run_id: str,
    progress: Progress,
    suffix: str = "",
) -> tuple[Dataset, Dataset]:
    """Generate both datasets, create their topics and produce them (untimed)."""
    task = progress.add_task("generating events", total=None)
    datasets = build_datasets(
        generate_events(max(events, batch_events), seed=seed, start_ms=start_ms),
        batch_size,
        partitions,
        run_id,
        single_limit=events,
        suffix=suffix,
    )
    progress.remove_task(task)
    ensure_topics(settings, [TopicSpec(d.topic, partitions) for d in datasets])
    for dataset in datasets:
        started = time.monotonic()
        task = progress.add_task(f"producing {dataset.name}", total=len(dataset.records))
        asyncio.run(produce(settings, dataset, _advance(progress, task)))
        progress.remove_task(task)
        log.info(
            "produced %d records (%d events) to %s in %.1f s",
            len(dataset.records), dataset.events, dataset.topic, time.monotonic() - started,
        )  # fmt: skip
        dataset.records = []  # free the memory: the subprocesses read from Kafka
    return datasets


def _advance(progress: Progress, task: TaskID) -> Callable[[int], None]:
    def advance(n: int) -> None:
        progress.advance(task, n)

    return advance


__all__ = [
    "BARE",
    "BATCH",
    "BYTEWAX",
    "CONFLUENT",
    "FAUST",
    "PIPELINE",
    "PIPELINE_1_OF_2",
    "PIPELINE_2",
    "QUIX",
    "SCENARIOS",
    "SINGLE",
    "ScenarioResult",
    "bench_runs",
    "build_datasets",
    "dataset_specs",
    "fill_ratios",
    "generate_events",
    "measure",
    "parse_events_total",
    "run_bench",
    "table_rows",
]
