"""The exposition of every family, built from simulated traffic with every incident, is
what Prometheus' own linter accepts, and window quantiles are a summary under the
contract's name."""

from __future__ import annotations

import subprocess
from functools import cache

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from expmon.exposition.metrics import Metrics, new_registry
from expmon.families.registry import FAMILIES
from expmon.settings import Settings
from expmon.sim.encoding import encode_records
from expmon.sim.incidents import parse_incidents
from expmon.sim.journeys import TrafficGenerator
from schemas import codec
from tests.unit.helpers import merge, place, run_stage

START_MS = 1_704_067_200_000
NOW_MS = START_MS + 10**8
INCIDENTS = (
    "slow_pages@2m+5m:page=/checkout,factor=4",
    "payment_outage@2m+5m:provider=adyen",
    "carrier_delay@1m+6m:carrier=ups",
    "checkout_stall@3m+3m",
    "warehouse_backlog@2m+3m:warehouse=ams-1",
    "bad_records@1m+2m:rate=3",
)
# labels a hostile client could send: they must never reach the page as sent
HOSTILE_PAGES = ("/p\r\nx 1", "/nul\x00", "/search?email=a@b.example", "/cart#pay")


def hostile_records(partitions: int) -> list[bytes]:
    out = []
    for i, page in enumerate(HOSTILE_PAGES):
        out.append(
            codec.dumps(
                {
                    "event_id": f"hostile-{i}",
                    "occurred_at": START_MS + 30_000,
                    "schema_version": 1,
                    "session_id": f"hs-{i}",
                    "device": "mobile",
                    "platform": "web",
                    "region": "eu-west",
                    "page": page,
                    "load_ms": 900,
                }
            )
        )
    return out


@cache
def exposition() -> bytes:
    settings = Settings(ship_sla_seconds=48, tracking_stale_seconds=24)
    generator = TrafficGenerator(
        seed=5, rate=40, start_ms=START_MS, duration_s=480,
        incidents=parse_incidents(INCIDENTS), lifecycle_compression=3600,
    )  # fmt: skip
    records = list(encode_records(generator, batch_size=1))
    metrics = Metrics(new_registry())
    for family in FAMILIES:
        stage = family.new_stage(settings, 3)
        placed = place([r for r in records if r.family == family.name], 3)
        if family.name == "page_load":
            from expmon.engine.stage import RawRecord

            offset = max((r.offset for r in placed if r.partition == 0), default=-1)
            placed += [
                RawRecord(0, offset + 1 + i, b"h", value)
                for i, value in enumerate(hostile_records(3))
            ]
        outputs = run_stage(stage, placed, now_ms=NOW_MS)
        metrics.attach(stage)
        for out in outputs:
            metrics.count_outcomes(stage.topic, out.counts)
            for letter in out.dead_letters:
                metrics.dead_letters.labels(stage.topic, letter.reason).inc()
        results, _ = merge(family.new_merger(settings), outputs)
        for result in results:
            metrics.board.update(result)
    return generate_latest(metrics.registry)


def test_promtool_accepts_the_exposition() -> None:
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition(), capture_output=True, check=False
    )
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()[:3000]
    assert checked.stdout + checked.stderr == b""


def test_window_quantiles_are_a_summary_with_count_and_sum() -> None:
    families = {f.name: f for f in text_string_to_metric_families(exposition().decode())}
    summary = families["expmon_page_load_quantile_seconds"]
    assert summary.type == "summary"
    loads = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["expmon_page_load_window_loads"].samples
    }
    by_name: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    quantiles: set[str] = set()
    for s in summary.samples:
        labels = dict(s.labels)
        if "quantile" in labels:
            quantiles.add(labels.pop("quantile"))
        by_name.setdefault(s.name, {})[tuple(sorted(labels.items()))] = s.value
    assert quantiles == {"0.5", "0.75", "0.95", "0.99"}
    # _count is the view's loads, one per quantile series; _sum lies between the bounds
    assert by_name["expmon_page_load_quantile_seconds_count"] == loads
    assert set(by_name["expmon_page_load_quantile_seconds_sum"]) == set(loads)
    for key, total in by_name["expmon_page_load_quantile_seconds_sum"].items():
        assert 0 < total < loads[key] * 60


def test_hostile_pages_are_dead_lettered_or_reduced_to_their_route() -> None:
    families = {f.name: f for f in text_string_to_metric_families(exposition().decode())}
    pages = {
        s.labels["page"] for s in families["expmon_page_load_seconds"].samples if "page" in s.labels
    }
    assert "/search" in pages and "/cart" in pages
    assert not any("?" in p or "#" in p or not p.isprintable() for p in pages), pages
    reasons = {
        s.labels["reason"]: s.value
        for s in families["expmon_dead_letters"].samples
        if s.name == "expmon_dead_letters_total"
    }
    assert reasons["control_characters:page"] == 2
