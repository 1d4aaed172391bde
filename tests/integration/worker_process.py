"""Run `expmon worker` as a real subprocess for tests, and read what it publishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from expmon.kafka.connection import kafka_python_kwargs
from expmon.local.procs import free_port, wait_ready
from expmon.settings import Settings
from schemas import codec


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPMON_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, tuple | list):
            text = json.dumps([v if isinstance(v, int | float) else str(v) for v in value])
        else:
            text = str(value)
        env[f"EXPMON_{name.upper()}"] = text
    return env


def expmon_cli(
    settings: Settings, *args: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """`expmon ARGS` as a user runs it, configured by EXPMON_* variables only."""
    return subprocess.run(
        [sys.executable, "-m", "expmon.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"metrics_port": self.port})
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "expmon.cli", "worker"],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{self.port}/readyz"
        try:
            wait_ready(url, self.proc, "worker", timeout, lambda: f":\n{self.log_tail()}")
        except BaseException:
            # A worker that never got ready must not outlive the test (one was left
            # consuming a core for minutes after its test had failed).
            self.proc.kill()
            self.proc.wait(10)
            raise
        return self

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def scrape(self, *names: str) -> str:
        """The /metrics page as served; with `names`, of those families only (`name[]`)."""
        query = "&".join(f"name[]={name}" for name in names)
        url = f"http://127.0.0.1:{self.port}/metrics" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def metrics(self, *names: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Samples of the /metrics page; with `names`, of those families only (`name[]`)."""
        text = self.scrape(*names)
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def events_total(self, outcome: str | None = None) -> float:
        return sum(
            value
            for (name, labels), value in self.metrics().items()
            if name == "expmon_events_total" and (outcome is None or ("outcome", outcome) in labels)
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"worker ignored SIGTERM for 30 s:\n{self.log_tail()}") from None


def read_topic(settings: Settings, topic: str, timeout_ms: int = 3000) -> list[Any]:
    """Every record of a topic, all partitions, in partition then offset order."""
    consumer = KafkaConsumer(
        **kafka_python_kwargs(settings), enable_auto_commit=False, consumer_timeout_ms=timeout_ms
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        # Bounded: offsets past the last record (compaction, control records) must not hang.
        deadline = time.monotonic() + timeout_ms / 1000 * 10
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                stuck = {tp.partition: (consumer.position(tp), end[tp]) for tp in tps}
                raise AssertionError(f"reading {topic} stalled at (position, end) {stuck}")
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def final_views(settings: Settings) -> dict[str, dict[str, Any]]:
    """Latest value per key of the windows topic (it is compacted by key)."""
    views: dict[str, dict[str, Any]] = {}
    for record in read_topic(settings, settings.topic_windows):
        views[record.key.decode()] = codec.loads(record.value)
    return views


def settled_views(
    settings: Settings, wanted: list[str], through: int, timeout: float, quiet_s: float = 10.0
) -> dict[str, dict[str, Any]]:
    """The windows topic once every `wanted` view exists and the views ending by `through`
    stopped changing for `quiet_s`: a view shown early may be corrected (a later revision)
    while workers catch up after a kill or a rebalance, so its first revision is not its
    answer."""
    return settled_views_of([settings], wanted, through, timeout, quiet_s)[0]


def settled_views_of(
    groups: list[Settings], wanted: list[str], through: int, timeout: float, quiet_s: float = 10.0
) -> list[dict[str, dict[str, Any]]]:
    """`settled_views` of several workers' windows topics, waited for together (each must
    have been quiet for `quiet_s`; one wait, not one per topic)."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any] | None] = [None] * len(groups)
    stable_since = [time.monotonic()] * len(groups)
    while True:
        now_views = [final_views(settings) for settings in groups]
        now = time.monotonic()
        for i, views in enumerate(now_views):
            upto = {k: v for k, v in views.items() if v["end_ms"] <= through}
            if upto != last[i]:
                last[i], stable_since[i] = upto, now
        if all(
            all(k in views for k in wanted) and now - since >= quiet_s
            for views, since in zip(now_views, stable_since, strict=True)
        ):
            return now_views
        if time.monotonic() > deadline:
            missing = [[k for k in wanted if k not in views] for views in now_views]
            raise AssertionError(f"views not settled in {timeout:.0f} s; missing {missing}")
        time.sleep(2)


def assert_rows_match(rows: list[dict[str, Any]], expected: list[dict[str, Any]], key: Any) -> None:
    """A view's rows equal the reference's: every field exactly, the mean (a float sum)
    to 1e-12; None where a row has no mean (CWV rows, windows without loads)."""
    assert [{**r, "mean_ms": None} for r in rows] == [{**r, "mean_ms": None} for r in expected], key
    got_means = [r.get("mean_ms") for r in rows]
    want_means = [r.get("mean_ms") for r in expected]
    assert [m is None for m in got_means] == [m is None for m in want_means], key
    assert [m for m in got_means if m is not None] == pytest.approx(
        [m for m in want_means if m is not None], rel=1e-12
    ), key
