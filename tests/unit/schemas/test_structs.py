"""The typed fast path (schemas.structs) takes only what the validators accept and builds the
same events; everything else it leaves to them, so every outcome and reason is theirs."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from expmon.sim.bad_records import BadRecord
from expmon.sim.journeys import DEFAULT_START_MS, TrafficGenerator
from schemas import codec
from schemas.contract_schema import PAGE_LOAD_SCHEMA_FILE, page_load_json_schema
from schemas.events import CHANNELS, DEVICES, PLATFORMS, EventFamily
from schemas.records import RecordDecoder, Rejected
from schemas.structs import Channel, Device, PageLoadFastPath, Platform
from tests.unit.helpers import NOW_MS, contract_event

MAX_FUTURE_MS = 86_400_000

BASE: dict[str, Any] = contract_event(EventFamily.PAGE_LOAD)


def ev(**over: Any) -> dict[str, Any]:
    """BASE with fields replaced; a value of `...` removes the field."""
    out = {**BASE, **over}
    return {k: v for k, v in out.items() if v is not ...}


def raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else codec.dumps(value)


# Records the fast path must take (it returns the events itself).
TAKEN: list[tuple[str, bytes]] = [
    ("plain", raw(ev())),
    ("batch", raw([ev(), ev(event_id="e-2", device="desktop")])),
    ("rfc3339 time", raw(ev(occurred_at="2023-12-31T23:59:59.250Z"))),
    ("float time", raw(ev(occurred_at=float(NOW_MS - 5000)))),
    ("int load stays int", raw(ev(load_ms=1200))),
    ("zero load", raw(ev(load_ms=0))),
    ("negative zero load", raw(ev(load_ms=-0.0))),
    ("huge finite load", raw(ev(load_ms=1e308))),
    ("vital-only", raw(ev(load_ms=..., lcp_ms=2100, cls=0.05))),
    ("null load with vital", raw(ev(load_ms=None, inp_ms=120))),
    ("explicit nulls", raw(ev(channel=None, user_id=None, app_version=None, is_new_user=None))),
    ("optional fields", raw(ev(channel="ads", user_id="", app_version="1.2", is_new_user=True))),
    ("every vital", raw(ev(ttfb_ms=80, fcp_ms=900.5, lcp_ms=1800, inp_ms=64, cls=0))),
    ("url page", raw(ev(page="https://shop.example:8443/cart?coupon=X#top"))),
    ("query stripped", raw(ev(page="/search?q=a@b.c"))),
    ("unicode labels", raw(ev(page="/produkt/über", region="são-paulo"))),
    ("256 characters", raw(ev(event_id="é" * 256))),
    ("at the future limit", raw(ev(occurred_at=NOW_MS + MAX_FUTURE_MS))),
    ("whitespace around", b"  " + raw(ev()) + b"\n"),
    ("duplicate key, last wins", raw(ev())[:-1] + b',"device":"tablet"}'),
]

# Records the fast path must leave to the validators (which accept or reject them).
DECLINED: list[tuple[str, bytes]] = [
    ("unknown field kept", raw(ev(referrer="https://example.com"))),
    ("annotation sent", raw(ev(_t=5))),
    ("non-breaking space in region", raw(ev(region="eu\u00a0west"))),
    ("zero-width joiner in page", raw(ev(page="/a\u200db"))),
    ("control character in region", raw(ev(region="eu\x07west"))),
    ("control character in page", raw(ev(page="/a\nb"))),
    ("empty route", raw(ev(page="?utm=1"))),
    ("time too early", raw(ev(occurred_at=1000))),
    ("time too late", raw(ev(occurred_at=NOW_MS + MAX_FUTURE_MS + 1))),
    ("time as bool", raw(ev(occurred_at=True))),
    ("time unparseable", raw(ev(occurred_at="yesterday"))),
    ("time without offset", raw(ev(occurred_at="2023-12-31T23:59:59"))),
    ("time huge int", b'{"occurred_at":36893488147419103232,' + raw(ev(occurred_at=...))[1:]),
    ("load past int64", raw(ev(load_ms=2**63))),
    ("load past uint64", b'{"load_ms":18446744073709551616,' + raw(ev(load_ms=...))[1:]),
    ("negative load", raw(ev(load_ms=-1))),
    ("load as text", raw(ev(load_ms="1200ms"))),
    ("load as bool", raw(ev(load_ms=True))),
    ("no load, no vital", raw(ev(load_ms=...))),
    ("null load, null vitals", raw(ev(load_ms=None, lcp_ms=None))),
    ("negative vital", raw(ev(lcp_ms=-3))),
    ("schema version float", raw(ev(schema_version=1.0))),
    ("schema version 2", raw(ev(schema_version=2))),
    ("schema version bool", raw(ev(schema_version=True))),
    ("no schema version", raw(ev(schema_version=...))),
    ("empty event id", raw(ev(event_id=""))),
    ("long event id", raw(ev(event_id="x" * 257))),
    ("event id number", raw(ev(event_id=123))),
    ("no session", raw(ev(session_id=...))),
    ("unknown device", raw(ev(device="smartfridge"))),
    ("unknown channel", raw(ev(channel="tv"))),
    ("long user id", raw(ev(user_id="u" * 257))),
    ("new user as int", raw(ev(is_new_user=1))),
    ("region missing", raw(ev(region=...))),
    ("batch with a bad event", raw([ev(), ev(event_id="e-2", load_ms=-1)])),
    ("batch with a non-object", raw([ev(), 5])),
    ("batch with an unknown field", raw([ev(), ev(event_id="e-2", extra=1)])),
    ("empty batch", b"[]"),
    ("nested batch", raw([[ev()]])),
    ("string", raw("page_load ok")),
    ("number", b"5"),
    ("null", b"null"),
    ("not json", raw(ev())[:20] + b"\x00oops"),
    ("invalid utf-8", raw(ev(region="x"))[:-2] + b'\xff"}'),
    ("lone surrogate", raw(ev())[:-1] + b',"user_id":"\\ud800"}'),
    ("nan", raw(ev(load_ms=...))[:-1] + b',"load_ms":NaN}'),
    ("overflowing float", raw(ev(load_ms=...))[:-1] + b',"load_ms":1e400}'),
    ("duplicate key, first bad", raw(ev(load_ms=...))[:-1] + b',"load_ms":-1,"load_ms":5}'),
    ("trailing data", raw(ev()) + b"x"),
]


def decode(
    value: bytes, typed: bool, max_events: int = 10_000
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    decoder = RecordDecoder(EventFamily.PAGE_LOAD, max_events_per_record=max_events, typed=typed)
    valid: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    decoder.decode(value, NOW_MS, valid, rejected)
    return valid, rejected


def fast_decode(value: bytes, max_events: int = 10_000) -> list[dict[str, Any]] | None:
    """What the fast path alone makes of a record (None: not taken)."""
    valid: list[dict[str, Any]] = [{"held": "before"}]
    taken = PageLoadFastPath(MAX_FUTURE_MS, max_events).decode(value, NOW_MS, valid)
    assert valid[0] == {"held": "before"}
    if taken is None:
        assert len(valid) == 1  # left as it was
        return None
    assert taken == len(valid) - 1
    return valid[1:]


def test_enums_are_the_validators_sets() -> None:
    assert frozenset(get_args(Device)) == DEVICES
    assert frozenset(get_args(Platform)) == PLATFORMS
    assert frozenset(get_args(Channel)) == CHANNELS


@pytest.mark.parametrize(("name", "value"), TAKEN, ids=[n for n, _ in TAKEN])
def test_fast_path_takes_valid_records_as_the_validators_build_them(
    name: str, value: bytes
) -> None:
    fast = fast_decode(value)
    precise, rejected = decode(value, typed=False)
    assert not rejected and precise
    assert fast == precise
    # the same types too (1200 stays an int, -0.0 a float): dead letters re-encode events
    assert [{k: type(v) for k, v in e.items()} for e in fast] == [
        {k: type(v) for k, v in e.items()} for e in precise
    ]
    assert decode(value, typed=True) == (precise, [])


@pytest.mark.parametrize(("name", "value"), DECLINED, ids=[n for n, _ in DECLINED])
def test_fast_path_leaves_the_rest_to_the_validators(name: str, value: bytes) -> None:
    assert fast_decode(value) is None
    assert decode(value, typed=True) == decode(value, typed=False)


def test_a_batch_over_the_limit_is_left_to_the_validators() -> None:
    value = raw([ev(event_id=f"e-{i}") for i in range(3)])
    assert fast_decode(value, max_events=2) is None
    valid, rejected = decode(value, typed=True, max_events=2)
    assert not valid
    assert [r.reason for r in rejected] == ["too_many_events"]


def test_simulated_traffic_and_bad_records_decode_alike_both_ways() -> None:
    items = list(
        TrafficGenerator(seed=11, rate=60, duration_s=60, incidents=["bad_records@10s+30s:rate=10"])
    )
    now = DEFAULT_START_MS + 120_000
    values = [
        item.value if isinstance(item, BadRecord) else codec.dumps(item)
        for family, _key, item in items
        if family is EventFamily.PAGE_LOAD
    ]
    taken = 0
    for value in values:
        typed = RecordDecoder(EventFamily.PAGE_LOAD, typed=True)
        precise = RecordDecoder(EventFamily.PAGE_LOAD, typed=False)
        a: tuple[list[dict[str, Any]], list[Rejected]] = ([], [])
        b: tuple[list[dict[str, Any]], list[Rejected]] = ([], [])
        typed.decode(value, now, *a)
        precise.decode(value, now, *b)
        assert a == b
        taken += PageLoadFastPath(MAX_FUTURE_MS, 10_000).decode(value, now, []) is not None
    page_loads = [item for family, _k, item in items if family is EventFamily.PAGE_LOAD]
    bad = sum(1 for item in page_loads if isinstance(item, BadRecord))
    assert bad > 50
    assert taken > 0.8 * len(values)  # the simulator's events go the fast way


def test_published_json_schema_is_the_structs() -> None:
    assert PAGE_LOAD_SCHEMA_FILE.read_bytes() == codec.dumps_indented(page_load_json_schema()) + (
        b"\n"
    ), "run `python -m schemas.contract_schema` to rewrite schemas/page_load.schema.json"


def test_published_json_schema_states_the_contract() -> None:
    schema = codec.loads(PAGE_LOAD_SCHEMA_FILE.read_bytes())
    assert schema["type"] == "object"
    assert set(schema["required"]) == {
        "event_id", "schema_version", "occurred_at", "session_id",
        "device", "platform", "region", "page",
    }  # fmt: skip
    assert "additionalProperties" not in schema  # other fields are accepted and kept
    assert set(schema["properties"]["device"]["enum"]) == DEVICES
    assert set(schema["properties"]["platform"]["enum"]) == PLATFORMS
    assert schema["properties"]["schema_version"] == {"enum": [1]}
    assert schema["properties"]["event_id"] == {"type": "string", "minLength": 1, "maxLength": 256}
    for name in ("load_ms", "lcp_ms", "cls"):  # any non-negative number: no int bound
        assert schema["properties"][name] == {
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]
        }
    # the field list is the validators' (every field they read for page_load)
    assert set(schema["properties"]) == set(BASE) | {
        "channel", "user_id", "app_version", "is_new_user",
        "ttfb_ms", "fcp_ms", "lcp_ms", "inp_ms", "cls",
    }  # fmt: skip


@pytest.mark.parametrize(("name", "value"), TAKEN + DECLINED, ids=[n for n, _ in TAKEN + DECLINED])
def test_a_page_seen_before_decodes_as_the_first_time(name: str, value: bytes) -> None:
    # the second pass finds the page's route remembered (schemas.structs._ROUTES)
    first = fast_decode(value)
    assert fast_decode(value) == first
    assert decode(value, typed=True) == decode(value, typed=False)
