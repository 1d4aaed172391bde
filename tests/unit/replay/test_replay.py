"""Replay without a broker: simulated records through ReplayPipeline, reports, recordings."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from expmon.alerting.rules import load_rules
from expmon.cli.main import _relative_points
from expmon.errors import ConfigError
from expmon.exposition.metrics import Metrics, new_registry
from expmon.families.registry import SIGNALS
from expmon.kafka.partition import partition_for
from expmon.replay.kafka_range import Point, RangeError, check_order, parse_point
from expmon.replay.recording import (
    RecordingError,
    RecordingReader,
    RecordingWriter,
    count_records,
    decode_line,
    encode_line,
)
from expmon.replay.report import render_markdown, report_bytes
from expmon.replay.run import Pacer, ReplayOptions, parse_speed, run_replay
from expmon.replay.session import ReplayPipeline, ReplayRecord
from expmon.settings import Settings
from expmon.sim.encoding import encode_records
from expmon.sim.incidents import parse_incidents
from expmon.sim.journeys import TrafficGenerator
from schemas import codec
from schemas.events import EventFamily

MINUTE = 60_000
START = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE
SETTINGS = Settings.from_env(kafka_bootstrap="unused:9092")
TOPICS = {
    EventFamily.PAGE_LOAD: SETTINGS.topic_page_loads,
    EventFamily.CHECKOUT: SETTINGS.topic_checkout,
    EventFamily.LOGISTICS: SETTINGS.topic_logistics,
}
# Simulated volumes are small: the incident must stand out without a production volume.
RULES_FILE = """\
rules:
  - alert: PaymentFailureRateHigh
    threshold: 0.15
    min_volume: 20
