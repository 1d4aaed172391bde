"""Exact ground truth for checkout windows, computed from the events themselves.

Pure functions, no Kafka, no watermark: the reference `expmon.families.checkout` is checked
against. It applies the product's definitions (see the `expmon.families.checkout` docstring) in a
direct form: each checkout's events sorted by (event time, step in CHECKOUT_STEPS order,
device, channel, user_type) and cut into lifecycles wherever an event comes at or after
the previous one's time + `abandon_ms`; per lifecycle the first event of each step
counts `step:<step>`, and a lifecycle without order_placed counts
`abandoned:<last_step>` at (its latest time + abandon_ms) under its latest event's group.
Payment attempts, failures and reasons count per event.

The caller passes the valid checkout events that should count (already filtered for
lateness; duplicates are dropped here by event_id, the first occurrence wins). With
`closed_through_ms` (the end of the last window the processor closed everywhere), rows
cover window ends <= closed_through_ms only, and an abandonment counts only if its
deadline is <= closed_through_ms; without it, every lifecycle's end is counted. Label
limits are not applied: the caller keeps labels within `max_label_values`.

Views as in `expmon.sim.truth.base`: a k-window view ending at E covers [E - k * window_ms, E); a
row is emitted for every window end E and group with at least one count in that range.
Rows have the formats of the windows topic's checkout rows (funnel groups plus the
"all"/"all"/"all" group, payment groups plus user_type "all"; no sample event ids: truth
is about figures) and are sorted by the order of `views`, then end_ms, then
`row_sort_key`. Nothing here comes from `expmon.families`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expmon.settings import Settings
from expmon.sim.truth.base import DEFAULT_VIEWS, FamilyTruth, TruthRow, dedupe, views_of
from schemas.events import CHECKOUT_STEPS
from schemas.eventtime import parse_event_time_ms

DEFAULT_ABANDON_MS = 1_800_000

# The product's definitions, written out here on purpose (not imported from
# expmon.families.checkout): a mistake in the processor's formulas must show as a
# difference from this module, not be copied into it.
ALL = "all"
ORDER_PLACED = "order_placed"
PAYMENT_SUCCEEDED = "payment_succeeded"
PAYMENT_FAILED = "payment_failed"
FUNNEL = ("cart_viewed", "checkout_started", "shipping_selected", "payment_submitted", ORDER_PLACED)
STEP_INDEX = {step: i for i, step in enumerate(CHECKOUT_STEPS)}
FUNNEL_SPACE = "funnel"
PAYMENT_SPACE = "payment"
ATTEMPTS = "attempts"
FAILURES = "failures"
STEP_PREFIX = "step:"
ABANDONED_PREFIX = "abandoned:"
REASON_PREFIX = "reason:"
KINDS = ("dropoff", "conversion", "payment")


def user_type_of(event: Mapping[str, Any]) -> str:
    """`new` only when is_new_user is true; missing or false is `returning`."""
    return "new" if event.get("is_new_user") is True else "returning"


def channel_of(event: Mapping[str, Any]) -> str:
    return str(event.get("channel") or "other")


def _share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def row_sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Kind (drop-off, conversion, payment), then group, then funnel position."""
    if row["kind"] == "payment":
        return (2, row["provider"], row["method"], row["user_type"], 0)
    position = FUNNEL.index(row["from_step"]) if row["kind"] == "dropoff" else 0
    return (KINDS.index(row["kind"]), row["device"], row["channel"], row["user_type"], position)


def funnel_rows(
    view: str, start_ms: int, end_ms: int, group: tuple[str, str, str], counts: Mapping[str, int]
) -> list[TruthRow]:
    """Drop-off rows of each consecutive funnel pair, then the conversion row."""
    device, channel, user_type = group
    head = {"view": view, "start_ms": start_ms, "end_ms": end_ms,
            "device": device, "channel": channel, "user_type": user_type}  # fmt: skip
    reached = {step: counts.get(STEP_PREFIX + step, 0) for step in CHECKOUT_STEPS}
    rows: list[TruthRow] = []
    for i in range(len(FUNNEL) - 1):
        before, after = reached[FUNNEL[i]], reached[FUNNEL[i + 1]]
        rows.append(
            {"kind": "dropoff", **head, "from_step": FUNNEL[i], "to_step": FUNNEL[i + 1],
             "from_count": before, "to_count": after,
             "dropoff_ratio": (before - after) / before if before else None}
        )  # fmt: skip
    abandoned = {
        step: counts[ABANDONED_PREFIX + step]
        for step in CHECKOUT_STEPS
        if counts.get(ABANDONED_PREFIX + step)
    }
    rows.append(
        {"kind": "conversion", **head,
         "checkout_started": reached["checkout_started"], "order_placed": reached[ORDER_PLACED],
         "conversion_ratio": _share(reached[ORDER_PLACED], reached["checkout_started"]),
         "abandoned": abandoned, "abandoned_total": sum(abandoned.values())}
    )  # fmt: skip
    return rows


