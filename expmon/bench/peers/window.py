"""The peers' windowed page-load job, the framework-free parts.

The job (as the expmon worker's page-load stage does it): decode and validate each record
with the project's decoder (`schemas.RecordDecoder`), drop repeated `event_id`s,
1-minute event-time tumbling windows per page x device with 30 s grace, and per window
p50/p95/p99 (the project's DDSketch), slow share and Apdex, emitted once when the window
closes. Windowing, state and the watermark are each framework's own; this module holds
what each of them calls per event, so that both peers do the same work and the tests
can check it without a framework.

Imports only the standard library, `schemas` and `expmon.engine.sketch` (the Quix venv).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from expmon.engine.sketch import DDSketch
from schemas.events import Event, EventFamily
from schemas.records import RecordDecoder, Rejected

WINDOW_MS = 60_000
GRACE_MS = 30_000
# expmon's defaults (Settings.slow_threshold_seconds, apdex_t_seconds)
SLOW_MS = 3_000.0
APDEX_T_MS = 2_500.0
QUANTILES = (0.5, 0.95, 0.99)


def window_key(event: Event) -> str:
    """The window's key: page x device."""
    return f"{event['page']}|{event['device']}"


def window_start(t_ms: int) -> int:
    return t_ms - t_ms % WINDOW_MS


def event_time_ms(event: Event) -> int:
    """Event time as the validators set it (`_t`, from `occurred_at`)."""
    return int(event["_t"])


class Decoder:
    """Record value -> its valid page_load events; rejects are counted and dropped (the
    peers have no dead-letter topic)."""

    def __init__(self) -> None:
        self._decoder = RecordDecoder(EventFamily.PAGE_LOAD)
        self.rejected = 0

    def decode(self, value: bytes | None, now_ms: int | None = None) -> list[Event]:
        valid: list[Event] = []
        rejected: list[Rejected] = []
        self._decoder.decode(
            value, int(time.time() * 1000) if now_ms is None else now_ms, valid, rejected
        )
        self.rejected += len(rejected)
        return valid


class Deduplicator:
    """`event_id`s seen within `horizon_ms` of event time behind the latest seen.

    Two generations of ids: when the latest event time passes the current generation's
    end, the older one is dropped, so an id is remembered for at least `horizon_ms`
    (window + grace: a repeat later than that would be late for its window anyway).
    """

    __slots__ = ("_older", "_recent", "_rotate_at", "horizon_ms")

    def __init__(self, horizon_ms: int = WINDOW_MS + GRACE_MS) -> None:
        self.horizon_ms = horizon_ms
        self._recent: set[str] = set()
        self._older: set[str] = set()
        self._rotate_at: int | None = None

    def first_seen(self, event_id: str, t_ms: int) -> bool:
        """True the first time `event_id` comes (within the horizon), False for a repeat."""
        if self._rotate_at is None:
            self._rotate_at = t_ms + self.horizon_ms
        elif t_ms >= self._rotate_at:
            self._older, self._recent = self._recent, set()
            self._rotate_at = t_ms + self.horizon_ms
        if event_id in self._recent or event_id in self._older:
            return False
        self._recent.add(event_id)
        return True

    def __len__(self) -> int:
        return len(self._recent) + len(self._older)


class WindowFigures:
    """Mergeable figures of the page loads of one key in one window."""

    __slots__ = ("count", "satisfied", "sketch", "slow", "tolerating")

    def __init__(self) -> None:
        self.count = 0
        self.slow = 0
        self.satisfied = 0
        self.tolerating = 0
        self.sketch = DDSketch()

    def add(self, event: Event) -> WindowFigures:
        load_ms = event.get("load_ms")
        if load_ms is None:  # a Core Web Vitals report without a load time
            return self
        self.count += 1
        if load_ms > SLOW_MS:
            self.slow += 1
        if load_ms <= APDEX_T_MS:
            self.satisfied += 1
        elif load_ms <= 4 * APDEX_T_MS:
            self.tolerating += 1
        self.sketch.add(load_ms)
        return self

    def merge(self, other: WindowFigures) -> WindowFigures:
        self.count += other.count
        self.slow += other.slow
        self.satisfied += other.satisfied
        self.tolerating += other.tolerating
        self.sketch.merge(other.sketch)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (Quix Streams keeps window values in its state store as JSON)."""
        return {
            "n": self.count,
            "slow": self.slow,
            "sat": self.satisfied,
            "tol": self.tolerating,
            "sk": self.sketch.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowFigures:
        figures = cls()
        figures.count = int(data["n"])
        figures.slow = int(data["slow"])
        figures.satisfied = int(data["sat"])
        figures.tolerating = int(data["tol"])
        figures.sketch = DDSketch.from_dict(data["sk"])
        return figures


def summarize(key: str, start_ms: int, figures: WindowFigures) -> dict[str, Any]:
    """What one closed window emits."""
    page, device = key.split("|", 1)
    n = figures.count
    p50, p95, p99 = figures.sketch.quantiles(QUANTILES) if n else (None, None, None)
    return {
        "page": page,
        "device": device,
        "start_ms": start_ms,
        "end_ms": start_ms + WINDOW_MS,
        "count": n,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "slow_ratio": figures.slow / n if n else None,
        "apdex": (figures.satisfied + figures.tolerating / 2) / n if n else None,
    }
