"""Incidents that bend the simulated traffic for a while (`kind@start+duration:k=v,...`):
slow pages, a payment provider outage, a carrier delay, a checkout stall, a warehouse
backlog, a burst of bad records, or an LCP regression."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from expmon.sim.bad_records import BadKind
from expmon.sim.catalogue import (
    CARRIERS,
    DEVICE_WEIGHTS,
    FAILURE_REASONS,
    METHODS,
    PAGES,
    PROVIDERS,
    REGIONS,
    WAREHOUSES,
)
from schemas.events import EventFamily

logger = logging.getLogger(__name__)


class IncidentKind(StrEnum):
    SLOW_PAGES = "slow_pages"
    PAYMENT_OUTAGE = "payment_outage"
    CARRIER_DELAY = "carrier_delay"
    CHECKOUT_STALL = "checkout_stall"
    WAREHOUSE_BACKLOG = "warehouse_backlog"
    BAD_RECORDS = "bad_records"
    LCP_REGRESSION = "lcp_regression"


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
    IncidentKind.LCP_REGRESSION: {
        "page": (False, lambda v, k: _choice_list(v, PAGES, k)),
        "device": (False, lambda v, k: _choice_list(v, DEVICE_WEIGHTS, k)),
        "region": (False, lambda v, k: _choice_list(v, REGIONS, k)),
        "factor": (False, lambda v, k: _float_param(v, k, 0.0, None)),
    },
}


@dataclass(frozen=True, slots=True)
class Incident:
    """A disturbance active over [start_s, start_s + duration_s) seconds from the run start.

    Parameters by kind (all values strings, `|` separates alternatives):
    - slow_pages: region, page, device (filters, each optional), factor (default 4); it
      slows the load event (load_ms, e.g. a third party), not the vitals
    - payment_outage: provider (required), method, failure_rate (default 0.4), reason
    - carrier_delay: carrier (required), factor (default 6), stall (default false),
      failure_rate (delivery_failed probability during the incident)
    - checkout_stall: dropoff (extra abandonment after checkout_started, default 0.6),
      region, device
    - warehouse_backlog: warehouse (required): nothing ships from it during the incident
    - bad_records: rate (records/s, default 2), family, kinds, oversize (max count, default 2)
    - lcp_regression: page, device, region (filters), factor (default 3): LCP of the
      matching web page views multiplied (a release with a heavier hero image)
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
