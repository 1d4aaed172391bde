"""The typed fast path of record decoding: msgspec Structs that parse and validate in C.

`RecordDecoder` tries this first. A record is taken here only when every event in it is
valid by the hand-written rules of `schemas.events` and holds no field those rules do not
name; anything else (a bad event, an unknown field, an event time given as a float or
outside the accepted range, a label with a non-printable character, an empty array...)
returns None, and the record goes the precise way: `codec.loads` and the validators, which
name the dead-letter reason. So outcomes and reasons are those of the validators by
construction, and the events taken here are the same dicts the precise way builds (fields
absent stay absent, `null` stays `None`, ints stay ints), annotated the same way.

What the Structs cannot say is checked in Python after the C pass: event time in range,
labels printable, the page's route template.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from schemas.events import BATCH_INDEX, MAX_STRING, Event, route_template
from schemas.eventtime import MIN_EVENT_TIME_MS, parse_event_time_ms

# Must match the validators' sets (tests/unit/schemas/test_structs.py checks them).
Device = Literal["mobile", "desktop", "tablet"]
Platform = Literal["web", "ios", "android", "miniapp"]
Channel = Literal["ads", "organic", "social", "direct", "other"]

RequiredStr = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING)]
OptionalStr = Annotated[str, msgspec.Meta(max_length=MAX_STRING)] | UnsetType | None
# An int stays an int (msgspec's `float` would turn 1200 into 1200.0). The int bound keeps
# to what orjson returns as an int: larger integers it returns as floats.
Duration = (
    Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    | Annotated[float, msgspec.Meta(ge=0)]
    | UnsetType
    | None
)


class PageLoadEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A page_load event the fast path can take (UNSET: the field was not sent).

    `gc=False`: it holds scalars only, so the collector need not track it."""

    event_id: RequiredStr
    schema_version: Literal[1]
    occurred_at: int | float | str
    session_id: RequiredStr
    device: Device
    platform: Platform
    region: RequiredStr
    page: RequiredStr
    channel: Channel | UnsetType | None = UNSET
    user_id: OptionalStr = UNSET
    app_version: OptionalStr = UNSET
    is_new_user: bool | UnsetType | None = UNSET
    load_ms: Duration = UNSET
    ttfb_ms: Duration = UNSET
    fcp_ms: Duration = UNSET
    lcp_ms: Duration = UNSET
    inp_ms: Duration = UNSET
    cls: Duration = UNSET


_PAGE_LOAD_DECODER = msgspec.json.Decoder(PageLoadEvent | list[PageLoadEvent])
_NOT_TAKEN = (msgspec.ValidationError, msgspec.DecodeError)


class PageLoadFastPath:
    """Record value -> the valid page_load events it holds, or None (the precise way)."""

    __slots__ = ("max_events", "max_future_ms")

    def __init__(self, max_future_ms: int, max_events: int) -> None:
        self.max_future_ms = max_future_ms
        self.max_events = max_events

    def decode(self, value: bytes, now_ms: int, valid: list[Event]) -> int | None:
        """Append the record's events to `valid` and return how many; or None, with
        `valid` as it was."""
        try:
            decoded = _PAGE_LOAD_DECODER.decode(value)
        except _NOT_TAKEN:
            return None
        latest_ms = now_ms + self.max_future_ms
        if isinstance(decoded, PageLoadEvent):
            event = _page_load(decoded, latest_ms)
            if event is None:
                return None
            valid.append(event)
            return 1
        if not decoded or len(decoded) > self.max_events:
            return None  # the precise way names the empty or oversized batch
        before = len(valid)
        for index, item in enumerate(decoded):
            event = _page_load(item, latest_ms)
            if event is None:
                del valid[before:]
                return None
            event[BATCH_INDEX] = index
            valid.append(event)
        return len(decoded)


def _page_load(item: PageLoadEvent, latest_ms: int) -> Event | None:
    """The validated event as the validators return it, or None if they must decide."""
    occurred = item.occurred_at
    if type(occurred) is int:
        t = occurred
    else:
        try:
            t = parse_event_time_ms(occurred)
        except (ValueError, OverflowError, OSError):
            return None
    if t < MIN_EVENT_TIME_MS or t > latest_ms:
        return None
    if not item.region.isprintable():
        return None  # maybe legitimate (a non-breaking space): the validators look closer
    page = item.page
    route = _ROUTES.get(page) or _new_route(page)  # one lookup for a page seen before
    if route is None:
        return None
    load = item.load_ms
    if (load is None or load is UNSET) and not _has_web_vital(item):
        return None
    event: Event = msgspec.to_builtins(item)  # UNSET fields left out, as they were sent
    event["page"] = route
    event["_t"] = t
    return event


# page -> its route, for pages the fast path takes (printable, a non-empty route): pages
# are few and repeat, and one lookup is cheaper than the checks and the split
_ROUTES: dict[str, str] = {}
_MAX_ROUTES = 10_000  # bounds the cache only (pages with ids in them are all different)


def _new_route(page: str) -> str | None:
    """The route of a page not in `_ROUTES` (then remembered), or None if the fast path
    does not take the page: the validators must decide."""
    if not page.isprintable():
        return None  # maybe legitimate (a non-breaking space): the validators look closer
    route = route_template(page)
    if not route:
        return None
    if len(_ROUTES) >= _MAX_ROUTES:
        _ROUTES.clear()
    _ROUTES[page] = route
    return route


def _has_web_vital(item: PageLoadEvent) -> bool:
    return any(
        value is not None and value is not UNSET
        for value in (item.ttfb_ms, item.fcp_ms, item.lcp_ms, item.inp_ms, item.cls)
    )
