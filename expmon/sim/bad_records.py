"""Bad input on purpose: records the pipeline must dead-letter with the right reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from schemas import codec
from schemas.events import Event, EventFamily

logger = logging.getLogger(__name__)


DEFAULT_OVERSIZE_BYTES = 1_001_024  # just over the default 1 MB record limit, under Kafka's 1 MiB


class BadKind(StrEnum):
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    EMPTY_BATCH = "empty_batch"
    WRONG_TYPE = "wrong_type"
    MISSING_FIELD = "missing_field"
    NEGATIVE_DURATION = "negative_duration"
    NAN_DURATION = "nan_duration"
    UNKNOWN_ENUM = "unknown_enum"
    BAD_SCHEMA_VERSION = "bad_schema_version"
    TIMESTAMP_1970 = "timestamp_1970"
    TIMESTAMP_2300 = "timestamp_2300"
    OVERSIZE = "oversize"


@dataclass(frozen=True, slots=True)
class BadRecord:
    """An invalid record value, sent as is; `expected_reason` is what RecordDecoder says."""

    kind: BadKind
    family: EventFamily
    value: bytes
    expected_reason: str


# Per family: the field a kind corrupts.
_REQUIRED_FIELD = {
    EventFamily.PAGE_LOAD: "load_ms",
    EventFamily.CHECKOUT: "checkout_id",
    EventFamily.LOGISTICS: "order_id",
}
_DURATION_FIELD = {EventFamily.PAGE_LOAD: "load_ms", EventFamily.CHECKOUT: "amount"}
_ENUM_FIELD = {
    EventFamily.PAGE_LOAD: ("device", "smartfridge"),
    EventFamily.CHECKOUT: ("step", "payment_pending"),
    EventFamily.LOGISTICS: ("status", "lost_in_space"),
}


def bad_kinds_for(family: EventFamily) -> tuple[BadKind, ...]:
    """The bad-record kinds that make sense for a family (logistics has no durations)."""
    kinds = tuple(BadKind)
    if family not in _DURATION_FIELD:
        kinds = tuple(
            k for k in kinds if k not in (BadKind.NEGATIVE_DURATION, BadKind.NAN_DURATION)
        )
    return kinds


def make_bad_record(
    kind: BadKind,
    family: EventFamily,
    base: Event,
    oversize_bytes: int = DEFAULT_OVERSIZE_BYTES,
) -> BadRecord:
    """Corrupt a valid event of `family` in the way `kind` names."""
    event = {k: v for k, v in base.items() if not k.startswith("_")}
    reason: str
    if kind is BadKind.NOT_JSON:
        value = codec.dumps(event)[: max(8, len(codec.dumps(event)) // 2)] + b"\x00oops"
        return BadRecord(kind, family, value, "not_json")
    if kind is BadKind.NOT_OBJECT:
        return BadRecord(kind, family, codec.dumps("page_load ok"), "not_object")
    if kind is BadKind.EMPTY_BATCH:
        return BadRecord(kind, family, b"[]", "empty_batch")
    if kind is BadKind.WRONG_TYPE:
        name = _REQUIRED_FIELD[family]
        event[name] = 12345 if name != "load_ms" else "1200ms"
        reason = f"wrong_type:{name}"
    elif kind is BadKind.MISSING_FIELD:
        name = _REQUIRED_FIELD[family]
        event.pop(name, None)
        reason = f"missing_field:{name}"
    elif kind is BadKind.NEGATIVE_DURATION:
        name = _DURATION_FIELD[family]
        event[name] = -5
        reason = f"negative_value:{name}"
    elif kind is BadKind.NAN_DURATION:
        name = _DURATION_FIELD[family]
        event[name] = "NaN"
        reason = f"wrong_type:{name}"
    elif kind is BadKind.UNKNOWN_ENUM:
        name, bogus = _ENUM_FIELD[family]
        event[name] = bogus
        reason = f"unknown_enum:{name}"
    elif kind is BadKind.BAD_SCHEMA_VERSION:
        event["schema_version"] = 99
        reason = "unsupported_schema_version"
    elif kind is BadKind.TIMESTAMP_1970:
        event["occurred_at"] = "1970-01-01T00:00:01Z"
        reason = "absurd_timestamp"
    elif kind is BadKind.TIMESTAMP_2300:
        event["occurred_at"] = "2300-01-01T00:00:00Z"
        reason = "absurd_timestamp"
    elif kind is BadKind.OVERSIZE:
        size = len(codec.dumps(event))
        event["debug_blob"] = "x" * max(0, oversize_bytes - size)
        reason = "oversize"
    else:  # pragma: no cover - exhaustive
        raise AssertionError(kind)
    return BadRecord(kind, family, codec.dumps(event), reason)