"""


def simulated(minutes: int = 14, batch_size: int = 1) -> list[tuple[str, str, bytes, int]]:
    generator = TrafficGenerator(
        seed=5, rate=40, start_ms=START, duration_s=minutes * 60,
        incidents=parse_incidents(
            ("slow_pages@2m+8m:region=eu-west", "payment_outage@2m+8m:provider=adyen")
        ),
        mix={"page_load": 0.6, "checkout": 0.4},
    )  # fmt: skip
    return [
        (TOPICS[r.family], r.key, r.value, r.time_ms)
        # a batch holds events of one partition only, as a collector batching per user
        for r in encode_records(
            generator, batch_size=batch_size, seed=5, partitions=dict.fromkeys(TOPICS, 3)
        )
    ]


def as_records(
    items: list[tuple[str, str, bytes, int]], partitions: int
) -> tuple[list[ReplayRecord], dict[str, int]]:
    """Records as Kafka would store them on `partitions` partitions (keyed by murmur2)."""
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for topic, key, value, time_ms in items:
        partition = partition_for(key, partitions)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        records.append(ReplayRecord(topic, partition, offset, time_ms, key.encode(), value))
    return records, {topic: partitions for topic in TOPICS.values()}


def run(
    records: list[ReplayRecord],
    partitions: dict[str, int],
    batch: int = 500,
    candidate: str | None = None,
    tmp_path: Path | None = None,
) -> dict[str, object]:
    assert tmp_path is not None
    live = tmp_path / "live.yml"
    live.write_text(RULES_FILE)
    rules = load_rules((live,), SETTINGS.views, signals=SIGNALS)
    candidate_rules = None
    if candidate is not None:
        other = tmp_path / "candidate.yml"
        other.write_text(candidate)
        candidate_rules = load_rules(
            (live, other), SETTINGS.views, signals=SIGNALS
        )  # as replay_run does
    pipeline = ReplayPipeline(SETTINGS, partitions, rules, candidate_rules)
    for i in range(0, len(records), batch):
        pipeline.feed(records[i : i + batch])
    pipeline.finish()
    return pipeline.report()


@pytest.fixture(scope="module")
def items() -> list[tuple[str, str, bytes, int]]:
    return simulated()


def test_incident_raises_the_alerts_the_live_rules_would(
    items: list[tuple[str, str, bytes, int]], tmp_path: Path
) -> None:
    records, partitions = as_records(items, 3)
    report = run(records, partitions, tmp_path=tmp_path)
    firing = {
        (e["alertname"], e["labels"].get("provider") or e["labels"].get("page"))
        for e in report["alerts"]  # type: ignore[attr-defined]
        if e["state"] == "firing"
    }
    assert ("PaymentFailureRateHigh", "adyen") in firing
    assert any(name == "PageLoadSlow" for name, _ in firing)
    events = report["events"][SETTINGS.topic_page_loads]  # type: ignore[index]
    assert events["accepted"] > 1000 and events["late"] == 0
    # every window of the range closed, the last one included
    ends = [w["end_ms"] for w in report["windows"] if w["view"] == "1m"]  # type: ignore[attr-defined]
    last_event = max(t for _, _, _, t in items)
    assert max(ends) == last_event - last_event % MINUTE + MINUTE


@pytest.mark.parametrize(("partitions", "batch"), [(1, 50), (3, 500), (6, 7)])
def test_report_bytes_do_not_depend_on_partitions_or_batching(
    items: list[tuple[str, str, bytes, int]], tmp_path: Path, partitions: int, batch: int
) -> None:
    reference = report_bytes(run(*as_records(items, 2), batch=1000, tmp_path=tmp_path))
    records, counts = as_records(items, partitions)
    assert report_bytes(run(records, counts, batch=batch, tmp_path=tmp_path)) == reference


def test_batched_records_give_the_windows_of_single_records(tmp_path: Path) -> None:
    single = run(*as_records(simulated(6, batch_size=1), 3), tmp_path=tmp_path)
    batched = run(*as_records(simulated(6, batch_size=20), 3), tmp_path=tmp_path)
    assert batched["windows"] == single["windows"]
    assert batched["alerts"] == single["alerts"]


def test_what_if_shows_alerts_only_the_candidate_rules_raise(
    items: list[tuple[str, str, bytes, int]], tmp_path: Path
) -> None:
    stricter = "rules:\n  - alert: PageLoadSlow\n    enabled: false\n"
    report = run(*as_records(items, 3), candidate=stricter, tmp_path=tmp_path)
    what_if = report["what_if"]
    dropped = {e["alertname"] for e in what_if["only_live"]}  # type: ignore[index]
    assert dropped == {"PageLoadSlow"}
    assert what_if["only_candidate"] == []  # type: ignore[index]
    assert "PageLoadSlow" not in {e["alertname"] for e in what_if["candidate"]}  # type: ignore[index]
    markdown = render_markdown(report)
    assert "## What if: candidate rules" in markdown and "PaymentFailureRateHigh" in markdown


def test_bad_records_are_counted_not_fatal(tmp_path: Path) -> None:
    topic = SETTINGS.topic_page_loads
    good = codec.dumps(
        {"event_id": "e1", "occurred_at": START + 1000, "schema_version": 1,
         "session_id": "s", "device": "mobile", "platform": "web", "region": "eu-west",
         "page": "/", "load_ms": 900}
    )  # fmt: skip
    records = [
        ReplayRecord(topic, 0, 0, START + 1000, b"s", good),
        ReplayRecord(topic, 0, 1, START + 1000, b"s", b"{not json"),
        ReplayRecord(topic, 0, 2, START + 1000, b"s", good),
    ]
    report = run(records, {topic: 1}, tmp_path=tmp_path)
    assert report["events"] == {topic: {"accepted": 1, "invalid": 1, "late": 0, "duplicate": 1}}
    assert sum(report["dead_letters"].values()) == 1  # type: ignore[attr-defined]


def test_a_record_of_a_topic_not_replayed_is_an_error(tmp_path: Path) -> None:
    pipeline = ReplayPipeline(SETTINGS, {SETTINGS.topic_page_loads: 1}, [])
    with pytest.raises(ValueError, match="does not read"):
        pipeline.feed([ReplayRecord("other", 0, 0, START, None, b"{}")])
    with pytest.raises(ValueError, match="not an input topic"):
        ReplayPipeline(SETTINGS, {"other": 1}, [])


# ---------------------------------------------------------------- recordings
@pytest.mark.parametrize("name", ["rec.ndjson", "rec.ndjson.gz"])
def test_recording_round_trip_keeps_every_byte(tmp_path: Path, name: str) -> None:
    records = [
        ReplayRecord("page-loads", 2, 7, START, b"k", b'{"a":1}', (("h", b"\x00\xff"),)),
        ReplayRecord("page-loads", 0, 8, START + 1, None, b"\xff\xfe not utf-8"),
        ReplayRecord("checkout-events", 1, 0, START + 2, b"\xc3", None),
    ]
    path = tmp_path / name
    with RecordingWriter(path, {"page-loads": 3, "checkout-events": 2}) as writer:
        for record in records:
            writer.write(record)
    assert count_records(path) == len(records)
    with RecordingReader(path) as reader:
        assert reader.partitions == {"page-loads": 3, "checkout-events": 2}
        assert [r for batch in reader.batches(2) for r in batch] == records


def test_a_file_that_is_not_a_recording_says_so(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(RecordingError, match="not an expmon recording"):
        RecordingReader(path)
    with pytest.raises(RecordingError, match="no such file"):
        RecordingReader(tmp_path / "missing.ndjson")


# ---------------------------------------------------------------- ranges and options
NOW = 1_790_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("earliest", Point("earliest")),
        ("now", Point("latest")),
        ("-2h", Point("time", time_ms=NOW - 7_200_000)),
        ("-90s", Point("time", time_ms=NOW - 90_000)),
        ("2026-11-23T10:00:00Z", Point("time", time_ms=1_795_428_000_000)),
        ("@1500", Point("offsets", offsets={-1: 1500})),
        ("0:10,2:30", Point("offsets", offsets={0: 10, 2: 30})),
    ],
)
def test_range_points(text: str, expected: Point) -> None:
    assert parse_point(text, now_ms=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "-2x", "@-1", "0:a", "2026-13-40T00:00:00Z"])
def test_bad_range_points_say_what_is_accepted(text: str) -> None:
    with pytest.raises(RangeError, match="RFC 3339"):
        parse_point(text, now_ms=NOW)


def test_from_after_to_is_one_clear_error() -> None:
    with pytest.raises(RangeError, match="is after --to"):
        check_order(parse_point("-1h", now_ms=NOW), parse_point("-2h", now_ms=NOW))
    with pytest.raises(RangeError, match="nothing to read"):
        check_order(Point("latest"), Point("latest"))


@pytest.mark.parametrize(("text", "speed"), [("max", None), ("1x", 1.0), ("10x", 10.0)])
def test_speed(text: str, speed: float | None) -> None:
    assert parse_speed(text) == speed


def test_pacer_holds_the_replay_to_its_speed() -> None:
    pacer = Pacer(100.0)  # 100x: 20 s of record time in 0.2 s

    async def feed() -> None:
        for t in range(0, 20_001, 5000):
            await pacer.wait([ReplayRecord("t", 0, 0, START + t, None, None)])

    start = time.monotonic()
    asyncio.run(feed())
    assert 0.18 <= time.monotonic() - start < 1.0


def test_replay_metrics_go_to_the_registry_given(
    items: list[tuple[str, str, bytes, int]],
) -> None:
    registry = new_registry()
    records, partitions = as_records(items[:3000], 3)
    pipeline = ReplayPipeline(SETTINGS, partitions, [], metrics=Metrics(registry))
    pipeline.feed(records)
    pipeline.finish()
    accepted = registry.get_sample_value(
        "expmon_events_total", {"topic": SETTINGS.topic_page_loads, "outcome": "accepted"}
    )
    assert accepted == pipeline.counts[SETTINGS.topic_page_loads]["accepted"] > 0
    windows = registry.get_sample_value(
        "expmon_windows_final_total", {"family": "page_load", "window": "5m"}
    )
    assert windows is not None and windows > 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["replay", "--from", "-2h", "--to", "-1h"], ["replay", "--from=-2h", "--to=-1h"]),
        (["replay", "--from", "earliest"], ["replay", "--from", "earliest"]),
        (["record", "dump", "--to", "-90s", "-o", "x"], ["record", "dump", "--to=-90s", "-o", "x"]),
    ],
)
def test_relative_points_reach_argparse_as_values(argv: list[str], expected: list[str]) -> None:
    assert _relative_points(argv) == expected


def test_run_replay_from_a_recording_writes_the_reports(
    items: list[tuple[str, str, bytes, int]], tmp_path: Path
) -> None:
    records, partitions = as_records(items, 3)
    recording = tmp_path / "r.ndjson.gz"
    with RecordingWriter(recording, partitions) as writer:
        for record in records:
            writer.write(record)
    options = ReplayOptions(
        file=recording, report=tmp_path / "r.json", markdown=tmp_path / "r.md", progress=False
    )
    assert run_replay(SETTINGS, options) == 0
    direct = ReplayPipeline(SETTINGS, partitions, load_rules((), SETTINGS.views, signals=SIGNALS))
    direct.feed(records)
    direct.finish()
    assert (tmp_path / "r.json").read_bytes() == report_bytes(direct.report())
    assert "## Alert transitions" in (tmp_path / "r.md").read_text()


def test_a_recording_of_other_topics_names_the_setting_to_use(tmp_path: Path) -> None:
    recording = tmp_path / "r.ndjson"
    with RecordingWriter(recording, {"page-loads-copy": 1}) as writer:
        writer.write(ReplayRecord("page-loads-copy", 0, 0, START, None, b"{}"))
    options = ReplayOptions(file=recording, report=tmp_path / "r.json", progress=False)
    with pytest.raises(ConfigError, match="EXPMON_TOPIC_PAGE_LOADS=page-loads-copy"):
        run_replay(SETTINGS, options)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "record",
    [
        ReplayRecord("page-loads", 2, 41, 1_700_000_000_000, b"s-1", b'{"a": "\\u00e9\\""}'),
        ReplayRecord("page-loads", 0, 0, 5, None, None),
        ReplayRecord("checkout", 1, 7, 5, b"", b""),
        ReplayRecord("checkout", 1, 7, 5, b"\xff\xfe", b"\x00{"),  # not UTF-8: base64
        ReplayRecord("checkout", 1, 7, 5, b"k", b"v", (("h", b"\x01"), ("trace", b"abc"))),
    ],
)
def test_a_recorded_line_gives_back_its_record(record: ReplayRecord) -> None:
    assert decode_line(encode_line(record)) == record


@pytest.mark.parametrize(
    ("line", "record"),
    [
        # loosely typed fields, as older or hand-made files may hold them
        (b'{"topic":"t","partition":"3","offset":5.0,"timestamp_ms":9,"key":null,"value":12}',
         ReplayRecord("t", 3, 5, 9, None, b"12")),
        (b'{"topic":"t","partition":1,"offset":2,"timestamp_ms":3,"value":"x","extra":1}',
         ReplayRecord("t", 1, 2, 3, None, b"x")),
    ],
)  # fmt: skip
def test_a_loosely_typed_line_is_read_as_before(line: bytes, record: ReplayRecord) -> None:
    assert decode_line(line) == record


@pytest.mark.parametrize("line", [b'{"topic":"t","partition":1}', b"{broken"])
def test_an_unreadable_line_is_an_error(line: bytes) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        decode_line(line)
