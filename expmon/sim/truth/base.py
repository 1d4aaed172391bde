"""What every family's ground truth shares: views, de-duplication, the truth file.

Windows: base windows are tumbling, aligned to epoch multiples of `window_ms`. A view of
k base windows ending at E covers [E - k * window_ms, E); a row is emitted for every base
window end E (and group) where that range holds at least one event, so a view keeps
reporting for k - 1 windows after its group's last event. The 1-window view is the base
windows themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas import codec

DEFAULT_VIEWS: tuple[tuple[str, int], ...] = (("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60))
ALL = "all"
TRUTH_FORMAT = "expmon-truth/1"

TruthRow = dict[str, Any]


def dedupe(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Events with a repeated event_id dropped (the first occurrence wins)."""
    seen: set[str] = set()
    out: list[Mapping[str, Any]] = []
    for event in events:
        event_id = event["event_id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        out.append(event)
    return out


def write_truth(path: Path | str, rows: Sequence[TruthRow], kind: str = "page_load") -> None:
    """Write rows as one JSON document: {"format", "kind", "rows"}."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(codec.dumps({"format": TRUTH_FORMAT, "kind": kind, "rows": list(rows)}))
    tmp.replace(target)


def read_truth(path: Path | str) -> list[TruthRow]:
    data = codec.loads(Path(path).read_bytes())
    if not isinstance(data, dict) or data.get("format") != TRUTH_FORMAT:
        raise ValueError(f"{path}: not an expmon truth file")
    rows = data["rows"]
    if not isinstance(rows, list):
        raise ValueError(f"{path}: rows is not a list")
    return rows
