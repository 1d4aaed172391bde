"""The collector bench: `expmon collect` (one process) against the real broker, loaded by
`wrk` (Debian package), one event per request and batches of 10.

Every request carries new event ids (wrk's Lua `request()` makes each body), so nothing
is a duplicate and every 202 is produced with acks=all. After each run the bench checks
what it measured: wrk's request count equals the collector's 202 count, and the topic grew
by exactly the accepted events. Requests/s and latency percentiles are wrk's (client side,
the broker's ack included); events/s = requests/s x events per request.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from expmon.errors import ExpmonError
from expmon.kafka.admin import TopicSpec, ensure_topics
from expmon.kafka.connection import kafka_python_kwargs
from expmon.local.procs import binary, free_port, stop_process, wait_ready
from expmon.settings import Settings

log = logging.getLogger(__name__)

ROUTE = "/v1/page-loads"
# One wrk thread per core of this 2-core machine would starve the collector and broker.
WRK_THREADS = 1

LUA = r"""
local n, prefix, now_ms
local counter = 0
local next_thread = 0
function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end
function init(args)
  n = tonumber(args[1])
  prefix = args[2] .. "-" .. tid .. "-"
  now_ms = tonumber(args[3])
end
function request()
  counter = counter + 1
  local parts = {}
  for i = 1, n do
    local id = prefix .. counter .. "-" .. i
    parts[i] = string.format(
      '{"event_id":"%s","occurred_at":%d,"schema_version":1,"session_id":"s-%s",' ..
      '"device":"desktop","platform":"web","region":"eu-west","page":"/product/:id",' ..
      '"load_ms":%d}', id, now_ms, id, 300 + (counter * 7 + i) % 4000)
  end
  local body = parts[1]
  if n > 1 then body = "[" .. table.concat(parts, ",") .. "]" end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class CollectorResult:
    events_per_request: int
    connections: int
    seconds: float
    requests: int
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    accepted_events: int  # the collector's count
    on_topic: int  # records the topic grew by


