"""Field rules for the three event families of the product contract (schema_version 1).

Validators are plain functions over the decoded dict: they raise InvalidEvent with a
short reason code, and on success return the same dict with `_t` (event time, epoch ms)
added. Hand-written rather than a model library because they run once per event on the
hot path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from schemas.errors import InvalidEvent
from schemas.eventtime import MIN_EVENT_TIME_MS, parse_event_time_ms

Event = dict[str, Any]
Validator = Callable[[Event, int], Event]

SCHEMA_VERSIONS = frozenset({1})
DEVICES = frozenset({"mobile", "desktop", "tablet"})
PLATFORMS = frozenset({"web", "ios", "android", "miniapp"})
CHANNELS = frozenset({"ads", "organic", "social", "direct", "other"})
CHECKOUT_STEPS = (
    "cart_viewed",
    "checkout_started",
    "shipping_selected",
    "payment_submitted",
    "payment_succeeded",
    "payment_failed",
    "order_placed",
)
PAYMENT_STEPS = frozenset({"payment_submitted", "payment_succeeded", "payment_failed"})
LOGISTICS_STATUSES = (
    "order_placed",
    "packed",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "delivery_failed",
    "returned",
)
_CHECKOUT_STEP_SET = frozenset(CHECKOUT_STEPS)
_LOGISTICS_STATUS_SET = frozenset(LOGISTICS_STATUSES)
_OPTIONAL_WEB_VITALS = ("ttfb_ms", "fcp_ms", "lcp_ms", "inp_ms", "cls")
WEB_VITAL_FIELDS = _OPTIONAL_WEB_VITALS  # optional page-load fields; one is enough without load_ms
MAX_STRING = 256
BATCH_INDEX = "_i"  # position of an event in its array record: set-aside events carry it
# C0 and C1 control characters (and DEL): never valid in a label value. prometheus_client
# escapes only backslash, quote and newline, so a CR or NUL would corrupt the exposition.
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))


class EventFamily(StrEnum):
    PAGE_LOAD = "page_load"
    CHECKOUT = "checkout"
    LOGISTICS = "logistics"


# The contract's record key of each family's topic: the field an event is keyed by.
KEY_FIELDS: dict[EventFamily, str] = {
    EventFamily.PAGE_LOAD: "session_id",
    EventFamily.CHECKOUT: "checkout_id",
    EventFamily.LOGISTICS: "order_id",
}


def _required_str(event: Event, name: str) -> str:
    value = event.get(name)
    if value is None:
        raise InvalidEvent(f"missing_field:{name}")
    if type(value) is not str or not value or len(value) > MAX_STRING:
        raise InvalidEvent(f"wrong_type:{name}", "a non-empty string of at most 256 characters")
    return value


def _optional_str(event: Event, name: str) -> None:
    value = event.get(name)
    if value is not None and (type(value) is not str or len(value) > MAX_STRING):
        raise InvalidEvent(f"wrong_type:{name}", "a string of at most 256 characters")


def _enum(event: Event, name: str, allowed: frozenset[str], required: bool = True) -> None:
    value = event.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"missing_field:{name}")
        return
    if value not in allowed:
        raise InvalidEvent(f"unknown_enum:{name}", f"{value!r} not in {sorted(allowed)}")


def _duration(event: Event, name: str, required: bool) -> None:
    value = event.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"missing_field:{name}")
        return
    if type(value) is not int and type(value) is not float:
        raise InvalidEvent(f"wrong_type:{name}", "a number")
    if not math.isfinite(value):
        raise InvalidEvent(f"not_finite:{name}")
    if value < 0:
        raise InvalidEvent(f"negative_value:{name}", str(value))


def _label(event: Event, name: str) -> str:
    """A required string that becomes a metric label: no control characters."""
    value = _required_str(event, name)
    # isprintable() is one C loop; only the rare non-printable value is inspected closer
    # (non-printable but legitimate: a non-breaking space, a zero-width joiner...).
    if not value.isprintable() and not _CONTROL.isdisjoint(value):
        raise InvalidEvent(f"control_characters:{name}", repr(value)[:200])
    return value


def route_template(page: str) -> str:
    """The route a `page` names: query string and fragment stripped (they carry ids, tokens
    and e-mail addresses that must not become labels), and of an absolute URL only the path."""
    if "?" in page or "#" in page:
        page = page.split("#", 1)[0].split("?", 1)[0]
    if "://" in page:
        scheme, _, rest = page.partition("://")
        if scheme.isalpha():  # http://host:port/path -> /path (userinfo and host dropped)
            slash = rest.find("/")
            page = rest[slash:] if slash >= 0 else "/"
    return page


def _page(event: Event) -> str:
    """The event's route template (set by the caller once every check passed, so that a
    dead letter keeps the page as it was sent)."""
    page = event.get("page")
    if type(page) is not str or not _is_str(page) or not page.isprintable():
        page = _label(event, "page")
    route = route_template(page)
    if not route:
        raise InvalidEvent("empty_route:page", f"{page!r} holds no route before ? or #")
    return route


def _is_str(value: object) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_STRING


def _is_duration(value: object) -> bool:
    # NaN and infinities fail the range test and take the slow path, which names them.
    return (type(value) is int or type(value) is float) and 0 <= value < math.inf


def _has_web_vital(event: Event) -> bool:
    get = event.get
    return any(get(name) is not None for name in _OPTIONAL_WEB_VITALS)


def _common(event: Event, now_ms: int, max_future_ms: int) -> Event:
    """Checks shared by every family; sets `_t` (event time in epoch ms).

    Hot path: each field is one lookup and a type test; the detailed checks (the
    `_required_str`, `_enum`, ... helpers) run only to raise the precise reason.
    """
    get = event.get
    if not _is_str(get("event_id")):
        _required_str(event, "event_id")
    version = get("schema_version")
    if version is None:
        raise InvalidEvent("missing_field:schema_version")
    if version not in SCHEMA_VERSIONS or type(version) is not int:
        raise InvalidEvent("unsupported_schema_version", repr(version))
    occurred = get("occurred_at")
    if type(occurred) is int:
        t = occurred
    else:
        if occurred is None:
            raise InvalidEvent("missing_field:occurred_at")
        try:
            t = parse_event_time_ms(occurred)
        except (ValueError, OverflowError, OSError) as exc:
            raise InvalidEvent("wrong_type:occurred_at", str(exc)) from None
    if t < MIN_EVENT_TIME_MS or t > now_ms + max_future_ms:
        raise InvalidEvent("absurd_timestamp", repr(occurred))
    if not _is_str(get("session_id")):
        _required_str(event, "session_id")
    if get("device") not in DEVICES:
        _enum(event, "device", DEVICES)
    if get("platform") not in PLATFORMS:
        _enum(event, "platform", PLATFORMS)
    region = get("region")
    if type(region) is not str or not _is_str(region) or not region.isprintable():
        _label(event, "region")
    channel = get("channel")
    if channel is not None and channel not in CHANNELS:
        _enum(event, "channel", CHANNELS, required=False)
    if get("user_id") is not None:
        _optional_str(event, "user_id")
    if get("app_version") is not None:
        _optional_str(event, "app_version")
    new_user = get("is_new_user")
    if new_user is not None and type(new_user) is not bool:
        raise InvalidEvent("wrong_type:is_new_user", "a boolean")
    event["_t"] = t
    return event


def make_validators(max_future_ms: int) -> dict[EventFamily, Validator]:
    """Validators bound to a future-time tolerance; `now_ms` is passed per call (per batch)."""

    def page_load(event: Event, now_ms: int) -> Event:
        _common(event, now_ms, max_future_ms)
        get = event.get
        route = _page(event)
        load = get("load_ms")
        if not _is_duration(load) and (load is not None or not _has_web_vital(event)):
            # vital-only events (a web-vitals or Faro beacon) may leave load_ms out
            if load is None:
                raise InvalidEvent("missing_field:load_ms", "load_ms or at least one web vital")
            _duration(event, "load_ms", required=True)
        for name in _OPTIONAL_WEB_VITALS:
            value = get(name)
            if value is not None and not _is_duration(value):
                _duration(event, name, required=False)
        event["page"] = route
        return event

    def checkout(event: Event, now_ms: int) -> Event:
        _common(event, now_ms, max_future_ms)
        _required_str(event, "checkout_id")
        _enum(event, "step", _CHECKOUT_STEP_SET)
        step = event["step"]
        if step in PAYMENT_STEPS:
            _label(event, "payment_provider")
            _label(event, "payment_method")
        if step == "payment_failed":
            _label(event, "failure_reason")
        _duration(event, "amount", required=False)
        _optional_str(event, "currency")
        _optional_str(event, "order_id")
        return event

    def logistics(event: Event, now_ms: int) -> Event:
        _common(event, now_ms, max_future_ms)
        _required_str(event, "order_id")
        _enum(event, "status", _LOGISTICS_STATUS_SET)
        _label(event, "carrier")
        _label(event, "warehouse")
        _optional_str(event, "tracking_id")
        promised = event.get("promised_by")
        if promised is not None:
            try:
                event["_promised_ms"] = parse_event_time_ms(promised)
            except (ValueError, OverflowError, OSError) as exc:
                raise InvalidEvent("wrong_type:promised_by", str(exc)) from None
        return event

    return {
        EventFamily.PAGE_LOAD: page_load,
        EventFamily.CHECKOUT: checkout,
        EventFamily.LOGISTICS: logistics,
    }


_DEFAULT = make_validators(max_future_ms=86_400_000)
validate_page_load = _DEFAULT[EventFamily.PAGE_LOAD]
validate_checkout = _DEFAULT[EventFamily.CHECKOUT]
validate_logistics = _DEFAULT[EventFamily.LOGISTICS]


def validator_for(family: EventFamily, max_future_ms: int = 86_400_000) -> Validator:
    return make_validators(max_future_ms)[family]
