"""What every family's ground truth shares: views, de-duplication, the truth file.

Windows: base windows are tumbling, aligned to epoch multiples of `window_ms`. A view of
k base windows ending at E covers [E - k * window_ms, E); a row is emitted for every base
window end E (and group) where that range holds at least one event, so a view keeps
reporting for k - 1 windows after its group's last event. The 1-window view is the base
windows themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expmon.settings import Settings, parse_duration_seconds
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


def views_of(settings: Settings) -> list[tuple[str, int]]:
    """The base view and each rolling view of the settings, as (name, base windows)."""
    base = "1m" if settings.window_seconds == 60 else f"{settings.window_seconds}s"
    return [(base, 1)] + [
        (view, max(1, parse_duration_seconds(view) // settings.window_seconds))
        for view in settings.rolling_views
    ]


TruthRows = Callable[[Sequence[Mapping[str, Any]], Settings, int], list[TruthRow]]
RowKey = Callable[[Mapping[str, Any]], tuple[Any, ...]]


@dataclass(frozen=True)
class FamilyTruth:
    """A family's exact figures, in the shape of its window rows, and how to compare.

    `rows(events, settings, closed_through_ms)`: every row of every view whose window
    ends at or before closed_through_ms (the events: valid, not late; duplicates are
    dropped by event_id). `key`: a row's identity (view, end, kind and group labels).
    Floats compare to 1e-9 unless `relative` gives a field a relative tolerance (the
    sketch's 1 % on quantiles); `ignore` lists pipeline fields truth does not compute;
    `covers` says which pipeline rows truth speaks for.
    """

    rows: TruthRows
    key: RowKey
    relative: Mapping[str, float] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset({"sample_event_ids"})
    covers: Callable[[Mapping[str, Any]], bool] = lambda _row: True

    def differences(
        self, got: Iterable[Mapping[str, Any]], want: Iterable[Mapping[str, Any]]
    ) -> list[str]:
        """Every way the pipeline's rows `got` differ from truth's rows `want` (empty: equal)."""
        mine = {self.key(row): row for row in got if self.covers(row)}
        theirs = {self.key(row): row for row in want}
        problems = [f"missing row {k}" for k in sorted(theirs.keys() - mine.keys(), key=str)]
        problems += [f"extra row {k}" for k in sorted(mine.keys() - theirs.keys(), key=str)]
        for key in sorted(theirs.keys() & mine.keys(), key=str):
            row = {k: v for k, v in mine[key].items() if k not in self.ignore}
            expected = theirs[key]
            if row.keys() != expected.keys():
                problems.append(f"{key}: fields {sorted(row)} != {sorted(expected)}")
                continue
            for name, value in expected.items():
                if not _close(row[name], value, self.relative.get(name)):
                    problems.append(f"{key} {name}: {row[name]!r} != {value!r}")
        return problems


def _close(got: Any, want: Any, relative: float | None) -> bool:
    if isinstance(want, float) and isinstance(got, int | float):
        if relative is not None:
            return abs(got - want) <= relative * abs(want)
        return math.isclose(got, want, rel_tol=0, abs_tol=1e-9)
    return bool(got == want)
