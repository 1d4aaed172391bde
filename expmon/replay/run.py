"""`expmon replay` and `expmon record`: sources, pacing, progress, outputs.

The processing itself is `expmon.replay.session.ReplayPipeline`; this module connects it to a
Kafka range or a recording, shows progress, and writes the report.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from expmon.alerting.rules import load_rules
from expmon.engine.merge import ViewResult
from expmon.errors import ConfigError, ExpmonError
from expmon.exposition.metrics import Metrics, new_registry
from expmon.families.registry import SIGNALS, input_topics
from expmon.gctune import throughput_gc
from expmon.kafka.connection import kafka_python_kwargs
from expmon.replay.kafka_range import (
    RangeError,
    ResolvedRange,
    parse_point,
    read_range,
    resolve_range,
)
from expmon.replay.recording import RecordingReader, RecordingWriter, count_records
from expmon.replay.report import ReportContext, render_console, render_markdown, report_bytes
from expmon.replay.session import ReplayPipeline, ReplayRecord
from expmon.settings import Settings
from schemas import codec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayOptions:
    topics: tuple[str, ...] = ()  # empty: every input topic (or every topic of the file)
    start: str = "earliest"
    end: str = "latest"
    file: Path | None = None
    candidate_rules: tuple[Path, ...] = ()
    speed: float | None = None  # None: as fast as possible; 10.0: ten times real time
    report: Path = Path("replay-report.json")
    markdown: Path | None = None
    into: str | None = None  # re-publish closed windows here
    alerts_into: str | None = None  # publish alert transitions here (never by default)
    metrics_port: int | None = None
    progress: bool = True
    stats: Path | None = None  # timing, counts and peak RSS as JSON (for `expmon bench`)


def parse_speed(text: str) -> float | None:
    """'max' -> None; '1x', '10x', '0.5x' -> factor."""
    text = text.strip().lower()
    if text in ("max", "full", "0"):
        return None
    value = float(text.removesuffix("x"))
    if value <= 0:
        raise ValueError("speed must be positive")
    return value


class Pacer:
    """Holds a replay to `speed` times the pace of its event time (records' timestamps)."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.first: tuple[int, float] | None = None

    async def wait(self, batch: list[ReplayRecord]) -> None:
        if self.speed is None or not batch:
            return
        stamp = max(r.timestamp_ms for r in batch)
        if self.first is None:
            self.first = (stamp, time.monotonic())
            return
        due = self.first[1] + (stamp - self.first[0]) / 1000 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _publisher(settings: Settings, topic: str | None) -> tuple[Any, Callable[..., None]]:
    if topic is None:
        return None, lambda *_a, **_k: None
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka_python_kwargs(settings), linger_ms=20)

    def send(key: str, value: bytes) -> None:
        producer.send(topic, key=key.encode(), value=value)

    return producer, send


async def _file_batches(
    reader: RecordingReader, topics: set[str]
) -> AsyncIterator[list[ReplayRecord]]:
    for batch in reader.batches():
        yield [r for r in batch if r.topic in topics] if topics else batch
        await asyncio.sleep(0)