class CollectorBenchError(ExpmonError):
    """The collector bench could not run or its figures did not check out."""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise CollectorBenchError(f"wrk latency {text!r} not understood")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of `wrk --latency` output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if total is None or rate is None:
        raise CollectorBenchError(f"wrk output not understood:\n{output}")
    percentiles = {
        int(p): _ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", output, re.M)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "requests": int(total[1]),
        "requests_per_s": float(rate[1]),
        "p50_ms": percentiles.get(50, 0.0),
        "p90_ms": percentiles.get(90, 0.0),
        "p99_ms": percentiles.get(99, 0.0),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def _end_offsets(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(**kafka_python_kwargs(settings), enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return int(sum(ends.values()))
    finally:
        consumer.close()


def _accepted(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "expmon_collector_events_total"
                and sample.labels.get("outcome") == "accepted"
            ):
                return int(sample.value)
    return 0


def run_collector_bench(
    settings: Settings,
    run_id: str,
    *,
    seconds: float = 10.0,
    connections: int = 32,
    batches: tuple[int, ...] = (1, 10),
    workdir: Path | None = None,
) -> list[CollectorResult]:
    wrk = binary("wrk")
    topic = f"bench-collect-{run_id}"
    dlq = f"bench-collect-dlq-{run_id}"
    others = {  # the collector checks every topic it may write to at start
        "topic_checkout": f"bench-collect-checkout-{run_id}",
        "topic_logistics": f"bench-collect-logistics-{run_id}",
    }
    partitions = settings.topic_partitions
    specs = [TopicSpec(topic, partitions), TopicSpec(dlq, 1)]
    ensure_topics(settings, [*specs, *(TopicSpec(t, 1) for t in others.values())])
    port = free_port()
    bench_settings = settings.model_copy(
        update={
            **others,
            "topic_page_loads": topic,
            "topic_dlq": dlq,
            "collect_port": port,
            "collect_rate_per_second": 1e9,
            "collect_rate_burst": 1_000_000_000,
        }
    )
    url = f"http://127.0.0.1:{port}"
    results: list[CollectorResult] = []
    with tempfile.TemporaryDirectory(prefix="expmon-collector-bench-", dir=workdir) as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        logfile = Path(tmp) / "collector.log"
        env = _env(bench_settings)
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "expmon.cli", "collect"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_ready(f"{url}/healthz", proc, "collector", 60, lambda: f": {_tail(logfile)}")
            for n in batches:
                before_topic = _end_offsets(bench_settings, topic)
                before_accepted = _accepted(url)
                cmd = [
                    wrk, f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds:g}s",
                    "--latency", "-s", str(script), f"{url}{ROUTE}", "--",
                    str(n), f"{run_id}-{n}", str(time.time_ns() // 1_000_000),
                ]  # fmt: skip
                log.info("collector bench: %d event(s) per request, %g s", n, seconds)
                done = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=seconds + 60, check=False
                )
                if done.returncode != 0:
                    raise CollectorBenchError(f"wrk failed: {done.stderr or done.stdout}")
                figures = parse_wrk(done.stdout)
                time.sleep(1.0)  # requests in flight when wrk stopped are answered by now
                accepted = _accepted(url) - before_accepted
                grown = _end_offsets(bench_settings, topic) - before_topic
                result = CollectorResult(
                    events_per_request=n,
                    connections=connections,
                    seconds=seconds,
                    events_per_s=figures["requests_per_s"] * n,
                    accepted_events=accepted,
                    on_topic=grown,
                    **figures,
                )
                _check(result)
                results.append(result)
        finally:
            stop_process(proc, "collector")
    return results


def _tail(path: Path, lines: int = 5) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _check(result: CollectorResult) -> None:
    """The figures are honest only if every request was a produced 202."""
    if result.non_2xx or result.socket_errors:
        raise CollectorBenchError(
            f"{result.non_2xx} non-2xx answers, {result.socket_errors} socket errors"
        )
    # wrk counts the requests it completed; one in flight at its stop may still be answered
    expected = result.requests * result.events_per_request
    if not expected <= result.accepted_events <= expected + result.connections * 10:
        raise CollectorBenchError(
            f"collector accepted {result.accepted_events} events, wrk completed {expected}"
        )
    if result.on_topic != result.accepted_events:
        raise CollectorBenchError(
            f"topic grew by {result.on_topic} records, collector accepted {result.accepted_events}"
        )


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPMON_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, tuple | list):
            continue  # defaults are fine for the bench (views, rule files)
        secret = getattr(value, "get_secret_value", None)
        env[f"EXPMON_{name.upper()}"] = str(secret() if secret else value)
    env["EXPMON_LOG_LEVEL"] = "WARNING"
    return env


def result_rows(results: list[CollectorResult]) -> list[list[str]]:
    return [
        [
            f"{r.events_per_request}",
            f"{r.connections}",
            f"{r.requests_per_s:,.0f}",
            f"{r.events_per_s:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.on_topic:,}",
        ]
        for r in results
    ]


COLUMNS = (
    "ev/req",
    "conns",
    "requests/s",
    "events/s",
    "p50 ms",
    "p99 ms",
    "on topic",
)


def as_dicts(results: list[CollectorResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def run_collector(
    bootstrap: str | None, log_level: str, output: str | None, alone: bool = True
) -> int:
    """`expmon bench --scenario collector`: a local broker unless given, the table, JSON."""
    import orjson
    from rich.console import Console
    from rich.table import Table

    from expmon.bench.run import machine_info
    from expmon.local.kafka.broker import LocalKafka
    from expmon.settings import default_cache_dir

    kafka = None
    if bootstrap is None:
        kafka = LocalKafka(default_cache_dir())
        kafka.start()
        bootstrap = kafka.bootstrap
    settings = Settings.from_env(kafka_bootstrap=bootstrap, log_level=log_level)
    run_id = f"{time.strftime('%H%M%S')}-{os.getpid()}"
    try:
        results = run_collector_bench(settings, run_id)
    except CollectorBenchError as exc:
        log.error("collector bench failed: %s", exc)
        return 1
    finally:
        if kafka is not None:
            kafka.stop()
    table = Table(title="expmon collect, one process, real broker (wrk, acks=all)")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for row in result_rows(results):
        table.add_row(*row)
    Console().print(table)
    if output:
        path = Path(output)
        if not alone:
            path = path.with_name(f"{path.stem}-collector{path.suffix}")
        report = {"machine": machine_info(), "collector": as_dicts(results)}
        path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        log.info("collector results written to %s", path)
    return 0
