"""Simulator: reproducibility, validity, incidents, bad records, record encoding (no broker)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from expmon.engine.sketch import exact_quantile
from expmon.kafka.partition import partition_for
from expmon.settings import Settings
from expmon.sim.bad_records import BadKind, BadRecord, bad_kinds_for, make_bad_record
from expmon.sim.catalogue import CARRIERS
from expmon.sim.encoding import encode_records
from expmon.sim.incidents import Incident, IncidentKind, parse_incident, parse_incidents
from expmon.sim.journeys import DEFAULT_START_MS, GeneratedItem, TrafficGenerator
from expmon.sim.produce import produce, run_simulate
from expmon.sim.truth import base as truth_file
from expmon.sim.truth.page_load import page_load_truth
from schemas import codec
from schemas.events import CHECKOUT_STEPS, LOGISTICS_STATUSES, Event, EventFamily, make_validators
from schemas.eventtime import parse_event_time_ms
from schemas.records import RecordDecoder, Rejected

MIN_MS = 60_000


def good(items: Iterable[GeneratedItem]) -> list[tuple[EventFamily, str, Event]]:
    return [(f, k, e) for f, k, e in items if not isinstance(e, BadRecord)]


def t_of(event: Event) -> int:
    return parse_event_time_ms(event["occurred_at"])


def in_range(event: Event, start_s: float, end_s: float, start_ms: int = DEFAULT_START_MS) -> bool:
    return start_ms + start_s * 1000 <= t_of(event) < start_ms + end_s * 1000


# --------------------------------------------------------------------------- reproducibility


def _fingerprint(gen: TrafficGenerator) -> list[bytes]:
    return [
        f.value.encode() + k.encode() + (e.value if isinstance(e, BadRecord) else codec.dumps(e))
        for f, k, e in gen
    ]


def test_same_seed_same_events() -> None:
    incidents = ["bad_records@5s+10s:rate=3", "slow_pages@10s+10s:region=eu-west"]
    a = TrafficGenerator(seed=7, rate=80, duration_s=40, incidents=incidents)
    b = TrafficGenerator(seed=7, rate=80, duration_s=40, incidents=incidents)
    first = _fingerprint(a)
    assert len(first) > 1000
    assert first == _fingerprint(b)
    assert first == _fingerprint(a)  # iterating again starts over


def test_different_seed_different_events() -> None:
    a = _fingerprint(TrafficGenerator(seed=1, rate=50, duration_s=20))
    b = _fingerprint(TrafficGenerator(seed=2, rate=50, duration_s=20))
    assert a != b
    ids_a = {e["event_id"] for _f, _k, e in good(TrafficGenerator(seed=1, rate=50, duration_s=20))}
    ids_b = {e["event_id"] for _f, _k, e in good(TrafficGenerator(seed=2, rate=50, duration_s=20))}
    assert not ids_a & ids_b


# --------------------------------------------------------------------------- validity


@pytest.fixture(scope="module")
def long_run() -> list[GeneratedItem]:
    """Compressed lifecycles (1 h of event time per second) so every status shows up."""
    gen = TrafficGenerator(
        seed=11,
        rate=400,
        duration_s=900,
        lifecycle_compression=3600,
        incidents=[
            "slow_pages@100s+100s:region=us-east",
            "payment_outage@200s+100s:provider=stripe",
            "carrier_delay@300s+100s:carrier=dhl,stall=true",
            "checkout_stall@400s+100s",
            "warehouse_backlog@500s+100s:warehouse=ams-1",
        ],
    )
    return list(gen)


def test_every_good_event_passes_its_validator(long_run: list[GeneratedItem]) -> None:
    validators = make_validators(max_future_ms=0)
    now = DEFAULT_START_MS + 900_000
    seen_ids: set[str] = set()
    steps: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    families: Counter[EventFamily] = Counter()
    for family, key, event in good(long_run):
        validated = validators[family](dict(event), now)
        assert validated["_t"] <= now
        assert event["event_id"] not in seen_ids
        seen_ids.add(event["event_id"])
        families[family] += 1
        if family is EventFamily.PAGE_LOAD:
            assert key == event["session_id"]
            assert event["page"].startswith("/")
        elif family is EventFamily.CHECKOUT:
            assert key == event["checkout_id"]
            steps[event["step"]] += 1
            if event["step"] == "order_placed":
                assert event["order_id"].startswith("ord-")
                assert event["amount"] > 0
                assert event["currency"] in ("EUR", "USD", "INR")
        else:
            assert key == event["order_id"]
            assert event["carrier"] in CARRIERS
            statuses[event["status"]] += 1
    assert set(steps) == set(CHECKOUT_STEPS)
    assert set(statuses) == set(LOGISTICS_STATUSES)
    assert families[EventFamily.PAGE_LOAD] > families[EventFamily.CHECKOUT] > 0
    assert families[EventFamily.LOGISTICS] > 0


def test_occurred_at_mixes_formats_and_stays_within_jitter(long_run: list[GeneratedItem]) -> None:
    kinds = Counter(type(e["occurred_at"]).__name__ for _f, _k, e in good(long_run))
    assert kinds["int"] > 0 and kinds["str"] > 0
    newest = 0
    worst = 0
    for _f, _k, event in good(long_run):
        t = t_of(event)
        worst = max(worst, newest - t)
        newest = max(newest, t)
    assert 0 < worst <= 2000


def test_checkout_orders_feed_logistics(long_run: list[GeneratedItem]) -> None:
    placed = {
        e["order_id"]
        for f, _k, e in good(long_run)
        if f is EventFamily.CHECKOUT and "order_id" in e
    }
    shipped = {e["order_id"] for f, _k, e in good(long_run) if f is EventFamily.LOGISTICS}
    assert placed & shipped


def test_families_filter_and_rate() -> None:
    items = list(TrafficGenerator(seed=3, rate=200, duration_s=60, families=["page_load"]))
    assert {f for f, _k, _e in items} == {EventFamily.PAGE_LOAD}
    assert 200 * 60 * 0.9 < len(items) < 200 * 60 * 1.1


# --------------------------------------------------------------------------- bad records


EXPECTED_REASON: dict[tuple[BadKind, EventFamily], str] = {}
for _family in EventFamily:
    for _kind, _reason in {
        BadKind.NOT_JSON: "not_json",
        BadKind.NOT_OBJECT: "not_object",
        BadKind.EMPTY_BATCH: "empty_batch",
        BadKind.BAD_SCHEMA_VERSION: "unsupported_schema_version",
        BadKind.TIMESTAMP_1970: "absurd_timestamp",
        BadKind.TIMESTAMP_2300: "absurd_timestamp",
        BadKind.OVERSIZE: "oversize",
    }.items():
        EXPECTED_REASON[(_kind, _family)] = _reason
EXPECTED_REASON.update(
    {
        (BadKind.WRONG_TYPE, EventFamily.PAGE_LOAD): "wrong_type:load_ms",
        (BadKind.WRONG_TYPE, EventFamily.CHECKOUT): "wrong_type:checkout_id",
        (BadKind.WRONG_TYPE, EventFamily.LOGISTICS): "wrong_type:order_id",
        (BadKind.MISSING_FIELD, EventFamily.PAGE_LOAD): "missing_field:load_ms",
        (BadKind.MISSING_FIELD, EventFamily.CHECKOUT): "missing_field:checkout_id",
        (BadKind.MISSING_FIELD, EventFamily.LOGISTICS): "missing_field:order_id",
        (BadKind.NEGATIVE_DURATION, EventFamily.PAGE_LOAD): "negative_value:load_ms",
        (BadKind.NEGATIVE_DURATION, EventFamily.CHECKOUT): "negative_value:amount",
        (BadKind.NAN_DURATION, EventFamily.PAGE_LOAD): "wrong_type:load_ms",
        (BadKind.NAN_DURATION, EventFamily.CHECKOUT): "wrong_type:amount",
        (BadKind.UNKNOWN_ENUM, EventFamily.PAGE_LOAD): "unknown_enum:device",
        (BadKind.UNKNOWN_ENUM, EventFamily.CHECKOUT): "unknown_enum:step",
        (BadKind.UNKNOWN_ENUM, EventFamily.LOGISTICS): "unknown_enum:status",
    }
)


def _decode(family: EventFamily, value: bytes, now: int) -> tuple[list[Event], list[Rejected]]:
    valid: list[Event] = []
    rejected: list[Rejected] = []
    RecordDecoder(family).decode(value, now, valid, rejected)
    return valid, rejected


@pytest.fixture(scope="module")
def bad_burst() -> list[GeneratedItem]:
    gen = TrafficGenerator(
        seed=5, rate=20, duration_s=60, incidents=["bad_records@10s+30s:rate=20,oversize=3"]
    )
    return list(gen)


@pytest.mark.parametrize(("kind", "family"), sorted(EXPECTED_REASON, key=str))
def test_bad_record_kind_fails_with_expected_reason(
    bad_burst: list[GeneratedItem], kind: BadKind, family: EventFamily
) -> None:
    now = DEFAULT_START_MS + 60_000
    found = [
        e for f, _k, e in bad_burst if isinstance(e, BadRecord) and e.kind is kind and f is family
    ]
    assert found, f"burst holds no {kind} for {family}"
    for bad in found:
        assert bad.expected_reason == EXPECTED_REASON[(kind, family)]
        valid, rejected = _decode(family, bad.value, now)
        assert not valid
        assert [r.reason for r in rejected] == [bad.expected_reason]


def test_bad_records_only_during_incident_and_oversize_capped(
    bad_burst: list[GeneratedItem],
) -> None:
    bads = [e for _f, _k, e in bad_burst if isinstance(e, BadRecord)]
    assert 400 < len(bads) < 800  # ~20/s for 30 s
    assert sum(1 for b in bads if b.kind is BadKind.OVERSIZE) == 3
    assert all(len(b.value) > 1_000_000 for b in bads if b.kind is BadKind.OVERSIZE)
    assert all(len(b.value) < 1_048_576 - 4096 for b in bads)  # fits Kafka's default limit


def test_durations_are_absent_from_logistics_bad_kinds() -> None:
    assert BadKind.NEGATIVE_DURATION not in bad_kinds_for(EventFamily.LOGISTICS)
    assert BadKind.NEGATIVE_DURATION in bad_kinds_for(EventFamily.PAGE_LOAD)


def test_make_bad_record_does_not_touch_the_base_event() -> None:
    base: Event = {"event_id": "e1", "load_ms": 5, "occurred_at": 1_704_067_200_000}
    make_bad_record(BadKind.NEGATIVE_DURATION, EventFamily.PAGE_LOAD, base)
    assert base["load_ms"] == 5


# --------------------------------------------------------------------------- incidents


def _p95(values: list[float]) -> float:
    return exact_quantile(sorted(values), 0.95)


def test_slow_pages_raises_p95_of_the_region_only_during_the_incident() -> None:
    gen = TrafficGenerator(
        seed=21, rate=150, duration_s=600, incidents=["slow_pages@200s+200s:region=eu-west"]
    )
    loads: dict[tuple[str, str], list[float]] = {}
    for family, _k, event in good(gen):
        if family is not EventFamily.PAGE_LOAD or "load_ms" not in event:
            continue  # vital-only beacons carry no load time
        phase = "during" if in_range(event, 200, 400) else "outside"
        region = "eu-west" if event["region"] == "eu-west" else "other"
        loads.setdefault((phase, region), []).append(event["load_ms"])
    assert _p95(loads[("during", "eu-west")]) > 3000
    assert _p95(loads[("outside", "eu-west")]) < 3000
    assert _p95(loads[("during", "other")]) < 3000
    # Per 1-minute window and page/device, from the ground truth as the pipeline sees it.
    rows = page_load_truth(
        [e for f, _k, e in good(gen) if f is EventFamily.PAGE_LOAD], views=(("1m", 1),)
    )
    start = DEFAULT_START_MS
    for row in rows:
        if row["region"] != "eu-west" or row["count"] < 30:
            continue
        if row["start_ms"] >= start + 200_000 and row["end_ms"] <= start + 400_000:
            assert row["p95"] > 3000, row
        elif row["end_ms"] <= start + 200_000 or row["start_ms"] >= start + 400_000:
            assert row["p95"] < 3000, row


def _failure_ratio(events: list[Event]) -> float:
    submitted = sum(1 for e in events if e["step"] == "payment_submitted")
    failed = sum(1 for e in events if e["step"] == "payment_failed")
    return failed / submitted


def test_payment_outage_raises_that_providers_failure_ratio() -> None:
    gen = TrafficGenerator(
        seed=8,
        rate=250,
        duration_s=600,
        families=["checkout"],
        incidents=["payment_outage@200s+200s:provider=adyen,failure_rate=0.5"],
    )
    groups: dict[tuple[str, bool], list[Event]] = {}
    for _f, _k, event in good(gen):
        if "payment_provider" in event and event["step"] != "order_placed":
            if in_range(event, 200, 400):
                during = True
            elif in_range(event, 0, 190) or in_range(event, 460, 600):
                during = False  # a margin: timeouts of the outage resolve up to ~40 s later
            else:
                continue
            groups.setdefault((event["payment_provider"], during), []).append(event)
    assert _failure_ratio(groups[("adyen", True)]) > 0.3
    assert _failure_ratio(groups[("adyen", False)]) < 0.05
    assert _failure_ratio(groups[("stripe", True)]) < 0.05
    reasons = Counter(
        e["failure_reason"] for e in groups[("adyen", True)] if e["step"] == "payment_failed"
    )
    assert reasons.most_common(1)[0][0] == "provider_timeout"


def test_payment_failure_is_followed_by_some_retries() -> None:
    gen = TrafficGenerator(seed=9, rate=200, duration_s=400, families=["checkout"])
    by_checkout: dict[str, list[str]] = {}
    for _f, key, event in good(gen):
        by_checkout.setdefault(key, []).append(event["step"])
    retried = [
        steps
        for steps in by_checkout.values()
        if "payment_failed" in steps and steps.count("payment_submitted") > 1
    ]
    assert retried
    assert all(steps[0] == "cart_viewed" for steps in by_checkout.values())


def _conversion(events: list[Event]) -> float:
    started = sum(1 for e in events if e["step"] == "checkout_started")
    placed = sum(1 for e in events if e["step"] == "order_placed")
    return placed / started


def test_checkout_stall_lowers_conversion() -> None:
    gen = TrafficGenerator(
        seed=4,
        rate=250,
        duration_s=800,
        families=["checkout"],
        incidents=["checkout_stall@300s+300s:dropoff=0.7"],
    )
    # Funnels take a few minutes: group by when the checkout started.
    started_at: dict[str, int] = {}
    steps: dict[str, list[Event]] = {}
    for _f, key, event in good(gen):
        steps.setdefault(key, []).append(event)
        if event["step"] == "checkout_started":
            started_at[key] = t_of(event)
    start = DEFAULT_START_MS
    during = [
        e for k, t in started_at.items() if start + 300_000 <= t < start + 600_000 for e in steps[k]
    ]
    before = [
        e for k, t in started_at.items() if start + 60_000 <= t < start + 300_000 for e in steps[k]
    ]
    assert _conversion(before) > 0.65
    assert _conversion(during) < 0.35


def test_warehouse_backlog_and_carrier_stall(long_run: list[GeneratedItem]) -> None:
    logistics = [e for f, _k, e in good(long_run) if f is EventFamily.LOGISTICS]
    # warehouse_backlog@500s+100s:warehouse=ams-1 -> nothing ships from ams-1 (jitter aside)
    shipped = [e for e in logistics if e["status"] == "shipped" and in_range(e, 502, 598)]
    assert shipped
    assert not [e for e in shipped if e["warehouse"] == "ams-1"]
    # carrier_delay@300s+100s:carrier=dhl,stall=true -> no tracking updates for dhl
    moving = ("in_transit", "out_for_delivery", "delivered", "delivery_failed")
    updates = [e for e in logistics if e["status"] in moving and in_range(e, 302, 398)]
    assert updates
    assert not [e for e in updates if e["carrier"] == "dhl"]
    after = [e for e in logistics if e["status"] in moving and in_range(e, 400, 420)]
    assert [e for e in after if e["carrier"] == "dhl"]  # the backlog moves again


# --------------------------------------------------------------------------- spec parsing


@pytest.mark.parametrize(
    ("spec", "kind", "start_s", "duration_s", "params"),
    [
        (
            "slow_pages@60s+180s:region=eu-west",
            IncidentKind.SLOW_PAGES,
            60,
            180,
            {"region": "eu-west"},
        ),
        ("slow_pages@0+1m", IncidentKind.SLOW_PAGES, 0, 60, {}),
        (
            "slow_pages@1m+2m:region=eu-west|us-east,page=/product/:id,factor=5",
            IncidentKind.SLOW_PAGES,
            60,
            120,
            {"region": "eu-west|us-east", "page": "/product/:id", "factor": "5"},
        ),
        (
            "payment_outage@2m+5m:provider=adyen,method=card,failure_rate=0.3",
            IncidentKind.PAYMENT_OUTAGE,
            120,
            300,
            {"provider": "adyen", "method": "card", "failure_rate": "0.3"},
        ),
        (
            " carrier_delay@1h+30m:carrier=dhl, stall=true ",
            IncidentKind.CARRIER_DELAY,
            3600,
            1800,
            {"carrier": "dhl", "stall": "true"},
        ),
        (
            "checkout_stall@90+45.5s:dropoff=0.5",
            IncidentKind.CHECKOUT_STALL,
            90,
            45.5,
            {"dropoff": "0.5"},
        ),
        (
            "warehouse_backlog@500ms+1s:warehouse=fra-1",
            IncidentKind.WAREHOUSE_BACKLOG,
            0.5,
            1,
            {"warehouse": "fra-1"},
        ),
        (
            "bad_records@10s+20s:rate=5,family=checkout,kinds=not_json|oversize",
            IncidentKind.BAD_RECORDS,
            10,
            20,
            {"rate": "5", "family": "checkout", "kinds": "not_json|oversize"},
        ),
    ],
)
def test_parse_incident(
    spec: str, kind: IncidentKind, start_s: float, duration_s: float, params: dict[str, str]
) -> None:
    incident = parse_incident(spec)
    assert incident == Incident(kind, start_s, duration_s, params)
    assert parse_incident(str(incident)) == incident


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected kind@start"),
        ("slow_pages", "expected kind@start"),
        ("slow_pages@60s", "expected kind@start"),
        ("slow_pagez@60s+10s", "unknown incident kind 'slow_pagez'"),
        ("slow_pages@soon+10s", "not a duration"),
        ("slow_pages@60s+0s", "duration must be > 0"),
        ("slow_pages@60s+10x", "not a duration"),
        ("slow_pages@60s+10s:region", "not key=value"),
        ("slow_pages@60s+10s:region=", "not key=value"),
        ("slow_pages@60s+10s:region=mars", "region='mars' is not one of"),
        ("slow_pages@60s+10s:colour=red", "unknown parameter 'colour'"),
        ("slow_pages@60s+10s:region=eu-west,region=us-east", "given twice"),
        ("slow_pages@60s+10s:factor=fast", "factor='fast' is not a number"),
        ("payment_outage@60s+10s", "parameter 'provider' is required"),
        ("payment_outage@60s+10s:provider=visa", "provider='visa' is not one of"),
        ("payment_outage@60s+10s:provider=adyen,failure_rate=1.5", "must be in [0.0, 1.0]"),
        ("carrier_delay@60s+10s:carrier=dhl,stall=maybe", "not a boolean"),
        ("warehouse_backlog@60s+10s:warehouse=lon-1", "warehouse='lon-1' is not one of"),
        ("bad_records@60s+10s:kinds=not_json|gibberish", "kinds='gibberish' is not one of"),
    ],
)
def test_parse_incident_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="bad incident spec") as info:
        parse_incident(spec)
    assert message in str(info.value)


def test_parse_incidents_accepts_a_list_or_semicolons() -> None:
    many = parse_incidents("slow_pages@0s+1m; payment_outage@1m+1m:provider=paypal ;")
    assert [i.kind for i in many] == [IncidentKind.SLOW_PAGES, IncidentKind.PAYMENT_OUTAGE]
    assert parse_incidents([many[0], "slow_pages@0s+1m"]) == (many[0], many[0])
    with pytest.raises(ValueError):
        Incident(IncidentKind.SLOW_PAGES, -1, 10)


# --------------------------------------------------------------------------- records


@pytest.fixture(scope="module")
def short_run() -> list[GeneratedItem]:
    return list(
        TrafficGenerator(
            seed=2,
            rate=300,
            duration_s=60,
            lifecycle_compression=3600,
            incidents=["bad_records@10s+5s:rate=4,oversize=0"],
        )
    )


@pytest.mark.parametrize("batch_size", [1, 7, 100])
def test_encode_records_groups_by_family(short_run: list[GeneratedItem], batch_size: int) -> None:
    records = list(encode_records(short_run, batch_size))
    now = DEFAULT_START_MS + 60_000
    sent: list[str] = []
    bad = 0
    sizes: Counter[int] = Counter()
    for record in records:
        if record.bad is not None:
            bad += 1
            assert record.value == record.bad.value
            continue
        decoded = codec.loads(record.value)
        if batch_size == 1:
            assert isinstance(decoded, dict)
            decoded = [decoded]
        else:
            assert isinstance(decoded, list)
        assert 1 <= len(decoded) <= batch_size
        sizes[len(decoded)] += 1
        valid, rejected = _decode(record.family, record.value, now)
        assert not rejected and len(valid) == len(decoded)
        first_key = {
            EventFamily.PAGE_LOAD: "session_id",
            EventFamily.CHECKOUT: "checkout_id",
            EventFamily.LOGISTICS: "order_id",
        }[record.family]
        assert record.key == decoded[0][first_key]
        assert list(record.events) == decoded
        sent.extend(e["event_id"] for e in decoded)
    expected = [e["event_id"] for _f, _k, e in good(short_run)]
    assert sorted(sent) == sorted(expected)
    assert bad == sum(1 for _f, _k, e in short_run if isinstance(e, BadRecord)) > 0
    if batch_size == 7:
        assert sizes.most_common(1)[0][0] == 7  # most records are full batches


def test_encode_records_closes_batches_after_max_delay(short_run: list[GeneratedItem]) -> None:
    for record in encode_records(short_run, 1000, max_batch_delay_ms=500):
        if record.events:
            times = [t_of(e) for e in record.events]
            assert max(times) - min(times) <= 500 + 2 * 2000  # delay plus jitter both ways


def test_duplicates_resend_same_event_ids(short_run: list[GeneratedItem]) -> None:
    records = list(encode_records(short_run, 10, duplicate_ratio=0.1))
    dups = [r for r in records if r.duplicates]
    originals = {e["event_id"] for r in records for e in r.events}
    assert dups
    assert 0.05 < len(dups) / len(originals) < 0.15
    for record in dups:
        event = codec.loads(record.value)
        assert event["event_id"] in originals
        assert (
            record.key
            == event[
                {"page_load": "session_id", "checkout": "checkout_id", "logistics": "order_id"}[
                    record.family.value
                ]
            ]
        )
    assert records == list(encode_records(short_run, 10, duplicate_ratio=0.1))
    with pytest.raises(ValueError):
        list(encode_records(short_run, 0))


# ------------------------------------------------------------------- produce (fake producer)


class FakeProducer:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.started = self.stopped = False
        self.flushed = 0

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def start(self) -> None:
        self.started = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def flush(self) -> None:
        self.flushed += 1

    async def stop(self) -> None:
        self.stopped = True


def test_produce_counts_per_topic() -> None:
    fake = FakeProducer()
    gen = TrafficGenerator(
        seed=1, rate=200, duration_s=30, incidents=["bad_records@5s+5s:rate=2,oversize=0"]
    )
    settings = Settings.from_env()
    stats = asyncio.run(
        produce(settings, gen, 10, False, duplicate_ratio=0.02, producer_factory=lambda s, m: fake)
    )
    assert fake.started and fake.stopped and fake.flushed
    assert stats.total_records == len(fake.sent)
    assert set(stats.records) <= {"page-loads", "checkout-events", "logistics-events"}
    by_topic = Counter(topic for topic, _k, _v in fake.sent)
    assert dict(by_topic) == stats.records
    n_good = sum(1 for _f, _k, e in gen if not isinstance(e, BadRecord))
    n_bad = sum(1 for _f, _k, e in gen if isinstance(e, BadRecord))
    assert stats.total_events == n_good + n_bad + sum(stats.duplicates.values())
    assert sum(stats.bad_records.values()) == n_bad


def test_produce_realtime_paces_and_stops_cleanly_on_cancel() -> None:
    fake = FakeProducer()
    gen = TrafficGenerator(seed=1, rate=100, duration_s=60)
    settings = Settings.from_env()

    async def main() -> None:
        task = asyncio.create_task(
            produce(settings, gen, 1, True, producer_factory=lambda s, m: fake)
        )
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert fake.stopped and fake.flushed
    assert 10 < len(fake.sent) < 150  # ~100 events/s for half a second, not the whole minute
    newest = max(t_of(codec.loads(v)) for _t, _k, v in fake.sent)
    assert abs(newest - time.time() * 1000) < 3000  # event time is now


def test_run_simulate_writes_truth(tmp_path: Path) -> None:
    fake = FakeProducer()
    path = tmp_path / "truth.json"
    stats = asyncio.run(
        run_simulate(
            Settings.from_env(),
            rate=100,
            duration_s=120,
            seed=3,
            batch_size=5,
            incidents=["bad_records@10s+5s:rate=2,oversize=0"],
            realtime=False,
            ground_truth_path=path,
            start_ms=DEFAULT_START_MS,
            duplicate_ratio=0.05,
            producer_factory=lambda s, m: fake,
        )
    )
    assert stats.total_records == len(fake.sent)
    rows = truth_file.read_truth(path)
    loads = [
        e
        for f, _k, e in TrafficGenerator(
            seed=3,
            rate=100,
            duration_s=120,
            start_ms=DEFAULT_START_MS,
            incidents=["bad_records@10s+5s:rate=2,oversize=0"],
            oversize_bytes=Settings.from_env().max_record_bytes + 1024,
        )
        if f is EventFamily.PAGE_LOAD and not isinstance(e, BadRecord)
    ]
    expected = page_load_truth(loads, views=(("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60)))
    assert rows == expected
    with_load = [e for e in loads if "load_ms" in e]  # not the vital-only beacons
    assert 0 < len(with_load) < len(loads)
    one_minute = [r for r in rows if r["view"] == "1m" and r["region"] == "all"]
    assert sum(r["count"] for r in one_minute) == len(with_load)


@pytest.mark.parametrize("family", [EventFamily.CHECKOUT, EventFamily.LOGISTICS])
def test_batches_keep_each_key_in_one_partition(family: EventFamily) -> None:
    def partition(key: str) -> int:
        return partition_for(key, 3)

    gen = TrafficGenerator(seed=5, rate=300, duration_s=120, lifecycle_compression=3600)
    records = list(encode_records(gen, batch_size=50, partitions=dict.fromkeys(EventFamily, 3)))
    batched = [r for r in records if r.family == family and len(r.events) > 1]
    assert batched
    id_field = "checkout_id" if family == EventFamily.CHECKOUT else "order_id"
    for record in batched:
        assert {partition(e[id_field]) for e in record.events} == {partition(record.key)}