def payment_row(
    view: str, start_ms: int, end_ms: int, group: tuple[str, str, str], counts: Mapping[str, int]
) -> TruthRow:
    provider, method, user_type = group
    reasons = sorted(name for name in counts if name.startswith(REASON_PREFIX) and counts[name])
    return {
        "kind": "payment", "view": view, "start_ms": start_ms, "end_ms": end_ms,
        "provider": provider, "method": method, "user_type": user_type,
        "attempts": counts.get(ATTEMPTS, 0), "failures": counts.get(FAILURES, 0),
        "failure_ratio": _share(counts.get(FAILURES, 0), counts.get(ATTEMPTS, 0)),
        "failures_by_reason": {name[len(REASON_PREFIX) :]: counts[name] for name in reasons},
    }  # fmt: skip


_Group = tuple[str, str, str, str]  # (space, dim, dim, user_type)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """One checkout lifecycle: from its first event to its deadline."""

    checkout_id: str
    first_ms: int
    last_ms: int
    last_step: str
    ordered: bool
    deadline_ms: int

    @property
    def abandoned(self) -> bool:
        return not self.ordered


def _sort_key(event: Mapping[str, Any]) -> tuple[int, int, str, str, str]:
    return (
        parse_event_time_ms(event["occurred_at"]),
        STEP_INDEX[event["step"]],
        event["device"],
        channel_of(event),
        user_type_of(event),
    )


def lifecycles(
    events: Iterable[Mapping[str, Any]], abandon_ms: int = DEFAULT_ABANDON_MS
) -> list[Lifecycle]:
    """Every checkout lifecycle of the events, by (checkout_id, first_ms)."""
    by_checkout: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in dedupe(events):
        by_checkout[event["checkout_id"]].append(event)
    out: list[Lifecycle] = []
    for checkout_id, evs in sorted(by_checkout.items()):
        evs.sort(key=_sort_key)
        first = last = parse_event_time_ms(evs[0]["occurred_at"])
        ordered = False
        last_step = evs[0]["step"]
        for event in evs:
            t = parse_event_time_ms(event["occurred_at"])
            if t >= last + abandon_ms:
                out.append(
                    Lifecycle(checkout_id, first, last, last_step, ordered, last + abandon_ms)
                )
                first, ordered = t, False
            last, last_step = t, event["step"]
            ordered = ordered or last_step == ORDER_PLACED
        out.append(Lifecycle(checkout_id, first, last, last_step, ordered, last + abandon_ms))
    return out


