"""Event-time parsing: RFC 3339 strings or epoch milliseconds -> epoch ms (int)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

# Year 2000 in epoch ms: anything earlier is a unit mistake (seconds for ms) or garbage.
MIN_EVENT_TIME_MS = 946_684_800_000


def parse_event_time_ms(value: object) -> int:
    """Return epoch milliseconds; raise ValueError on anything else (bools included)."""
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("timestamp is not finite")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValueError("RFC 3339 timestamp needs a UTC offset")
        return int(parsed.timestamp() * 1000)
    raise ValueError(f"timestamp must be a string or a number, not {type(value).__name__}")


def format_ms(epoch_ms: int) -> str:
    """RFC 3339 UTC with millisecond precision."""
    return (
        datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
