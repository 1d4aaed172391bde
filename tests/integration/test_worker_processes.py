"""`expmon worker --processes 2`: two children in one group give the windows of a replay."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from expmon.local.procs import free_port, wait_ready
from schemas import codec
from tests.integration.test_page_load_worker import (
    MINUTE,
    create_topics,
    page_load,
    producer,
    recent_minute,
    reference_views,
)
from tests.integration.worker_process import (
    assert_rows_match,
    read_topic,
    settings_env,
    settled_views,
)


def test_two_processes_give_the_replay_windows_and_stop_on_sigterm(
    settings_factory: Any, tmp_path: Path
) -> None:
    base = free_port()
    settings = settings_factory(metrics_port=base)
    create_topics(settings)  # 3 partitions: both children get some
    rng = random.Random(5)
    t0 = recent_minute(15)
    prod = producer(settings)
    for i in range(3000):
        for p in range(3):
            value = codec.dumps(
                page_load(f"k{p}-{i}", t0 + i * 100 + rng.randint(-2000, 2000), rng)
            )
            prod.send(settings.topic_page_loads, value=value, partition=p)
            if i % 40 == 0:
                prod.send(settings.topic_page_loads, value=value, partition=p)  # duplicate
    flush_t = t0 + 3000 * 100 + 3 * MINUTE
    for p in range(3):
        end = codec.dumps(page_load(f"end-{p}", flush_t, rng))
        prod.send(settings.topic_page_loads, value=end, partition=p)
    prod.flush()
    prod.close()

    log_path = tmp_path / "supervisor.log"
    with log_path.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "expmon.cli", "worker", "--processes", "2"],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def tail() -> str:
        return ":\n" + "\n".join(log_path.read_text(errors="replace").splitlines()[-80:])

    try:
        for port in (base, base + 1):  # each child serves its own /metrics
            wait_ready(f"http://127.0.0.1:{port}/readyz", supervisor, "worker", 90, tail)
        through = flush_t - 30_000 - (flush_t - 30_000) % MINUTE
        reference = reference_views(
            settings, read_topic(settings, settings.topic_page_loads), through
        )
        views = settled_views(settings, list(reference), through, timeout=150)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(60)
    assert code == 0, tail()
    got = {k: v for k, v in views.items() if v["end_ms"] <= through}
    assert got.keys() == reference.keys()
    for key, expected in reference.items():
        assert_rows_match(got[key]["rows"], expected["rows"], key)
    # both children ran (own state dirs) and both stopped
    assert (settings.state_dir / "process-0").is_dir() and (
        settings.state_dir / "process-1"
    ).is_dir()