def run_replay(settings: Settings, options: ReplayOptions, console: Console | None = None) -> int:
    """Replay the range and write the report; returns the exit code."""
    console = console or Console(stderr=True)
    base = settings.runbook_base_url
    rules = load_rules(settings.rules_files, settings.views, signals=SIGNALS, runbook_base_url=base)
    # A candidate file changes the rules in force, as an operator file changes defaults.
    candidate = (
        load_rules(
            (*settings.rules_files, *options.candidate_rules),
            settings.views,
            signals=SIGNALS,
            runbook_base_url=base,
        )
        if options.candidate_rules
        else None
    )
    _check_topics(settings, options.topics)
    reader: RecordingReader | None = None
    resolved: ResolvedRange | None = None
    if options.file is not None:
        reader, partitions = _open_recording(settings, options.file, options.topics)
        total = count_records(options.file)
        source = f"recording {options.file}"
    else:
        topics = options.topics or input_topics(settings)
        start, end = parse_point(options.start), parse_point(options.end)
        resolved = resolve_range(settings, topics, start, end)
        partitions = resolved.partitions
        total = resolved.total
        source = f"Kafka {', '.join(topics)} {start.describe()} .. {end.describe()}"
    metrics = _serve_metrics(settings, options.metrics_port)
    producer, publish_window = _publisher(settings, options.into)
    alerts_producer, publish_alert = _publisher(settings, options.alerts_into)

    def on_result(result: ViewResult) -> None:
        publish_window(result.record_key, codec.dumps(result.to_dict()))

    pipeline = ReplayPipeline(settings, partitions, rules, candidate, metrics, on_result)
    log.info("replay of %s: %d records (state in memory, no consumer group)", source, total)
    started = time.monotonic()
    try:
        with throughput_gc():
            asyncio.run(_drive(pipeline, options, reader, resolved, settings, total, console))
    except KeyboardInterrupt:
        log.warning("interrupted after %d records: no report written", pipeline.records)
        return 130
    finally:
        if reader is not None:
            reader.close()
    for entry in pipeline.timelines[0].sorted_entries():
        publish_alert(str(entry["fingerprint"]), codec.dumps(entry))
    for p in (producer, alerts_producer):
        if p is not None:
            p.flush()
            p.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    if options.stats is not None:
        write_stats(options.stats, pipeline, elapsed)
    report = pipeline.report()
    context = ReportContext(
        source=source,
        rule_files=(
            "alerts/defaults.yml",
            *map(str, settings.rules_files),
            *(f"{p} (candidate)" for p in options.candidate_rules),
        ),
        command=replay_command(options),
    )
    options.report.write_bytes(report_bytes(report))
    if options.markdown is not None:
        options.markdown.write_text(render_markdown(report, context), encoding="utf-8")
    render_console(report, Console(), context)
    log.info(
        "replayed %d records, %d events in %.1f s (%.0f events/s); %d windows, %d alert "
        "transitions; report: %s%s",
        pipeline.records, pipeline.events, elapsed, pipeline.events / elapsed,
        len(pipeline.windows), len(pipeline.timelines[0].entries), options.report,
        f", {options.markdown}" if options.markdown else "",
    )  # fmt: skip
    return 0


def replay_command(options: ReplayOptions) -> str:
    """The command line that reruns this replay (the report says how it was made)."""
    words = ["expmon", "replay"]
    for topic in options.topics:
        words += ["--topic", topic]
    if options.file is not None:
        words += ["--file", str(options.file)]
    else:
        words += ["--from", options.start, "--to", options.end]
    for path in options.candidate_rules:
        words += ["--rules", str(path)]
    if options.markdown is not None:
        words += ["--markdown", str(options.markdown)]
    return shlex.join(words)


def _open_recording(
    settings: Settings, path: Path, topics: tuple[str, ...]
) -> tuple[RecordingReader, dict[str, int]]:
    """The recording and the partition counts of the topics to replay from it."""
    reader = RecordingReader(path)
    try:
        missing = [t for t in topics if t not in reader.partitions]
        if missing:
            raise RangeError(
                f"{path} holds no topic {', '.join(missing)} "
                f"(it holds {', '.join(reader.partitions)})"
            )
        partitions = {t: n for t, n in reader.partitions.items() if not topics or t in topics}
        _check_topics(settings, tuple(partitions))
    except ExpmonError:
        reader.close()
        raise
    return reader, partitions


def _check_topics(settings: Settings, topics: tuple[str, ...]) -> None:
    """A topic must be one of the input topics: that is how it finds its processor."""
    for topic in topics:
        if topic not in input_topics(settings):
            raise ConfigError(
                f"--topic {topic} is not an input topic ({', '.join(input_topics(settings))}); "
                f"to replay a copy, say which it is, e.g. EXPMON_TOPIC_PAGE_LOADS={topic}"
            )


