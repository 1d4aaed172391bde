"""Realistic, reproducible e-commerce traffic: page loads, checkout funnels, order lifecycles.

`TrafficGenerator` is a small discrete-event simulation. Arrival processes (Poisson) start
page views, checkouts and orders; each checkout and order then schedules its own next step
on a heap, so events come out in event-time order (before jitter). Every random draw comes
from `random.Random` instances seeded from `seed`, so the same configuration yields the
same events, byte for byte.

Incidents (`Incident`, parsed from `kind@start+duration:key=value,...`) bend the traffic
for a while: slow pages, a payment provider outage, a carrier delay, a checkout stall, a
warehouse backlog, or a burst of bad records.

`encode_records` turns generated items into Kafka records (single events or JSON arrays
per family); `produce` sends them with aiokafka; `run_simulate` is the CLI entry point.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from expmon.families.registry import BY_NAME
from expmon.kafka.connection import aiokafka_kwargs
from expmon.kafka.partition import partition_for
from expmon.settings import Settings
from expmon.sim.truth import base as truth_file
from expmon.sim.truth.base import views_of
from expmon.sim.truth.page_load import page_load_truth
from schemas import codec
from schemas.events import Event, EventFamily
from schemas.eventtime import format_ms, parse_event_time_ms

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- catalogue

PAGES: tuple[str, ...] = (
    "/",
    "/search",
    "/category/:slug",
    "/product/:id",
    "/cart",
    "/checkout",
    "/checkout/payment",
    "/account",
)
DEVICE_WEIGHTS: dict[str, float] = {"mobile": 0.58, "desktop": 0.34, "tablet": 0.08}
REGION_WEIGHTS: dict[str, float] = {
    "eu-west": 0.30,
    "eu-central": 0.20,
    "us-east": 0.25,
    "us-west": 0.15,
    "ap-south": 0.10,
}
REGIONS: tuple[str, ...] = tuple(REGION_WEIGHTS)
CHANNEL_WEIGHTS: dict[str, float] = {
    "organic": 0.35,
    "ads": 0.25,
    "direct": 0.20,
    "social": 0.15,
    "other": 0.05,
}
PLATFORM_WEIGHTS: dict[str, dict[str, float]] = {
    "mobile": {"web": 0.45, "ios": 0.25, "android": 0.25, "miniapp": 0.05},
    "tablet": {"web": 0.50, "ios": 0.35, "android": 0.15},
    "desktop": {"web": 1.0},
}
APP_VERSIONS: dict[str, float] = {"5.14.2": 0.6, "5.14.1": 0.25, "5.13.0": 0.15}

# Median load time (ms) per page on desktop in eu-west; devices and regions multiply it.
PAGE_MEDIAN_MS: dict[str, float] = {
    "/": 600.0,
    "/search": 750.0,
    "/category/:slug": 700.0,
    "/product/:id": 820.0,
    "/cart": 550.0,
    "/checkout": 750.0,
    "/checkout/payment": 850.0,
    "/account": 650.0,
}
DEVICE_FACTOR: dict[str, float] = {"desktop": 1.0, "tablet": 1.2, "mobile": 1.35}
REGION_FACTOR: dict[str, float] = {
    "eu-west": 1.0,
    "eu-central": 1.0,
    "us-east": 1.04,
    "us-west": 1.08,
    "ap-south": 1.12,
}
LOAD_SIGMA = 0.4  # log-normal shape: p95 = median * e^(1.645 * 0.4) ~ 1.93 x median
LANDING_WEIGHTS: dict[str, float] = {
    "/": 0.35,
    "/product/:id": 0.35,
    "/category/:slug": 0.20,
    "/search": 0.10,
}
NEXT_PAGE: dict[str, dict[str, float]] = {
    "/": {
        "/search": 0.35,
        "/category/:slug": 0.35,
        "/product/:id": 0.2,
        "/account": 0.05,
        "/cart": 0.05,
    },
    "/search": {"/product/:id": 0.6, "/search": 0.2, "/category/:slug": 0.1, "/cart": 0.1},
    "/category/:slug": {"/product/:id": 0.6, "/category/:slug": 0.2, "/search": 0.1, "/cart": 0.1},
    "/product/:id": {
        "/product/:id": 0.3,
        "/cart": 0.3,
        "/category/:slug": 0.2,
        "/search": 0.15,
        "/": 0.05,
    },
    "/cart": {"/checkout": 0.5, "/product/:id": 0.3, "/": 0.2},
    "/checkout": {"/checkout/payment": 0.8, "/cart": 0.2},
    "/checkout/payment": {"/": 0.5, "/account": 0.5},
    "/account": {"/": 0.5, "/product/:id": 0.5},
}
BOUNCE_PROBABILITY = 0.3
MEAN_EXTRA_VIEWS = 4.0  # non-bouncing sessions view 1 + geometric(mean 4) more pages
SESSION_IDLE_MS = 30 * 60_000

PROVIDER_WEIGHTS: dict[str, float] = {"stripe": 0.45, "adyen": 0.35, "paypal": 0.20}
PROVIDERS: tuple[str, ...] = tuple(PROVIDER_WEIGHTS)
PROVIDER_METHODS: dict[str, dict[str, float]] = {
    "stripe": {"card": 0.75, "wallet": 0.25},
    "adyen": {"card": 0.6, "wallet": 0.25, "bnpl": 0.15},
    "paypal": {"wallet": 0.8, "bnpl": 0.2},
}
METHODS: tuple[str, ...] = ("card", "wallet", "bnpl")
# Normal failure ratio per method (kept well under the 3 % alert threshold).
METHOD_FAILURE: dict[str, float] = {"card": 0.012, "wallet": 0.006, "bnpl": 0.015}
FAILURE_REASONS: tuple[str, ...] = (
    "card_declined",
    "insufficient_funds",
    "provider_timeout",
    "fraud_suspected",
)
FAILURE_REASON_WEIGHTS: dict[str, float] = {
    "card_declined": 0.5,
    "insufficient_funds": 0.3,
    "provider_timeout": 0.1,
    "fraud_suspected": 0.1,
}
OUTAGE_REASON_WEIGHTS: dict[str, float] = {
    "provider_timeout": 0.85,
    "card_declined": 0.1,
    "insufficient_funds": 0.05,
}
CURRENCY_BY_REGION: dict[str, tuple[str, float]] = {
    "eu-west": ("EUR", 1.0),
    "eu-central": ("EUR", 1.0),
    "us-east": ("USD", 1.08),
    "us-west": ("USD", 1.08),
    "ap-south": ("INR", 90.0),
}
# Probability of moving on to the next checkout step (the rest abandon).
P_CHECKOUT_STARTED = 0.6
P_SHIPPING_SELECTED = 0.88
P_PAYMENT_SUBMITTED = 0.9
P_ORDER_PLACED = 0.995
P_RETRY_AFTER_FAILURE = 0.55
P_SWITCH_PROVIDER_ON_RETRY = 0.35
MAX_PAYMENT_ATTEMPTS = 3
EXPECTED_EVENTS_PER_CHECKOUT = 3.5

CARRIERS: tuple[str, ...] = ("dhl", "ups", "fedex", "dpd")
WAREHOUSES: tuple[str, ...] = ("ams-1", "fra-1", "nyc-1")
WAREHOUSE_BY_REGION: dict[str, dict[str, float]] = {
    "eu-west": {"ams-1": 0.7, "fra-1": 0.3},
    "eu-central": {"fra-1": 0.8, "ams-1": 0.2},
    "us-east": {"nyc-1": 1.0},
    "us-west": {"nyc-1": 1.0},
    "ap-south": {"fra-1": 0.5, "ams-1": 0.5},
}
CARRIER_BY_REGION: dict[str, dict[str, float]] = {
    "eu-west": {"dhl": 0.4, "dpd": 0.35, "ups": 0.25},
    "eu-central": {"dhl": 0.45, "dpd": 0.4, "ups": 0.15},
    "us-east": {"ups": 0.45, "fedex": 0.45, "dhl": 0.1},
    "us-west": {"ups": 0.45, "fedex": 0.45, "dhl": 0.1},
    "ap-south": {"dhl": 0.6, "fedex": 0.4},
}
HOUR_MS = 3_600_000
P_DELIVERY_FAILED = 0.025
P_RETURN_AFTER_FAILED = 0.15
P_RETURN_AFTER_DELIVERED = 0.02
EXPECTED_EVENTS_PER_ORDER = 7.0

DEFAULT_MIX: dict[EventFamily, float] = {
    EventFamily.PAGE_LOAD: 0.75,
    EventFamily.CHECKOUT: 0.15,
    EventFamily.LOGISTICS: 0.10,
}
DEFAULT_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: a fixed start keeps runs reproducible
DEFAULT_OVERSIZE_BYTES = 1_001_024  # just over the default 1 MB record limit, under Kafka's 1 MiB


# --------------------------------------------------------------------------- incidents


class IncidentKind(StrEnum):
    SLOW_PAGES = "slow_pages"
    PAYMENT_OUTAGE = "payment_outage"
    CARRIER_DELAY = "carrier_delay"
    CHECKOUT_STALL = "checkout_stall"
    WAREHOUSE_BACKLOG = "warehouse_backlog"
    BAD_RECORDS = "bad_records"


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


_BOOL_TRUE = frozenset({"1", "true", "yes", "on"})
_BOOL_FALSE = frozenset({"0", "false", "no", "off"})


def _choice_list(value: str, allowed: Iterable[str], key: str) -> tuple[str, ...]:
    allowed_t = tuple(allowed)
    items = tuple(v.strip() for v in value.split("|"))
    for item in items:
        if item not in allowed_t:
            raise ValueError(f"{key}={item!r} is not one of {', '.join(allowed_t)}")
    return items


def _float_param(value: str, key: str, low: float, high: float | None) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not a number") from None
    if not math.isfinite(number) or number < low or (high is not None and number > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{key}={value!r} must be {bound}")
    return number


def _bool_param(value: str, key: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _BOOL_TRUE:
        return True
    if lowered in _BOOL_FALSE:
        return False
    raise ValueError(f"{key}={value!r} is not a boolean (true/false)")


# Per kind: parameter name -> (required, checker). Checkers raise ValueError.
_Checker = Callable[[str, str], object]
_PARAMS: dict[IncidentKind, dict[str, tuple[bool, _Checker]]] = {
    IncidentKind.SLOW_PAGES: {
        "region": (False, lambda v, k: _choice_list(v, REGIONS, k)),
        "page": (False, lambda v, k: _choice_list(v, PAGES, k)),
        "device": (False, lambda v, k: _choice_list(v, DEVICE_WEIGHTS, k)),
        "factor": (False, lambda v, k: _float_param(v, k, 0.0, None)),
    },
    IncidentKind.PAYMENT_OUTAGE: {
        "provider": (True, lambda v, k: _choice_list(v, PROVIDERS, k)),
        "method": (False, lambda v, k: _choice_list(v, METHODS, k)),
        "failure_rate": (False, lambda v, k: _float_param(v, k, 0.0, 1.0)),
        "reason": (False, lambda v, k: _choice_list(v, FAILURE_REASONS, k)),
    },
    IncidentKind.CARRIER_DELAY: {
        "carrier": (True, lambda v, k: _choice_list(v, CARRIERS, k)),
        "factor": (False, lambda v, k: _float_param(v, k, 1.0, None)),
        "stall": (False, _bool_param),
        "failure_rate": (False, lambda v, k: _float_param(v, k, 0.0, 1.0)),
    },
    IncidentKind.CHECKOUT_STALL: {
        "dropoff": (False, lambda v, k: _float_param(v, k, 0.0, 1.0)),
        "region": (False, lambda v, k: _choice_list(v, REGIONS, k)),
        "device": (False, lambda v, k: _choice_list(v, DEVICE_WEIGHTS, k)),
    },
    IncidentKind.WAREHOUSE_BACKLOG: {
        "warehouse": (True, lambda v, k: _choice_list(v, WAREHOUSES, k)),
    },
    IncidentKind.BAD_RECORDS: {
        "rate": (False, lambda v, k: _float_param(v, k, 0.001, None)),
        "family": (False, lambda v, k: _choice_list(v, [f.value for f in EventFamily], k)),
        "kinds": (False, lambda v, k: _choice_list(v, [b.value for b in BadKind], k)),
        "oversize": (False, lambda v, k: int(_float_param(v, k, 0.0, None))),
    },
}


@dataclass(frozen=True, slots=True)
class Incident:
    """A disturbance active over [start_s, start_s + duration_s) seconds from the run start.

    Parameters by kind (all values strings, `|` separates alternatives):
    - slow_pages: region, page, device (filters, each optional), factor (default 4)
    - payment_outage: provider (required), method, failure_rate (default 0.4), reason
    - carrier_delay: carrier (required), factor (default 6), stall (default false),
      failure_rate (delivery_failed probability during the incident)
    - checkout_stall: dropoff (extra abandonment after checkout_started, default 0.6),
      region, device
    - warehouse_backlog: warehouse (required): nothing ships from it during the incident
    - bad_records: rate (records/s, default 2), family, kinds, oversize (max count, default 2)
    """

    kind: IncidentKind
    start_s: float
    duration_s: float
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            kind = IncidentKind(self.kind)
        except ValueError:
            known = ", ".join(k.value for k in IncidentKind)
            raise ValueError(f"unknown incident kind {self.kind!r} (known: {known})") from None
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "params", dict(self.params))
        if not math.isfinite(self.start_s) or self.start_s < 0:
            raise ValueError(f"incident start must be >= 0 seconds, got {self.start_s}")
        if not math.isfinite(self.duration_s) or self.duration_s <= 0:
            raise ValueError(f"incident duration must be > 0 seconds, got {self.duration_s}")
        spec = _PARAMS[kind]
        for key, value in self.params.items():
            if key not in spec:
                allowed = ", ".join(spec) or "none"
                raise ValueError(f"{kind.value}: unknown parameter {key!r} (allowed: {allowed})")
            spec[key][1](value, key)
        for key, (required, _check) in spec.items():
            if required and key not in self.params:
                raise ValueError(f"{kind.value}: parameter {key!r} is required")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def start_ms(self, run_start_ms: int) -> int:
        return run_start_ms + round(self.start_s * 1000)

    def end_ms(self, run_start_ms: int) -> int:
        return run_start_ms + round(self.end_s * 1000)

    def values(self, key: str) -> tuple[str, ...] | None:
        """A `|`-separated parameter as a tuple, or None when not given (no filter)."""
        value = self.params.get(key)
        return None if value is None else tuple(v.strip() for v in value.split("|"))

    def number(self, key: str, default: float) -> float:
        value = self.params.get(key)
        return default if value is None else float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.params.get(key)
        return default if value is None else _bool_param(value, key)

    def __str__(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        text = f"{self.kind.value}@{_fmt_seconds(self.start_s)}+{_fmt_seconds(self.duration_s)}"
        return f"{text}:{params}" if params else text


def _fmt_seconds(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds}s"


_SPEC_RE = re.compile(
    r"^(?P<kind>[A-Za-z_]+)@(?P<start>[^+:]+)\+(?P<dur>[^:]+)(?::(?P<params>.*))?$"
)
_DURATION_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_offset_seconds(text: str) -> float:
    """'90', '90s', '1.5m', '2h', '500ms' -> seconds (a bare number is seconds)."""
    match = _DURATION_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a duration like 60s, 5m, 1h: {text!r}")
    return float(match["n"]) * _UNIT_SECONDS[match["unit"] or "s"]


def parse_incident(spec: str) -> Incident:
    """Parse `kind@start+duration[:key=value,key=value]`, e.g.
    `slow_pages@60s+180s:region=eu-west` or `payment_outage@2m+5m:provider=adyen`."""
    text = spec.strip()
    match = _SPEC_RE.match(text)
    if not match:
        raise ValueError(
            f"bad incident spec {spec!r}: expected kind@start+duration[:key=value,...], "
            "e.g. slow_pages@60s+180s:region=eu-west"
        )
    try:
        start = parse_offset_seconds(match["start"])
        duration = parse_offset_seconds(match["dur"])
    except ValueError as exc:
        raise ValueError(f"bad incident spec {spec!r}: {exc}") from None
    params: dict[str, str] = {}
    raw = match["params"]
    if raw is not None:
        for part in raw.split(","):
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise ValueError(f"bad incident spec {spec!r}: parameter {part!r} is not key=value")
            if key in params:
                raise ValueError(f"bad incident spec {spec!r}: parameter {key!r} given twice")
            params[key] = value
    try:
        kind = IncidentKind(match["kind"])
    except ValueError:
        known = ", ".join(k.value for k in IncidentKind)
        raise ValueError(
            f"bad incident spec {spec!r}: unknown incident kind {match['kind']!r} (known: {known})"
        ) from None
    try:
        return Incident(kind, start, duration, params)
    except ValueError as exc:
        raise ValueError(f"bad incident spec {spec!r}: {exc}") from None


def parse_incidents(specs: str | Iterable[str | Incident]) -> tuple[Incident, ...]:
    """Several specs: a `;`-separated string or an iterable of specs/Incidents."""
    items: Iterable[str | Incident] = specs.split(";") if isinstance(specs, str) else specs
    out: list[Incident] = []
    for item in items:
        if isinstance(item, Incident):
            out.append(item)
        elif item.strip():
            out.append(parse_incident(item))
    return tuple(out)


# --------------------------------------------------------------------------- bad records


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


# --------------------------------------------------------------------------- simulation state

GeneratedItem = tuple[EventFamily, str, Event | BadRecord]


@dataclass(slots=True)
class _Session:
    session_id: str
    user_id: str | None
    device: str
    platform: str
    region: str
    channel: str
    is_new_user: bool
    app_version: str | None
    page: str | None = None
    remaining: int = 1
    last_ms: int = 0
    pool_index: int = -1


@dataclass(slots=True)
class _Checkout:
    checkout_id: str
    session: _Session
    step: str
    amount: float
    currency: str
    provider: str = ""
    method: str = ""
    attempts: int = 0
    failure_reason: str = ""


@dataclass(slots=True)
class _Order:
    order_id: str
    session: _Session
    warehouse: str
    carrier: str
    promised_by: str
    status: str
    tracking_id: str | None = None
    scans_left: int = 0
    delivery_attempts: int = 0


_PAGE, _CHECKOUT_ARRIVAL, _CHECKOUT_STEP, _ORDER_ARRIVAL, _ORDER_STEP, _BAD = range(6)
_Task = tuple[int, int, int, Any]  # (time_ms, seq, kind, state)


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(tuple(weights), weights=tuple(weights.values()))[0]


def _lognormal_ms(rng: random.Random, median_ms: float, sigma: float) -> int:
    return max(1, round(median_ms * math.exp(rng.gauss(0.0, sigma))))


class TrafficGenerator:
    """Seeded generator of `(family, key, event)` items in (roughly) event-time order.

    `rate` is events per second over all enabled families, split by `mix` (checkouts and
    orders arrive at rate * share / expected events each, so the split is approximate:
    order lifecycles longer than the run are cut off). Events of each item carry an
    `occurred_at` up to `jitter_ms` before their place in the stream (late arrival).
    Order lifecycle gaps (hours to days) are divided by `lifecycle_compression`.
    Iterating twice yields the same items.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        rate: float = 100.0,
        start_ms: int = DEFAULT_START_MS,
        duration_s: float = 60.0,
        incidents: Iterable[Incident | str] = (),
        families: Iterable[EventFamily | str] | None = None,
        mix: Mapping[EventFamily | str, float] | None = None,
        jitter_ms: int = 2000,
        lifecycle_compression: float = 1.0,
        epoch_ms_share: float = 0.3,
        oversize_bytes: int = DEFAULT_OVERSIZE_BYTES,
    ) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be > 0 events/s, got {rate}")
        if not duration_s > 0:
            raise ValueError(f"duration must be > 0 s, got {duration_s}")
        if jitter_ms < 0:
            raise ValueError("jitter_ms must be >= 0")
        if lifecycle_compression <= 0:
            raise ValueError("lifecycle_compression must be > 0")
        if not 0 <= epoch_ms_share <= 1:
            raise ValueError("epoch_ms_share must be in [0, 1]")
        self.seed = seed
        self.rate = float(rate)
        self.start_ms = int(start_ms)
        self.duration_s = float(duration_s)
        self.incidents = parse_incidents(incidents)
        self.families: tuple[EventFamily, ...] = (
            tuple(EventFamily)
            if families is None
            else tuple(f for f in EventFamily if f in {EventFamily(x) for x in families})
        )
        if not self.families:
            raise ValueError("at least one event family is needed")
        raw_mix = {EventFamily(k): float(v) for k, v in (mix or DEFAULT_MIX).items()}
        if any(v < 0 for v in raw_mix.values()):
            raise ValueError("mix shares must be >= 0")
        total = sum(raw_mix.get(f, 0.0) for f in self.families)
        if total <= 0:
            raise ValueError("mix gives no share to the enabled families")
        self.mix = {f: raw_mix.get(f, 0.0) / total for f in self.families}
        self.jitter_ms = int(jitter_ms)
        self.lifecycle_compression = float(lifecycle_compression)
        self.epoch_ms_share = float(epoch_ms_share)
        self.oversize_bytes = int(oversize_bytes)

    def __iter__(self) -> Iterator[GeneratedItem]:
        return self.generate()

    def generate(self, start_ms: int | None = None) -> Iterator[GeneratedItem]:
        for _t, item in self.generate_timed(start_ms):
            yield item

    def generate_timed(self, start_ms: int | None = None) -> Iterator[tuple[int, GeneratedItem]]:
        """Items with their place in the stream (ms, non-decreasing; occurred_at <= it)."""
        run = _Run(self, self.start_ms if start_ms is None else int(start_ms))
        return run.events()


