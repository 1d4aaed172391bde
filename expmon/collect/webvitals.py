"""`web-vitals` library beacons -> page-load events.

A beacon is what a page sends from the library's callbacks: the metric object (`name`,
`value`, `delta`, `id`, `rating`, `navigationType`, optional `attribution`), one or an
array, as `navigator.sendBeacon` (text/plain) or `fetch(..., {keepalive: true})` sends it.
Each metric becomes one page-load event carrying that vital's field and no `load_ms`
(valid since the contract's "load_ms or at least one vital" rule): no per-page-view
assembly, so replicas stay stateless and a lost tab loses only its unsent metrics.

What the metric does not say comes from fields the page may add to the object (`page`,
`session_id`, `device`, `region`, `app_version`), else from the metric and the request:
the page is the route template of the metric's `navigationURL` (web-vitals 5 and later),
else of the `Referer` (sendBeacon and fetch send the page URL), the device the
class of the user agent, the session the metric's own `id` (one page view), the region
the collector's setting. `event_id` is `wv-<name>-<id>`: the library gives each metric of
each page view its own `id`, and a repeat of the same report is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from expmon.collect.context import device_class, route_template
from schemas import codec
from schemas.events import Event
from schemas.records import Rejected

# web-vitals metric name -> the page-load field it fills (values in ms, CLS unitless)
VITAL_FIELDS = {"TTFB": "ttfb_ms", "FCP": "fcp_ms", "LCP": "lcp_ms", "INP": "inp_ms", "CLS": "cls"}


@dataclass(frozen=True, slots=True)
class BeaconContext:
    """What the request says about the page that sent it."""

    referer: str
    user_agent: str
    region: str
    now_ms: int


@dataclass
class Mapped:
    """Contract events made from a payload, items that could not be, items ignored."""

    events: list[Event] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    ignored: int = 0


def page_load_event(
    event_id: Any, occurred_at: Any, session_id: Any, page: Any, device: Any, region: Any
) -> Event:
    """A page-load event's common fields; None leaves a field out for the validator to name."""
    event: Event = {"schema_version": 1, "platform": "web"}
    for name, value in (
        ("event_id", event_id),
        ("occurred_at", occurred_at),
        ("session_id", session_id),
        ("page", page),
        ("device", device),
        ("region", region),
    ):
        if value is not None:
            event[name] = value
    return event


def map_metrics(items: list[Any], ctx: BeaconContext) -> Mapped:
    out = Mapped()
    for index, item in enumerate(items):
        if type(item) is not dict:
            out.rejected.append(
                Rejected("not_object", "metric is not a JSON object", codec.dumps(item), index)
            )
            continue
        name = item.get("name")
        vital = VITAL_FIELDS.get(name) if type(name) is str else None
        if vital is None or type(name) is not str:
            out.ignored += 1  # FID, custom metrics...: not a field of the contract
            continue
        metric_id = item.get("id")
        page = item.get("page")
        if type(page) is str:
            page = route_template(page)
        elif page is None:
            url = item.get("navigationURL")  # web-vitals 5+: the page the metric is of
            page = route_template(url if type(url) is str else ctx.referer)
        session = item.get("session_id")
        event = page_load_event(
            f"wv-{name.lower()}-{metric_id}" if type(metric_id) is str and metric_id else None,
            ctx.now_ms,
            session if session is not None else (metric_id or None),
            page,
            item.get("device") or device_class(ctx.user_agent),
            item.get("region") or ctx.region,
        )
        if item.get("app_version") is not None:
            event["app_version"] = item["app_version"]
        event[vital] = item.get("value")
        out.events.append(event)
    return out