def write_stats(path: Path, pipeline: ReplayPipeline, seconds: float) -> None:
    """How fast and how big: measured, so not part of the (deterministic) report."""
    from expmon.memory import read_vm_hwm_kb

    peak_kb = read_vm_hwm_kb()
    stats = {
        "records": pipeline.records,
        "events": sum(sum(c.values()) for c in pipeline.counts.values()),
        "seconds": round(seconds, 3),
        "peak_rss_kb": peak_kb,
    }
    path.write_bytes(codec.dumps(stats))


async def _drive(
    pipeline: ReplayPipeline,
    options: ReplayOptions,
    reader: RecordingReader | None,
    resolved: ResolvedRange | None,
    settings: Settings,
    total: int,
    console: Console,
) -> None:
    pacer = Pacer(options.speed)
    if reader is not None:
        batches = _file_batches(reader, set(options.topics))
    else:
        assert resolved is not None, "a replay reads a recording or a resolved Kafka range"
        batches = read_range(settings, resolved)
    started = time.monotonic()
    with _progress(console, options.progress) as progress:
        task = progress.add_task("replay", total=total, rate="")
        async for batch in batches:
            await pacer.wait(batch)
            pipeline.feed(batch)
            rate = pipeline.events / max(time.monotonic() - started, 1e-9)
            progress.update(task, advance=len(batch), rate=f"{rate:,.0f} events/s")
        pipeline.finish()


def _serve_metrics(settings: Settings, port: int | None) -> Metrics | None:
    """The replay's own registry on its own port: live metrics stay untouched."""
    if port is None:
        return None
    from prometheus_client import start_http_server

    metrics = Metrics(new_registry())
    start_http_server(port, addr=settings.metrics_host, registry=metrics.registry)
    log.info("replay metrics on http://%s:%d/metrics", settings.metrics_host, port)
    return metrics


# ---------------------------------------------------------------- record
def run_record_dump(
    settings: Settings,
    topics: tuple[str, ...],
    start: str,
    end: str,
    output: Path,
    progress: bool = True,
) -> int:
    """A range of topics into a recording file."""
    console = Console(stderr=True)
    first, last = parse_point(start), parse_point(end)
    resolved = resolve_range(settings, topics or input_topics(settings), first, last)

    async def dump(writer: RecordingWriter) -> None:
        with _progress(console, progress) as bar:
            task = bar.add_task("record", total=resolved.total, rate="")
            async for batch in read_range(settings, resolved):
                for record in batch:
                    writer.write(record)
                bar.update(task, advance=len(batch))

    with RecordingWriter(output, resolved.partitions) as writer:
        asyncio.run(dump(writer))
    log.info("recorded %d records of %s into %s", writer.count, ", ".join(resolved.partitions),
             output)  # fmt: skip
    return 0


def run_record_load(
    settings: Settings, path: Path, into: str | None = None, progress: bool = True
) -> int:
    """A recording back into Kafka: same topics (or `into`), partitions, keys, timestamps."""
    from kafka import KafkaProducer

    from expmon.kafka.admin import TopicSpec, ensure_topics

    console = Console(stderr=True)
    with RecordingReader(path) as reader:
        if into is not None and len(reader.partitions) != 1:
            raise RangeError(
                f"--into needs a recording of one topic; {path} holds "
                f"{', '.join(reader.partitions)}"
            )
        target = {t: into or t for t in reader.partitions}
        ensure_topics(settings, [TopicSpec(target[t], n) for t, n in reader.partitions.items()])
        total = count_records(path)
        producer = KafkaProducer(
            **kafka_python_kwargs(settings), linger_ms=20, max_request_size=4 * 1024 * 1024
        )
        sent = 0
        with _progress(console, progress) as bar:
            task = bar.add_task("load", total=total, rate="")
            for batch in reader.batches():
                for r in batch:
                    producer.send(
                        target[r.topic], key=r.key, value=r.value,
                        partition=r.partition % reader.partitions[r.topic],
                        timestamp_ms=r.timestamp_ms, headers=list(r.headers),
                    )  # fmt: skip
                sent += len(batch)
                bar.update(task, advance=len(batch))
        producer.flush()
        producer.close()
    log.info("loaded %d records from %s into %s", sent, path, ", ".join(set(target.values())))
    return 0