class _Run:
    """One pass of the simulation (all mutable state lives here)."""

    def __init__(self, gen: TrafficGenerator, start_ms: int) -> None:
        self.gen = gen
        self.start_ms = start_ms
        self.end_ms = start_ms + round(gen.duration_s * 1000)
        seed = gen.seed
        self.rng_ids = random.Random(f"{seed}:ids")
        self.rng_time = random.Random(f"{seed}:time")
        self.rng_page = random.Random(f"{seed}:page")
        self.rng_checkout = random.Random(f"{seed}:checkout")
        self.rng_order = random.Random(f"{seed}:order")
        self.rng_bad = random.Random(f"{seed}:bad")
        self.heap: list[_Task] = []
        self.seq = itertools.count()
        self.sessions: list[_Session] = []
        self.placed_orders: deque[tuple[str, _Session]] = deque(maxlen=10_000)
        self.bad_counts: dict[int, int] = {}
        self.oversize_counts: dict[int, int] = {}
        comp = gen.lifecycle_compression
        self.hour_ms = HOUR_MS / comp
        mix = gen.mix
        rate = gen.rate
        self.page_rate = rate * mix.get(EventFamily.PAGE_LOAD, 0.0)
        self.checkout_rate = (
            rate * mix.get(EventFamily.CHECKOUT, 0.0) / EXPECTED_EVENTS_PER_CHECKOUT
        )
        self.order_rate = rate * mix.get(EventFamily.LOGISTICS, 0.0) / EXPECTED_EVENTS_PER_ORDER
        self.incident_windows = [
            (inc, inc.start_ms(start_ms), inc.end_ms(start_ms)) for inc in gen.incidents
        ]

    # ---- scheduling ------------------------------------------------------

    def push(self, t: int, kind: int, state: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, state))

    def _next_arrival(self, t: int, rate: float) -> int:
        return t + max(1, round(self.rng_time.expovariate(rate) * 1000))

    def active(self, kind: IncidentKind, t: int) -> list[tuple[Incident, int, int]]:
        return [w for w in self.incident_windows if w[0].kind is kind and w[1] <= t < w[2]]

    def events(self) -> Iterator[tuple[int, GeneratedItem]]:
        start = self.start_ms
        if self.page_rate > 0:
            self.push(self._next_arrival(start, self.page_rate), _PAGE, None)
        if self.checkout_rate > 0:
            self.push(self._next_arrival(start, self.checkout_rate), _CHECKOUT_ARRIVAL, None)
        if self.order_rate > 0:
            self.push(self._next_arrival(start, self.order_rate), _ORDER_ARRIVAL, None)
        for index, (inc, s, _e) in enumerate(self.incident_windows):
            if inc.kind is IncidentKind.BAD_RECORDS:
                self.push(s, _BAD, index)
        handlers: dict[int, Callable[[int, Any], Iterator[GeneratedItem]]] = {
            _PAGE: self._page,
            _CHECKOUT_ARRIVAL: self._checkout_arrival,
            _CHECKOUT_STEP: self._checkout_step,
            _ORDER_ARRIVAL: self._order_arrival,
            _ORDER_STEP: self._order_step,
            _BAD: self._bad,
        }
        heap = self.heap
        while heap and heap[0][0] < self.end_ms:
            t, _seq, kind, state = heapq.heappop(heap)
            for item in handlers[kind](t, state):
                yield t, item

    # ---- common fields ---------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng_ids.getrandbits(128), version=4))

    def hex_id(self, prefix: str, nbytes: int) -> str:
        return f"{prefix}{self.rng_ids.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def new_session(self, rng: random.Random, t: int) -> _Session:
        device = _pick(rng, DEVICE_WEIGHTS)
        platform = _pick(rng, PLATFORM_WEIGHTS[device])
        is_new = rng.random() < 0.3
        logged_in = rng.random() < (0.15 if is_new else 0.65)
        if not logged_in:
            user_id = None
        elif is_new:
            user_id = f"u-{rng.randrange(1_000_000, 9_999_999)}"
        else:
            user_id = f"u-{rng.randrange(1, 250_000):06d}"
        app_version = _pick(rng, APP_VERSIONS) if platform in ("ios", "android") else None
        bounce = rng.random() < BOUNCE_PROBABILITY
        views = 1 if bounce else 1 + max(1, round(rng.expovariate(1.0 / MEAN_EXTRA_VIEWS)))
        return _Session(
            session_id=self.hex_id("s-", 10),
            user_id=user_id,
            device=device,
            platform=platform,
            region=_pick(rng, REGION_WEIGHTS),
            channel=_pick(rng, CHANNEL_WEIGHTS),
            is_new_user=is_new,
            app_version=app_version,
            remaining=views,
            last_ms=t,
        )

    def common(self, session: _Session, t: int) -> Event:
        occurred = t - (self.rng_time.randint(0, self.gen.jitter_ms) if self.gen.jitter_ms else 0)
        when: int | str = (
            occurred if self.rng_time.random() < self.gen.epoch_ms_share else format_ms(occurred)
        )
        event: Event = {
            "event_id": self.new_id(),
            "occurred_at": when,
            "schema_version": 1,
            "session_id": session.session_id,
            "device": session.device,
            "platform": session.platform,
            "region": session.region,
            "channel": session.channel,
            "is_new_user": session.is_new_user,
        }
        if session.user_id is not None:
            event["user_id"] = session.user_id
        if session.app_version is not None:
            event["app_version"] = session.app_version
        return event

    # ---- page loads ------------------------------------------------------

    def _session_for_view(self, t: int) -> _Session:
        rng = self.rng_page
        pool = self.sessions
        # Continue an open session (most views) or start a new one.
        if pool and rng.random() > 1.0 / (1.0 + MEAN_EXTRA_VIEWS * (1 - BOUNCE_PROBABILITY)):
            session = pool[rng.randrange(len(pool))]
            if t - session.last_ms <= SESSION_IDLE_MS:
                return session
            self._drop_session(session)
        session = self.new_session(rng, t)
        session.pool_index = len(pool)
        pool.append(session)
        return session

    def _drop_session(self, session: _Session) -> None:
        pool = self.sessions
        index = session.pool_index
        if index < 0:
            return
        moved = pool[-1]
        pool[index] = moved
        moved.pool_index = index
        pool.pop()
        session.pool_index = -1

    def _end_view(self, session: _Session) -> None:
        session.remaining -= 1
        if session.remaining <= 0:
            self._drop_session(session)

    def _page(self, t: int, _state: Any) -> Iterator[GeneratedItem]:
        self.push(self._next_arrival(t, self.page_rate), _PAGE, None)
        rng = self.rng_page
        session = self._session_for_view(t)
        page = (
            _pick(rng, LANDING_WEIGHTS)
            if session.page is None
            else _pick(rng, NEXT_PAGE[session.page])
        )
        session.page = page
        session.last_ms = t
        median = (
            PAGE_MEDIAN_MS[page] * DEVICE_FACTOR[session.device] * REGION_FACTOR[session.region]
        )
        load = median * math.exp(rng.gauss(0.0, LOAD_SIGMA))
        if rng.random() < 0.005:  # the occasional cold cache / slow third party
            load *= 3.0
        for inc, _s, _e in self.active(IncidentKind.SLOW_PAGES, t):
            if _matches(inc, region=session.region, page=page, device=session.device):
                load *= inc.number("factor", 4.0)
        load_ms = max(20, round(load))
        event = self.common(session, t)
        event["page"] = page
        event["load_ms"] = load_ms
        ttfb = max(5, round(load_ms * rng.uniform(0.08, 0.25)))
        event["ttfb_ms"] = ttfb
        if session.platform in ("web", "miniapp"):
            fcp = max(ttfb, round(load_ms * rng.uniform(0.3, 0.6)))
            event["fcp_ms"] = fcp
            event["lcp_ms"] = max(fcp, round(load_ms * rng.uniform(0.6, 1.05)))
            inp_median = 200.0 if session.device == "mobile" else 90.0
            event["inp_ms"] = _lognormal_ms(rng, inp_median, 0.5)
            event["cls"] = round(min(1.0, rng.lognormvariate(math.log(0.04), 0.9)), 3)
        self._end_view(session)
        yield EventFamily.PAGE_LOAD, session.session_id, event

    # ---- checkout --------------------------------------------------------

    def _checkout_arrival(self, t: int, _state: Any) -> Iterator[GeneratedItem]:
        self.push(self._next_arrival(t, self.checkout_rate), _CHECKOUT_ARRIVAL, None)
        rng = self.rng_checkout
        if self.sessions and rng.random() < 0.8:
            session = self.sessions[rng.randrange(len(self.sessions))]
        else:
            session = self.new_session(rng, t)
        currency, fx = CURRENCY_BY_REGION.get(session.region, ("EUR", 1.0))
        amount = round(rng.lognormvariate(math.log(65.0), 0.7) * fx, 2)
        state = _Checkout(self.hex_id("co-", 8), session, "cart_viewed", amount, currency)
        yield from self._checkout_step(t, state)

    def _choose_payment(self, state: _Checkout) -> None:
        rng = self.rng_checkout
        state.provider = _pick(rng, PROVIDER_WEIGHTS)
        state.method = _pick(rng, PROVIDER_METHODS[state.provider])

    def _checkout_step(self, t: int, state: _Checkout) -> Iterator[GeneratedItem]:
        rng = self.rng_checkout
        step = state.step
        event = self.common(state.session, t)
        event["checkout_id"] = state.checkout_id
        event["step"] = step
        if step in ("payment_submitted", "payment_succeeded", "payment_failed"):
            event["payment_provider"] = state.provider
            event["payment_method"] = state.method
        if step == "payment_failed":
            event["failure_reason"] = state.failure_reason
        if step in ("cart_viewed", "payment_submitted", "order_placed"):
            event["amount"] = state.amount
            event["currency"] = state.currency
        next_step: str | None = None
        delay = 0
        if step == "cart_viewed":
            if rng.random() < P_CHECKOUT_STARTED:
                next_step, delay = "checkout_started", _lognormal_ms(rng, 25_000, 0.8)
        elif step == "checkout_started":
            p = P_SHIPPING_SELECTED
            for inc, _s, _e in self.active(IncidentKind.CHECKOUT_STALL, t):
                if _matches(inc, region=state.session.region, device=state.session.device):
                    p *= 1.0 - inc.number("dropoff", 0.6)
            if rng.random() < p:
                next_step, delay = "shipping_selected", _lognormal_ms(rng, 30_000, 0.6)
        elif step == "shipping_selected":
            if rng.random() < P_PAYMENT_SUBMITTED:
                self._choose_payment(state)
                next_step, delay = "payment_submitted", _lognormal_ms(rng, 40_000, 0.6)
        elif step == "payment_submitted":
            state.attempts += 1
            next_step, delay = self._payment_outcome(t, state)
        elif step == "payment_succeeded":
            if rng.random() < P_ORDER_PLACED:
                next_step, delay = "order_placed", _lognormal_ms(rng, 800, 0.4)
        elif step == "payment_failed":
            retry_p = 0.1 if state.failure_reason == "fraud_suspected" else P_RETRY_AFTER_FAILURE
            if state.attempts < MAX_PAYMENT_ATTEMPTS and rng.random() < retry_p:
                if rng.random() < P_SWITCH_PROVIDER_ON_RETRY:
                    self._choose_payment(state)
                next_step, delay = "payment_submitted", _lognormal_ms(rng, 20_000, 0.6)
        elif step == "order_placed":
            order_id = f"ord-{self.rng_ids.randrange(10**9, 10**10)}"
            event["order_id"] = order_id
            event["payment_provider"] = state.provider
            event["payment_method"] = state.method
            if EventFamily.LOGISTICS in self.gen.mix:
                self.placed_orders.append((order_id, state.session))
        if next_step is not None:
            state.step = next_step
            self.push(t + delay, _CHECKOUT_STEP, state)
        if EventFamily.CHECKOUT in self.gen.mix:
            yield EventFamily.CHECKOUT, state.checkout_id, event

    def _payment_outcome(self, t: int, state: _Checkout) -> tuple[str, int]:
        rng = self.rng_checkout
        fail_p = METHOD_FAILURE[state.method] * (1.1 if state.provider == "paypal" else 1.0)
        reasons = FAILURE_REASON_WEIGHTS
        for inc, _s, _e in self.active(IncidentKind.PAYMENT_OUTAGE, t):
            if _matches(inc, provider=state.provider, method=state.method):
                fail_p = max(fail_p, inc.number("failure_rate", 0.4))
                chosen = inc.values("reason")
                reasons = {r: 1.0 for r in chosen} if chosen else OUTAGE_REASON_WEIGHTS
        if rng.random() < fail_p:
            state.failure_reason = _pick(rng, reasons)
            slow = state.failure_reason == "provider_timeout"
            return "payment_failed", _lognormal_ms(rng, 30_000 if slow else 1500, 0.2)
        return "payment_succeeded", _lognormal_ms(rng, 1800, 0.4)

    # ---- logistics -------------------------------------------------------

    def _order_arrival(self, t: int, _state: Any) -> Iterator[GeneratedItem]:
        self.push(self._next_arrival(t, self.order_rate), _ORDER_ARRIVAL, None)
        rng = self.rng_order
        if self.placed_orders:
            order_id, session = self.placed_orders.popleft()
        else:  # orders from channels outside the simulated web checkout
            order_id = f"ord-{self.rng_ids.randrange(10**9, 10**10)}"
            session = self.new_session(rng, t)
        promise_h = rng.choice((48, 72, 96, 120))
        order = _Order(
            order_id=order_id,
            session=session,
            warehouse=_pick(rng, WAREHOUSE_BY_REGION.get(session.region, {"fra-1": 1.0})),
            carrier=_pick(rng, CARRIER_BY_REGION.get(session.region, {"dhl": 1.0})),
            promised_by=format_ms(t + round(promise_h * self.hour_ms)),
            status="order_placed",
        )
        yield from self._order_step(t, order)

    def _tracking_id(self, carrier: str) -> str:
        rng = self.rng_ids
        if carrier == "ups":
            return "1Z" + "".join(rng.choices("0123456789ABCDEFGHJKLMNPRSTUVWXYZ", k=16))
        if carrier == "dhl":
            return "JD" + f"{rng.randrange(10**17, 10**18)}"
        if carrier == "fedex":
            return f"{rng.randrange(10**11, 10**12)}"
        return f"{rng.randrange(10**13, 10**14)}"

    def _gap(self, median_h: float, sigma: float) -> int:
        return max(1, round(self.hour_ms * median_h * math.exp(self.rng_order.gauss(0.0, sigma))))

    def _order_step(self, t: int, order: _Order) -> Iterator[GeneratedItem]:
        rng = self.rng_order
        status = order.status
        # Stalls: the step waits for the incident to end.
        if status == "shipped":
            for inc, _s, end in self.active(IncidentKind.WAREHOUSE_BACKLOG, t):
                if _matches(inc, warehouse=order.warehouse):
                    self.push(end + self._gap(1.0, 0.5), _ORDER_STEP, order)
                    return
        carrier_incidents = [
            inc_w
            for inc_w in self.active(IncidentKind.CARRIER_DELAY, t)
            if _matches(inc_w[0], carrier=order.carrier)
        ]
        if status in ("in_transit", "out_for_delivery", "delivered", "delivery_failed"):
            for inc, _s, end in carrier_incidents:
                if inc.flag("stall"):
                    self.push(end + self._gap(2.0, 0.5), _ORDER_STEP, order)
                    return
        factor = max((inc.number("factor", 6.0) for inc, _s, _e in carrier_incidents), default=1.0)
        p_fail = max(
            (inc.number("failure_rate", P_DELIVERY_FAILED) for inc, _s, _e in carrier_incidents),
            default=P_DELIVERY_FAILED,
        )
        if status == "shipped":
            order.tracking_id = self._tracking_id(order.carrier)
        event = self.common(order.session, t)
        event["order_id"] = order.order_id
        event["status"] = status
        event["carrier"] = order.carrier
        event["warehouse"] = order.warehouse
        event["promised_by"] = order.promised_by
        if order.tracking_id is not None:
            event["tracking_id"] = order.tracking_id
        next_status: str | None = None
        gap = 0
        if status == "order_placed":
            next_status, gap = "packed", self._gap(3.0, 0.6)
        elif status == "packed":
            next_status, gap = "shipped", self._gap(6.0, 0.6)
        elif status == "shipped":
            order.scans_left = rng.choice((0, 1, 1, 2))
            next_status, gap = "in_transit", round(self._gap(2.0, 0.5) * factor)
        elif status == "in_transit":
            if order.scans_left > 0:
                order.scans_left -= 1
                next_status, gap = "in_transit", round(self._gap(8.0, 0.4) * factor)
            else:
                next_status, gap = "out_for_delivery", round(self._gap(6.0, 0.4) * factor)
        elif status == "out_for_delivery":
            order.delivery_attempts += 1
            failed = rng.random() < (p_fail if order.delivery_attempts == 1 else 0.15)
            next_status = "delivery_failed" if failed else "delivered"
            gap = round(self._gap(4.0, 0.4) * factor)
        elif status == "delivery_failed":
            if order.delivery_attempts >= 2 or rng.random() < P_RETURN_AFTER_FAILED:
                next_status, gap = "returned", self._gap(48.0, 0.3)
            else:
                next_status, gap = "out_for_delivery", self._gap(20.0, 0.3)
        elif status == "delivered" and rng.random() < P_RETURN_AFTER_DELIVERED:
            next_status, gap = "returned", self._gap(96.0, 0.4)
        if next_status is not None:
            order.status = next_status
            self.push(t + max(1, gap), _ORDER_STEP, order)
        if EventFamily.LOGISTICS in self.gen.mix:
            yield EventFamily.LOGISTICS, order.order_id, event

    # ---- bad records -----------------------------------------------------

    def _bad(self, t: int, index: int) -> Iterator[GeneratedItem]:
        inc, _s, end = self.incident_windows[index]
        rng = self.rng_bad
        rate = inc.number("rate", 2.0)
        nxt = t + max(1, round(rng.expovariate(rate) * 1000))
        if nxt < end:
            self.push(nxt, _BAD, index)
        count = self.bad_counts.get(index, 0)
        self.bad_counts[index] = count + 1
        chosen = inc.values("family")
        families = tuple(EventFamily(f) for f in chosen) if chosen else self.gen.families
        family = families[count % len(families)]
        wanted = inc.values("kinds")
        kinds = tuple(k for k in bad_kinds_for(family) if wanted is None or k.value in wanted)
        max_oversize = int(inc.number("oversize", 2))
        if self.oversize_counts.get(index, 0) >= max_oversize:
            kinds = tuple(k for k in kinds if k is not BadKind.OVERSIZE)
        if not kinds:
            return
        kind = kinds[(count // len(families)) % len(kinds)]
        if kind is BadKind.OVERSIZE:
            self.oversize_counts[index] = self.oversize_counts.get(index, 0) + 1
        session = self.new_session(rng, t)
        base = self.common(session, t)
        if family is EventFamily.PAGE_LOAD:
            base.update(page="/", load_ms=700)
            key = session.session_id
        elif family is EventFamily.CHECKOUT:
            key = self.hex_id("co-", 8)
            base.update(checkout_id=key, step="cart_viewed", amount=10.0, currency="EUR")
        else:
            key = f"ord-{self.rng_ids.randrange(10**9, 10**10)}"
            base.update(order_id=key, status="packed", carrier="dhl", warehouse="ams-1")
        yield family, key, make_bad_record(kind, family, base, self.gen.oversize_bytes)


def _matches(incident: Incident, **attrs: str) -> bool:
    """True when every filter parameter the incident sets admits the given attribute."""
    for name, value in attrs.items():
        allowed = incident.values(name)
        if allowed is not None and value not in allowed:
            return False
    return True


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record to send. `events` holds the good, first-time events it carries."""

    family: EventFamily
    key: str
    value: bytes
    time_ms: int  # stream time when it was closed: the largest occurred_at seen so far
    events: tuple[Event, ...] = ()
    duplicates: int = 0
    bad: BadRecord | None = None

    @property
    def event_count(self) -> int:
        return len(self.events) + self.duplicates + (1 if self.bad is not None else 0)


_Group = tuple[EventFamily, int]  # family and partition a batch is for


def encode_records(
    items: Iterable[GeneratedItem],
    batch_size: int = 1,
    *,
    duplicate_ratio: float = 0.0,
    seed: int = 0,
    max_batch_delay_ms: int = 1000,
    partitions: Mapping[EventFamily, int] | None = None,
) -> Iterator[Record]:
    """Group generated items into records.

    With `partitions` (the partition count of each family's topic), a batch only holds
    events whose keys hash (Kafka's murmur2) to the same partition, so every checkout,
    session and order stays in one partition whatever the batching, as a collector that
    batches per user would do.

    batch_size 1: one JSON object per record, keyed by the item's key. batch_size N > 1: a
    JSON array of up to N events of one family, keyed by its first event's key; a batch is
    also closed when an item arrives `max_batch_delay_ms` after the batch's first one.
    Bad records are sent alone, as their raw bytes. With `duplicate_ratio` p, each good
    event is re-sent with probability p (same event_id) as a single-event record with its
    own key, right after the next record of its family.
    Stream time (for the delay and `Record.time_ms`) is the largest occurred_at seen so far.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not 0 <= duplicate_ratio <= 1:
        raise ValueError("duplicate_ratio must be in [0, 1]")
    rng = random.Random(f"{seed}:duplicates")
    buffers: dict[_Group, list[tuple[str, Event]]] = {}
    first_time: dict[_Group, int] = {}
    pending_dups: dict[EventFamily, list[tuple[str, Event]]] = {}
    last_t = 0

    def group_of(family: EventFamily, key: str) -> _Group:
        if partitions is None or batch_size == 1:
            return (family, 0)
        return (family, partition_for(key, partitions[family]))

    def flush(group: _Group, t: int) -> Iterator[Record]:
        family = group[0]
        buf = buffers.pop(group, None)
        first_time.pop(group, None)
        if buf:
            events = tuple(ev for _k, ev in buf)
            value = codec.dumps(events[0]) if batch_size == 1 else codec.dumps(list(events))
            yield Record(family, buf[0][0], value, t, events)
        if not any(g[0] == family for g in buffers):
            for key, ev in pending_dups.pop(family, []):
                yield Record(family, key, codec.dumps(ev), t, (), duplicates=1)

    for family, key, payload in items:
        if not isinstance(payload, BadRecord):
            last_t = max(last_t, parse_event_time_ms(payload["occurred_at"]))
        t = last_t
        for grp, started in list(first_time.items()):
            if t - started >= max_batch_delay_ms:
                yield from flush(grp, t)
        if isinstance(payload, BadRecord):
            yield Record(family, key, payload.value, t, (), bad=payload)
            continue
        group = group_of(family, key)
        buffers.setdefault(group, []).append((key, payload))
        first_time.setdefault(group, t)
        if duplicate_ratio and rng.random() < duplicate_ratio:
            pending_dups.setdefault(family, []).append((key, payload))
        if len(buffers[group]) >= batch_size:
            yield from flush(group, t)
    for group in list(buffers):
        yield from flush(group, last_t)
    for family in list(pending_dups):
        for key, ev in pending_dups.pop(family):
            yield Record(family, key, codec.dumps(ev), last_t, (), duplicates=1)


# --------------------------------------------------------------------------- producing


@dataclass(slots=True)
class ProduceStats:
    """What `produce` sent, per topic."""

    records: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)  # good + duplicates + bad records
    bad_records: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    cancelled: bool = False

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": dict(self.records),
            "events": dict(self.events),
            "bad_records": dict(self.bad_records),
            "duplicates": dict(self.duplicates),
            "elapsed_s": round(self.elapsed_s, 3),
            "cancelled": self.cancelled,
        }


def topic_for(settings: Settings, family: EventFamily) -> str:
    return BY_NAME[str(family)].topic(settings)


def _default_producer(settings: Settings, max_request_size: int) -> Any:
    return AIOKafkaProducer(
        **aiokafka_kwargs(settings),
        client_id="expmon-simulator",
        linger_ms=10,
        max_batch_size=256 * 1024,
        max_request_size=max_request_size,
        acks=1,
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def produce(
    settings: Settings,
    generator: TrafficGenerator,
    batch_size: int = 1,
    realtime: bool = False,
    *,
    duplicate_ratio: float = 0.0,
    max_batch_delay_ms: int = 1000,
    on_record: Callable[[Record], None] | None = None,
    producer_factory: Callable[[Settings, int], Any] | None = None,
    progress_every_s: float = 5.0,
) -> ProduceStats:
    """Send the generator's traffic to the three input topics.

    realtime=True: event times start at the wall clock now and records are paced so that
    stream time follows the wall clock (the target rate). realtime=False: synthetic event
    times from `generator.start_ms`, sent as fast as the producer takes them.
    `on_record` sees every record after it was handed to the producer. On cancellation the
    producer is flushed and stopped, and CancelledError propagates.
    """
    start_ms = now_ms() if realtime else generator.start_ms
    max_request = max(1_048_576, generator.oversize_bytes + 64 * 1024)
    factory = producer_factory or _default_producer
    producer = factory(settings, max_request)
    stats = ProduceStats()
    loop = asyncio.get_running_loop()
    wall_start = loop.time()
    last_log = wall_start
    pending: list[asyncio.Future[Any]] = []
    topics = {f: topic_for(settings, f) for f in EventFamily}
    await producer.start()
    partitions = None
    if batch_size > 1:
        partitions = {f: len(await producer.partitions_for(topics[f])) for f in EventFamily}
    records = encode_records(
        generator.generate(start_ms),
        batch_size,
        duplicate_ratio=duplicate_ratio,
        seed=generator.seed,
        max_batch_delay_ms=max_batch_delay_ms,
        partitions=partitions,
    )
    logger.info(
        "simulating %.0f events/s for %.0f s (%s mode, batch %d, incidents: %s) -> %s",
        generator.rate,
        generator.duration_s,
        "realtime" if realtime else "as-fast-as-possible",
        batch_size,
        ", ".join(str(i) for i in generator.incidents) or "none",
        ", ".join(topics[f] for f in generator.families),
    )
    try:
        for record in records:
            if realtime:
                delay = (record.time_ms - start_ms) / 1000.0 - (loop.time() - wall_start)
                if delay > 0.002:
                    await asyncio.sleep(delay)
            topic = topics[record.family]
            fut = await producer.send(topic, value=record.value, key=record.key.encode())
            pending.append(fut)
            stats.records[topic] = stats.records.get(topic, 0) + 1
            stats.events[topic] = stats.events.get(topic, 0) + record.event_count
            if record.bad is not None:
                stats.bad_records[topic] = stats.bad_records.get(topic, 0) + 1
            if record.duplicates:
                stats.duplicates[topic] = stats.duplicates.get(topic, 0) + record.duplicates
            if on_record is not None:
                on_record(record)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            now = loop.time()
            if now - last_log >= progress_every_s:
                last_log = now
                elapsed = now - wall_start
                logger.info(
                    "produced %d events in %d records (%.0f events/s)",
                    stats.total_events,
                    stats.total_records,
                    stats.total_events / elapsed if elapsed > 0 else 0.0,
                )
            elif not realtime and stats.total_records % 1000 == 0:
                await asyncio.sleep(0)  # let the producer's sender task run
        if pending:
            await asyncio.gather(*pending)
            pending.clear()
    except asyncio.CancelledError:
        stats.cancelled = True
        logger.info("simulation cancelled; flushing what was produced")
        raise
    finally:
        try:
            await producer.flush()
        finally:
            await producer.stop()
        stats.elapsed_s = loop.time() - wall_start
        logger.info(
            "produced %d events in %d records in %.1f s: %s",
            stats.total_events,
            stats.total_records,
            stats.elapsed_s,
            stats.events,
        )
    return stats


async def run_simulate(
    settings: Settings,
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    batch_size: int = 1,
    incidents: Sequence[Incident | str] | str = (),
    realtime: bool = True,
    ground_truth_path: Path | str | None = None,
    families: Iterable[EventFamily | str] | None = None,
    start_ms: int | None = None,
    duplicate_ratio: float = 0.0,
    jitter_ms: int = 2000,
    lifecycle_compression: float = 1.0,
    mix: Mapping[EventFamily | str, float] | None = None,
    producer_factory: Callable[[Settings, int], Any] | None = None,
) -> ProduceStats:
    """The `expmon simulate` entry: build the generator, produce, optionally write truth.

    Without `start_ms`, non-realtime runs end at the current minute (start = now rounded
    down to the minute - duration), so the events are recent but never in the future.
    Ground truth (page loads; bad records excluded, duplicates counted once) is written
    even when cancelled, for what was produced.
    """
    parsed = parse_incidents(incidents)
    if start_ms is None:
        minute = now_ms() // 60_000 * 60_000
        start_ms = minute - round(duration_s * 1000)
    generator = TrafficGenerator(
        seed=seed,
        rate=rate,
        start_ms=start_ms,
        duration_s=duration_s,
        incidents=parsed,
        families=families,
        mix=mix,
        jitter_ms=jitter_ms,
        lifecycle_compression=lifecycle_compression,
        oversize_bytes=settings.max_record_bytes + 1024,
    )
    collected: list[Event] = []

    def keep(record: Record) -> None:
        if record.family is EventFamily.PAGE_LOAD:
            collected.extend(record.events)

    try:
        return await produce(
            settings,
            generator,
            batch_size,
            realtime,
            duplicate_ratio=duplicate_ratio,
            on_record=keep if ground_truth_path is not None else None,
            producer_factory=producer_factory,
        )
    finally:
        if ground_truth_path is not None:
            rows = page_load_truth(
                collected,
                window_ms=settings.window_ms,
                views=views_of(settings),
                slow_threshold_ms=settings.slow_threshold_seconds * 1000,
                apdex_t_ms=settings.apdex_t_seconds * 1000,
            )
            truth_file.write_truth(ground_truth_path, rows)
            logger.info(
                "wrote ground truth: %d rows from %d page loads to %s",
                len(rows),
                len(collected),
                ground_truth_path,
            )
