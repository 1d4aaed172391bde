"""Grafana Faro web SDK payloads (`POST /collect`) -> page-load events.

The payload is the one the Faro receiver of Grafana Alloy accepts
(internal/component/faro/receiver/internal/payload/payload.go): `meta` (sdk, app, user,
session, page, browser, view), `measurements`, `events`, `logs`, `exceptions`, `traces`.
Mapping (everything else is counted as ignored, never an error):

- a measurement of type `web-vitals` (values `{<vital>: value, delta, ...attribution}`,
  context `{id, rating, navigation_type, ...}`) -> a page-load event with that vital
  (`lcp`->`lcp_ms`, `inp`->`inp_ms`, `fcp`->`fcp_ms`, `ttfb`->`ttfb_ms`, `cls`->`cls`),
  `event_id` `faro-<vital>-<context.id>`, at the measurement's timestamp;
- the `faro.performance.navigation` event (attributes are strings) -> a page-load event
  with `load_ms` = `pageLoadTime` (fetch start to DOM complete), `event_id`
  `faro-nav-<faroNavigationId>`; its `ttfb` is left to the TTFB measurement, so no
  vital is counted twice;
- from `meta`: `session.id` -> `session_id`, `page.url` -> `page` (route template),
  `browser.mobile`/`browser.userAgent` -> `device`, `app.version` -> `app_version`;
  the region is the collector's setting. `user` is not copied (no personal data kept).
"""

from __future__ import annotations

import math
from typing import Any

from expmon.collect.context import device_class, route_template
from expmon.collect.webvitals import BeaconContext, Mapped, page_load_event
from schemas import codec
from schemas.events import Event
from schemas.records import Rejected

FARO_VITALS = {"ttfb": "ttfb_ms", "fcp": "fcp_ms", "lcp": "lcp_ms", "inp": "inp_ms", "cls": "cls"}
NAVIGATION_EVENT = "faro.performance.navigation"
IGNORED_SECTIONS = ("logs", "exceptions")


def _dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def _number(text: Any) -> float | None:
    """Faro's timing attributes are strings ('1234' or 'unknown')."""
    if type(text) in (int, float):
        return float(text)
    if type(text) is not str:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _Meta:
    def __init__(self, meta: dict[str, Any], ctx: BeaconContext) -> None:
        browser = _dict(meta.get("browser"))
        page = _dict(meta.get("page"))
        url = page.get("url")
        self.session_id = _dict(meta.get("session")).get("id")
        self.page = route_template(url) if type(url) is str else None
        ua = browser.get("userAgent")
        self.device = device_class(
            ua if type(ua) is str else ctx.user_agent, browser.get("mobile") is True
        )
        self.app_version = _dict(meta.get("app")).get("version")
        self.region = ctx.region

    def event(self, event_id: str | None, occurred_at: Any) -> Event:
        event = page_load_event(
            event_id, occurred_at, self.session_id, self.page, self.device, self.region
        )
        if type(self.app_version) is str and self.app_version:
            event["app_version"] = self.app_version
        return event


def map_payload(payload: Any, ctx: BeaconContext) -> Mapped:
    out = Mapped()
    if type(payload) is not dict:
        out.rejected.append(
            Rejected("not_object", "Faro payload is not a JSON object", codec.dumps(payload), None)
        )
        return out
    meta = payload.get("meta")
    if type(meta) is not dict:
        out.rejected.append(
            Rejected("missing_field:meta", "Faro payload without meta", codec.dumps(payload), None)
        )
        return out
    m = _Meta(meta, ctx)
    for index, item in enumerate(_list(payload.get("measurements"))):
        _measurement(item, index, m, ctx, out)
    for item in _list(payload.get("events")):
        _event(item, m, ctx, out)
    for section in IGNORED_SECTIONS:
        out.ignored += len(_list(payload.get(section)))
    if payload.get("traces") is not None:
        out.ignored += 1
    return out


def _list(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _measurement(item: Any, index: int, m: _Meta, ctx: BeaconContext, out: Mapped) -> None:
    if type(item) is not dict or item.get("type") != "web-vitals":
        out.ignored += 1
        return
    values = _dict(item.get("values"))
    found = [(k, f) for k, f in FARO_VITALS.items() if k in values]
    if not found:
        out.ignored += 1
        return
    context = _dict(item.get("context"))
    metric_id = context.get("id")
    for key, name in found:
        event = m.event(
            f"faro-{key}-{metric_id}" if type(metric_id) is str and metric_id else None,
            item.get("timestamp") or ctx.now_ms,
        )
        event[name] = values[key]
        out.events.append(event)


def _event(item: Any, m: _Meta, ctx: BeaconContext, out: Mapped) -> None:
    if type(item) is not dict or item.get("name") != NAVIGATION_EVENT:
        out.ignored += 1
        return
    attributes = _dict(item.get("attributes"))
    nav_id = attributes.get("faroNavigationId")
    event = m.event(
        f"faro-nav-{nav_id}" if type(nav_id) is str and nav_id else None,
        item.get("timestamp") or ctx.now_ms,
    )
    load_ms = _number(attributes.get("pageLoadTime"))
    if load_ms is None:
        out.ignored += 1  # 'unknown' (e.g. a prerendered page): nothing to measure
        return
    event["load_ms"] = load_ms
    out.events.append(event)