class _Counts:
    """group -> base window index -> counter name -> n."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.base: dict[_Group, dict[int, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )

    def add(self, group: _Group, t: int, name: str) -> None:
        self.base[group][t // self.window_ms][name] += 1


def _count(
    events: list[Mapping[str, Any]],
    counts: _Counts,
    abandon_ms: int,
    closed_through_ms: int | None,
) -> None:
    by_checkout: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        by_checkout[event["checkout_id"]].append(event)
        step = event["step"]
        if step in (PAYMENT_SUCCEEDED, PAYMENT_FAILED):
            t = parse_event_time_ms(event["occurred_at"])
            group = (
                PAYMENT_SPACE,
                event["payment_provider"],
                event["payment_method"],
                user_type_of(event),
            )
            counts.add(group, t, ATTEMPTS)
            if step == PAYMENT_FAILED:
                counts.add(group, t, FAILURES)
                counts.add(group, t, REASON_PREFIX + event["failure_reason"])

    def abandon(deadline: int, step: str, group: _Group) -> None:
        if closed_through_ms is None or deadline <= closed_through_ms:
            counts.add(group, deadline, ABANDONED_PREFIX + step)

    for evs in by_checkout.values():
        evs.sort(key=_sort_key)
        reached: set[str] = set()
        last: int | None = None
        last_step = ""
        last_group: _Group = (FUNNEL_SPACE, "", "", "")
        for event in evs:
            t = parse_event_time_ms(event["occurred_at"])
            if last is not None and t >= last + abandon_ms:
                if ORDER_PLACED not in reached:
                    abandon(last + abandon_ms, last_step, last_group)
                reached = set()
            step = event["step"]
            group = (FUNNEL_SPACE, event["device"], channel_of(event), user_type_of(event))
            if step not in reached:
                reached.add(step)
                counts.add(group, t, STEP_PREFIX + step)
            last, last_step, last_group = t, step, group
        if last is not None and ORDER_PLACED not in reached:
            abandon(last + abandon_ms, last_step, last_group)


def _add_into(totals: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, n in counts.items():
        totals[name] = totals.get(name, 0) + n


def _merge(windows: Mapping[int, Mapping[str, int]], indexes: Iterable[int]) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for i in indexes:
        for name, n in windows.get(i, {}).items():
            merged[name] += n
    return dict(merged)


def checkout_truth(
    events: Iterable[Mapping[str, Any]],
    window_ms: int = 60_000,
    views: Sequence[tuple[str, int]] = DEFAULT_VIEWS,
    abandon_ms: int = DEFAULT_ABANDON_MS,
    closed_through_ms: int | None = None,
) -> list[TruthRow]:
    """Rows for every view, window end (<= closed_through_ms when given) and group."""
    if window_ms <= 0:
        raise ValueError("window_ms must be > 0")
    if abandon_ms <= 0:
        raise ValueError("abandon_ms must be > 0")
    for name, k in views:
        if k < 1:
            raise ValueError(f"view {name!r} must span at least one base window")
    counts = _Counts(window_ms)
    _count(dedupe(events), counts, abandon_ms, closed_through_ms)
    last_end = None if closed_through_ms is None else closed_through_ms // window_ms

    rows: list[TruthRow] = []
    for view_order, (view, k) in enumerate(views):
        view_rows: list[TruthRow] = []
        # Sums per window end of the groups' merged counts: the "all" groups.
        funnel_all: dict[int, dict[str, int]] = defaultdict(dict)
        payment_all: dict[tuple[int, str, str], dict[str, int]] = defaultdict(dict)
        for group, windows in counts.base.items():
            ends: set[int] = set()
            for index in windows:
                ends.update(range(index + 1, index + k + 1))
            for end in ends:
                if last_end is not None and end > last_end:
                    continue
                merged = _merge(windows, range(end - k, end))
                start_ms, end_ms = (end - k) * window_ms, end * window_ms
                space, a, b, user_type = group
                if space == FUNNEL_SPACE:
                    view_rows.extend(funnel_rows(view, start_ms, end_ms, (a, b, user_type), merged))
                    _add_into(funnel_all[end], merged)
                else:
                    row = payment_row(view, start_ms, end_ms, (a, b, user_type), merged)
                    view_rows.append(row)
                    _add_into(payment_all[(end, a, b)], merged)
        for end, totals in funnel_all.items():
            start_ms, end_ms = (end - k) * window_ms, end * window_ms
            view_rows.extend(funnel_rows(view, start_ms, end_ms, (ALL, ALL, ALL), totals))
        for (end, provider, method), totals in payment_all.items():
            start_ms, end_ms = (end - k) * window_ms, end * window_ms
            row = payment_row(view, start_ms, end_ms, (provider, method, ALL), totals)
            view_rows.append(row)
        for row in view_rows:
            row["_order"] = view_order
        rows.extend(view_rows)
    rows.sort(key=lambda r: (r["_order"], r["end_ms"], *row_sort_key(r)))
    for row in rows:
        del row["_order"]
    return rows


def index_rows(rows: Iterable[TruthRow]) -> dict[tuple[Any, ...], TruthRow]:
    """Rows keyed by (view, end_ms, kind, group..., from_step), for look-ups in tests."""
    out: dict[tuple[Any, ...], TruthRow] = {}
    for row in rows:
        out[(row["view"], row["end_ms"], *row_key(row))] = row
    return out


def row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row's identity within one view result: kind, group and (dropoff) from_step."""
    if row["kind"] == "payment":
        return ("payment", row["provider"], row["method"], row["user_type"])
    return (
        row["kind"],
        row["device"],
        row["channel"],
        row["user_type"],
        row.get("from_step", ""),
    )


def family_rows(
    events: Sequence[Mapping[str, Any]], settings: Settings, closed_through_ms: int
) -> list[TruthRow]:
    return checkout_truth(
        events,
        window_ms=settings.window_ms,
        views=views_of(settings),
        abandon_ms=round(settings.checkout_abandon_seconds * 1000),
        closed_through_ms=closed_through_ms,
    )


TRUTH = FamilyTruth(rows=family_rows, key=lambda row: (row["view"], row["end_ms"], *row_key(row)))
