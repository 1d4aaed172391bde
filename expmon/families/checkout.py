"""Checkout: funnel drop-off, conversion, abandonment and payment failures per window.

Stage 1 keeps one entity per `checkout_id` (the key of the checkout topic, so a checkout
lives in one partition) and counts into 1-minute windows with `CounterAccumulator`s.

Definitions (the product's; `expmon.sim.truth.checkout` computes them independently):

- Groups. user_type is `new` when `is_new_user` is true, else `returning` (also when
  missing); a missing channel is `other`.
- Labels. Channel, payment provider, payment method and failure reason are bounded as
  in `expmon.engine.labels`: at the stage, per window and partition, to 4 x
  max_label_values values (a payment's reasons per key: `capped_name`), decided where
  and when a count is made (a funnel count's channel in the window of the step it
  counts, an abandonment's in the window of its deadline; entities keep the raw value);
  per view, the top max_label_values channels (by funnel steps reached + abandonments),
  providers and methods
  (by attempts) and reasons (by failures) keep their label, the rest is `other`. The
  cumulative counters are process-wide and keep a first-come `LabelLimiter`.
- Event order. A checkout's events are applied in event-time order (ties: the earlier
  step in CHECKOUT_STEPS order first, so the later step counts as the latest), each once
  the partition's watermark has passed it (`t < watermark`). Until then it waits on the
  entity (`p`). So steps that arrive out of order within the allowed lateness are applied
  in their place, and the outcome depends on event times only, never on how records
  interleave or are batched. This adds no latency to window figures: a window only
  closes once the watermark passes its end anyway.
- Lifecycle. A checkout's lifecycle starts with its first applied event. With T the
  time of its latest applied event, its deadline is T + checkout_abandon_seconds (event
  time); an event at t < deadline joins the lifecycle and moves the deadline, an event at
  t >= deadline comes after it (the checkout went that long without progress). At the
  deadline the lifecycle ends and its state is freed, in every case: if it never reached
  order_placed it counts `abandoned:<last_step>` at the deadline, last_step being the
  step of its latest event (ties as above), under the group of that event. A checkout
  with order_placed is not abandoned, but is kept until its deadline so that late
  repeats of its steps still count once. An event after the deadline starts a new
  lifecycle.
- Funnel, window key ("funnel", device, channel, user_type): `step:<step>` counts the
  first time a lifecycle reaches a step (every step of CHECKOUT_STEPS), at that event's
  time, under that event's group. Repeats of a step in a lifecycle do not count again.
- Payments, window key ("payment", provider, method, user_type), counted per accepted
  event at its time: `attempts` for each payment_succeeded or payment_failed (an attempt
  outcome), `failures` for payment_failed, and `reason:<failure_reason>`.
- Cumulative counters for the metrics module (no prometheus here; they count accepted
  events, like every `_total`): `steps_total[step]` (every accepted event, repeats
  included), `abandoned_total[last_step]`, `payment_attempts_total`,
  `payment_failures_total[reason]`.

Merged rows (`summarize_rows`), per view, each with view/start_ms/end_ms:
    {"kind": "dropoff", "device", "channel", "user_type", "from_step", "to_step",
     "from_count", "to_count", "dropoff_ratio"}  one per consecutive pair of FUNNEL
    {"kind": "conversion", "device", "channel", "user_type", "checkout_started",
     "order_placed", "conversion_ratio", "abandoned": {last_step: n} (non-zero only,
     in CHECKOUT_STEPS order), "abandoned_total"}
    {"kind": "payment", "provider", "method", "user_type", "attempts", "failures",
     "failure_ratio", "failures_by_reason": {reason: n} (sorted)}
Funnel groups come per (device, channel, user_type) and merged over all of them as
device = channel = user_type = "all"; payment groups per (provider, method, user_type)
and merged over user types as user_type = "all". dropoff_ratio = 1 - to/from (None when
from_count is 0; negative when more reach the later step inside the view, as happens at
view edges); conversion_ratio = order_placed / checkout_started; failure_ratio =
failures / attempts; None when the denominator is 0. Rows are sorted by kind (dropoff,
conversion, payment), then group, then funnel position.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from itertools import pairwise
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from expmon.alerting.signals import Signal, field
from expmon.engine.counters import (
    CounterAccumulator,
    CounterStage,
    capped_name,
    fold_counter_names,
    new_counter_merger,
    ratio,
)
from expmon.engine.entities import Entity, fire_after
from expmon.engine.labels import OTHER, LabelDimension, LabelLimiter, fold_labels
from expmon.engine.merge import WindowMerger
from expmon.engine.windows import Key, PartitionWindows
from expmon.families.base import Family, Rows, counter, gauge
from expmon.settings import Settings
from expmon.sim.truth import checkout as truth
from schemas.events import CHECKOUT_STEPS, Event, EventFamily

ALL = "all"  # label of figures merged over a group dimension
NEW = "new"
RETURNING = "returning"
FUNNEL_SPACE = "funnel"
PAYMENT_SPACE = "payment"
ORDER_PLACED = "order_placed"
PAYMENT_SUCCEEDED = "payment_succeeded"
PAYMENT_FAILED = "payment_failed"
# The main funnel, whose consecutive pairs give the drop-off rows.
FUNNEL = ("cart_viewed", "checkout_started", "shipping_selected", "payment_submitted", ORDER_PLACED)
FUNNEL_PAIRS = tuple(pairwise(FUNNEL))
_PAYMENT_OUTCOMES = frozenset({PAYMENT_SUCCEEDED, PAYMENT_FAILED})
STEP_INDEX = {step: i for i, step in enumerate(CHECKOUT_STEPS)}
_ORDER_PLACED_BIT = 1 << STEP_INDEX[ORDER_PLACED]

# Counter names in the window accumulators.
ATTEMPTS = "attempts"
FAILURES = "failures"
STEP_PREFIX = "step:"
ABANDONED_PREFIX = "abandoned:"
REASON_PREFIX = "reason:"
# Precomputed: built once rather than once per event on the hot path.
STEP_COUNTERS = tuple(STEP_PREFIX + step for step in CHECKOUT_STEPS)
ABANDONED_COUNTERS = tuple(ABANDONED_PREFIX + step for step in CHECKOUT_STEPS)

# Row kinds, in the order rows are sorted.
KIND_ORDER = {"dropoff": 0, "conversion": 1, "payment": 2}

# Entity fields (short names: they are held per open checkout and written to the
# changelog).
_PENDING = "p"  # events not applied yet: [t, step index, device, channel, user_type], sorted
_LAST = "u"  # time of the latest applied event; present while a lifecycle runs
_LAST_STEP = "s"  # step index of the latest applied event
_DEVICE = "d"  # group of the latest applied event (where an abandonment counts)
_CHANNEL = "c"
_USER_TYPE = "n"
_REACHED = "r"  # bit i set: the lifecycle reached CHECKOUT_STEPS[i]
_LIFECYCLE_FIELDS = (_LAST, _LAST_STEP, _DEVICE, _CHANNEL, _USER_TYPE, _REACHED)


def user_type_of(event: Mapping[str, Any]) -> str:
    return NEW if event.get("is_new_user") is True else RETURNING


def channel_of(event: Mapping[str, Any]) -> str:
    channel: str | None = event.get("channel")
    return OTHER if channel is None else channel


class CheckoutStage(CounterStage):
    """Checkouts: funnel, abandonment and payment windows, and cumulative counters."""

    family = EventFamily.CHECKOUT
    # channel in ("funnel", device, channel, user_type); provider, method in
    # ("payment", provider, method, user_type)
    label_positions = (1, 2)
    label_spaces = True

    def __init__(
        self, settings: Settings, topic: str, source_partitions: int, live: bool = True
    ) -> None:
        super().__init__(settings, topic, source_partitions, live)
        # process-wide cumulative counters only (see expmon.engine.labels)
        self.total_reasons = LabelLimiter(settings.max_label_values)
        self.abandon_ms = round(settings.checkout_abandon_seconds * 1000)
        self.steps_total: dict[str, int] = {}
        self.abandoned_total: dict[str, int] = {}
        self.payment_attempts_total = 0
        self.payment_failures_total: dict[str, int] = {}

    # ------------------------------------------------------------------ events
    def add_event(
        self, windows: PartitionWindows[CounterAccumulator], event: Event, event_ms: int
    ) -> None:
        step: str = event["step"]
        steps_total = self.steps_total
        steps_total[step] = steps_total.get(step, 0) + 1
        user_type = user_type_of(event)
        # Payment outcomes depend on the event alone: counted now, in the event's window.
        if step in _PAYMENT_OUTCOMES:
            provider = self._label(windows, event_ms, PAYMENT_SPACE, 1, event["payment_provider"])
            method = self._label(windows, event_ms, PAYMENT_SPACE, 2, event["payment_method"])
            acc = windows.accumulator(event_ms, (PAYMENT_SPACE, provider, method, user_type))
            acc.add(ATTEMPTS)
            self.payment_attempts_total += 1
            if step == PAYMENT_FAILED:
                reason: str = event["failure_reason"]
                acc.add(FAILURES)
                acc.add(capped_name(acc, REASON_PREFIX, reason, self.label_cap))
                acc.sample(event["event_id"])
                failures = self.payment_failures_total
                total_reason = self.total_reasons(reason)
                failures[total_reason] = failures.get(total_reason, 0) + 1

        checkout_id: str = event["checkout_id"]
        entity = self.entity(windows, checkout_id)
        if entity is None:
            entity = {"due": None}
        pending: list[list[Any]] | None = entity.get(_PENDING)
        if pending is None:
            pending = entity[_PENDING] = []
        entry = [
            event_ms,
            STEP_INDEX[step],
            sys.intern(event["device"]),
            sys.intern(channel_of(event)),  # raw: labelled where it is counted
            user_type,
        ]
        # Sorted by the whole entry so that the order of equal-time events is a function
        # of the events, not of their arrival.
        i = len(pending)
        while i > 0 and pending[i - 1] > entry:
            i -= 1
        pending.insert(i, entry)
        # An accepted event is never before the watermark, so nothing can be applied yet.
        self._store(windows, checkout_id, entity)

    def on_timer(
        self,
        windows: PartitionWindows[CounterAccumulator],
        entity_id: str,
        entity: Entity,
        deadline: int,
    ) -> None:
        # `deadline` is only the aligned firing time; apply everything the watermark passed.
        watermark = windows.watermark_ms
        if watermark is not None:
            self._advance(windows, entity, watermark)
        self._store(windows, entity_id, entity)

    # ------------------------------------------------------------------ state machine
    def _advance(
        self, windows: PartitionWindows[CounterAccumulator], entity: Entity, watermark: int
    ) -> None:
        """Apply waiting events and the deadline before `watermark`, in event-time order.

        An event at exactly the deadline comes after it: the deadline goes first.
        """
        pending: list[list[Any]] = entity.get(_PENDING) or []
        while True:
            event_t: int | None = pending[0][0] if pending else None
            last: int | None = entity.get(_LAST)
            deadline = None if last is None else last + self.abandon_ms
            if (
                deadline is not None
                and deadline < watermark
                and (event_t is None or deadline <= event_t)
            ):
                self._end_lifecycle(windows, entity, deadline)
            elif event_t is not None and event_t < watermark:
                self._apply(windows, entity, pending.pop(0))
            else:
                break
        if not pending:
            entity.pop(_PENDING, None)

    def _apply(
        self, windows: PartitionWindows[CounterAccumulator], entity: Entity, entry: list[Any]
    ) -> None:
        t, step_index, device, channel, user_type = entry
        reached: int = entity.get(_REACHED, 0)
        bit = 1 << step_index
        if not reached & bit:
            entity[_REACHED] = reached | bit
            label = self._label(windows, t, FUNNEL_SPACE, 2, channel)
            key = (FUNNEL_SPACE, device, label, user_type)
            windows.accumulator(t, key).add(STEP_COUNTERS[step_index])
        # Applied in (time, step) order: this event is the latest so far.
        entity[_LAST] = t
        entity[_LAST_STEP] = step_index
        entity[_DEVICE] = device
        entity[_CHANNEL] = channel
        entity[_USER_TYPE] = user_type

    def _end_lifecycle(
        self, windows: PartitionWindows[CounterAccumulator], entity: Entity, deadline: int
    ) -> None:
        if not entity.get(_REACHED, 0) & _ORDER_PLACED_BIT:
            step_index: int = entity[_LAST_STEP]
            channel = self._label(windows, deadline, FUNNEL_SPACE, 2, entity[_CHANNEL])
            key = (FUNNEL_SPACE, entity[_DEVICE], channel, entity[_USER_TYPE])
            windows.accumulator(deadline, key).add(ABANDONED_COUNTERS[step_index])
            step = CHECKOUT_STEPS[step_index]
            if not self.provisional:  # a look-ahead's timers are counted when real
                self.abandoned_total[step] = self.abandoned_total.get(step, 0) + 1
        for name in _LIFECYCLE_FIELDS:
            entity.pop(name, None)

    def _store(
        self, windows: PartitionWindows[CounterAccumulator], checkout_id: str, entity: Entity
    ) -> None:
        """Put the entity with its next deadline, or delete it when nothing is left to do."""
        table = self.entities[windows.partition]
        pending: list[list[Any]] | None = entity.get(_PENDING)
        last: int | None = entity.get(_LAST)
        if last is None and not pending:
            table.delete(checkout_id)
            return
        nexts = [pending[0][0]] if pending else []
        if last is not None:
            nexts.append(last + self.abandon_ms)
        entity["due"] = fire_after(min(nexts))
        table.put(checkout_id, entity)

    # ------------------------------------------------------------------ gauges
    def open_checkouts(self) -> int:
        """Checkouts this stage holds state for (lifecycle running or events waiting)."""
        return sum(len(table) for table in self.entities.values())


# ---------------------------------------------------------------------- merge side


def row_sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    kind = row["kind"]
    if kind == "payment":
        return (KIND_ORDER[kind], row["provider"], row["method"], row["user_type"], 0)
    position = FUNNEL.index(row["from_step"]) if kind == "dropoff" else 0
    return (KIND_ORDER[kind], row["device"], row["channel"], row["user_type"], position)


def funnel_rows(
    view: str,
    start_ms: int,
    end_ms: int,
    group: tuple[str, str, str],
    counts: Mapping[str, int],
) -> list[dict[str, Any]]:
    """The drop-off rows and the conversion row of one funnel group's counts."""
    device, channel, user_type = group
    head = {
        "view": view,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "device": device,
        "channel": channel,
        "user_type": user_type,
    }
    rows: list[dict[str, Any]] = []
    for from_step, to_step in FUNNEL_PAIRS:
        from_count = counts.get(STEP_PREFIX + from_step, 0)
        to_count = counts.get(STEP_PREFIX + to_step, 0)
        share = ratio(to_count, from_count)
        rows.append(
            {
                "kind": "dropoff",
                **head,
                "from_step": from_step,
                "to_step": to_step,
                "from_count": from_count,
                "to_count": to_count,
                "dropoff_ratio": None if share is None else 1.0 - share,
            }
        )
    started = counts.get(STEP_PREFIX + "checkout_started", 0)
    placed = counts.get(STEP_PREFIX + ORDER_PLACED, 0)
    abandoned = {
        step: n for step in CHECKOUT_STEPS if (n := counts.get(ABANDONED_PREFIX + step, 0))
    }
    rows.append(
        {
            "kind": "conversion",
            **head,
            "checkout_started": started,
            "order_placed": placed,
            "conversion_ratio": ratio(placed, started),
            "abandoned": abandoned,
            "abandoned_total": sum(abandoned.values()),
        }
    )
    return rows


def payment_row(
    view: str,
    start_ms: int,
    end_ms: int,
    group: tuple[str, str, str],
    counts: Mapping[str, int],
    samples: Sequence[str] = (),
) -> dict[str, Any]:
    provider, method, user_type = group
    attempts = counts.get(ATTEMPTS, 0)
    failures = counts.get(FAILURES, 0)
    by_reason = {
        name[len(REASON_PREFIX) :]: n
        for name, n in sorted(counts.items())
        if name.startswith(REASON_PREFIX) and n
    }
    return {
        "kind": "payment",
        "view": view,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "provider": provider,
        "method": method,
        "user_type": user_type,
        "attempts": attempts,
        "failures": failures,
        "failure_ratio": ratio(failures, attempts),
        "failures_by_reason": by_reason,
        "sample_event_ids": list(samples),
    }


def _add_into(totals: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, n in counts.items():
        totals[name] = totals.get(name, 0) + n


_FUNNEL_WEIGHT = tuple(STEP_PREFIX + step for step in FUNNEL) + ABANDONED_COUNTERS


def _funnel_weight(acc: CounterAccumulator) -> float:
    """Funnel steps reached + abandonments: what a channel's funnel rows count."""
    return sum(acc.get(name) for name in _FUNNEL_WEIGHT)


def _attempts(acc: CounterAccumulator) -> float:
    return acc.get(ATTEMPTS)


def label_dimensions(limit: int) -> tuple[LabelDimension[CounterAccumulator], ...]:
    """Channel, provider and method: each view keeps its top `limit` (see fold_labels)."""
    return (
        LabelDimension({FUNNEL_SPACE: 2}, limit, _funnel_weight),
        LabelDimension({PAYMENT_SPACE: 1}, limit, _attempts),
        LabelDimension({PAYMENT_SPACE: 2}, limit, _attempts),
    )


def fold_view(accumulators: dict[Key, Any], limit: int) -> dict[Key, CounterAccumulator]:
    """The view with channels, providers, methods and failure reasons beyond its top
    `limit` merged into `other`."""
    folded = fold_labels(accumulators, label_dimensions(limit), CounterAccumulator)
    return fold_counter_names(folded, REASON_PREFIX, limit)


def summarize_rows(
    view: str,
    start_ms: int,
    end_ms: int,
    accumulators: dict[Key, Any],
    max_label_values: int = 50,
) -> list[dict[str, Any]]:
    """Merger summarizer: funnel rows per group and for "all", payment rows per group and
    per (provider, method, "all"), after the view's label fold (`fold_view`); sorted by
    `row_sort_key`."""
    accumulators = fold_view(accumulators, max_label_values)
    rows: list[dict[str, Any]] = []
    funnel_all: dict[str, int] | None = None
    payment_all: dict[tuple[str, str, str], CounterAccumulator] = {}
    for key, acc in accumulators.items():
        counts: dict[str, int] = acc.counts
        if key[0] == FUNNEL_SPACE:
            _, device, channel, user_type = key
            rows.extend(funnel_rows(view, start_ms, end_ms, (device, channel, user_type), counts))
            if funnel_all is None:
                funnel_all = {}
            _add_into(funnel_all, counts)
        elif key[0] == PAYMENT_SPACE:
            _, provider, method, user_type = key
            group = (provider, method, user_type)
            rows.append(payment_row(view, start_ms, end_ms, group, counts, acc.samples))
            payment_all.setdefault((provider, method, ALL), CounterAccumulator()).merge(acc)
    if funnel_all is not None:
        rows.extend(funnel_rows(view, start_ms, end_ms, (ALL, ALL, ALL), funnel_all))
    for group, total in payment_all.items():
        rows.append(payment_row(view, start_ms, end_ms, group, total.counts, total.samples))
    rows.sort(key=row_sort_key)
    return rows


def new_checkout_merger(settings: Settings) -> WindowMerger[CounterAccumulator]:
    summarize = partial(summarize_rows, max_label_values=settings.max_label_values)
    return new_counter_merger(str(EventFamily.CHECKOUT), settings, summarize)


# ---------------------------------------------------------------------- metrics


class CheckoutCollector(Collector):
    """Checkout counters from the stages, windowed ratios from the final views."""

    def __init__(self, rows: Rows, stages: Sequence[CheckoutStage]) -> None:
        self.rows = rows
        self.stages = stages

    def collect(self) -> Iterator[Metric]:
        steps = counter("expmon_checkout_steps", "Accepted checkout events by step", ["step"])
        abandoned = counter(
            "expmon_checkout_abandoned", "Checkouts abandoned, by their last step", ["last_step"]
        )
        attempts = counter("expmon_payment_attempts", "Payment outcomes (succeeded + failed)", [])
        failures = counter("expmon_payment_failures", "Failed payments by reason", ["reason"])
        totals: dict[str, dict[str, int]] = {"steps": {}, "abandoned": {}, "failures": {}}
        attempt_total = 0
        for stage in self.stages:
            for name, source in (
                ("steps", stage.steps_total),
                ("abandoned", stage.abandoned_total),
                ("failures", stage.payment_failures_total),
            ):
                for label, n in source.items():
                    totals[name][label] = totals[name].get(label, 0) + n
            attempt_total += stage.payment_attempts_total
        for family, name in ((steps, "steps"), (abandoned, "abandoned"), (failures, "failures")):
            for label, n in sorted(totals[name].items()):
                family.add_metric([label], n)
        attempts.add_metric([], attempt_total)
        yield from (steps, abandoned, attempts, failures)
        yield from self._windows()
        open_checkouts = gauge("expmon_checkouts_open", "Checkouts held in state", [])
        open_checkouts.add_metric([], sum(stage.open_checkouts() for stage in self.stages))
        yield open_checkouts

    def _windows(self) -> Iterator[Metric]:
        group = ["device", "channel", "user_type", "window"]
        dropoff = gauge(
            "expmon_checkout_dropoff_ratio",
            "1 - reached(to_step)/reached(from_step) in the window; group labels `all` = overall",
            ["from_step", "to_step", *group],
        )
        conversion = gauge(
            "expmon_checkout_conversion_ratio",
            "order_placed / checkout_started in the window",
            group,
        )
        started = gauge("expmon_checkout_window_started", "Checkouts started in the window", group)
        pay_labels = ["provider", "method", "user_type", "window"]
        failure = gauge(
            "expmon_payment_failure_ratio", "Failed / attempted payments in the window", pay_labels
        )
        pay_attempts = gauge(
            "expmon_payment_window_attempts", "Payment attempts in the window", pay_labels
        )
        pay_failures = gauge(
            "expmon_payment_window_failures", "Failed payments in the window", pay_labels
        )
        for view, row in self.rows():
            kind = row["kind"]
            if kind == "payment":
                values = [str(row["provider"]), str(row["method"]), str(row["user_type"]), view]
                pay_attempts.add_metric(values, float(row["attempts"]))
                pay_failures.add_metric(values, float(row["failures"]))
                if row["failure_ratio"] is not None:
                    failure.add_metric(values, float(row["failure_ratio"]))
                continue
            values = [str(row["device"]), str(row["channel"]), str(row["user_type"]), view]
            if kind == "dropoff" and row["dropoff_ratio"] is not None:
                steps = [str(row["from_step"]), str(row["to_step"])]
                dropoff.add_metric([*steps, *values], float(row["dropoff_ratio"]))
            elif kind == "conversion":
                started.add_metric(values, float(row["checkout_started"]))
                if row["conversion_ratio"] is not None:
                    conversion.add_metric(values, float(row["conversion_ratio"]))
        yield from (dropoff, conversion, started, failure, pay_attempts, pay_failures)


# ---------------------------------------------------------------------- alert signals


SIGNALS: tuple[Signal, ...] = (
    Signal(
        name="payment_failure_ratio",
        description="failed / attempted payments",
        source="window",
        family="checkout",
        kind="payment",
        labels=("provider", "method", "user_type"),
        fixed={"user_type": "all"},
        unit="ratio",
        numerator=field("failures"),
        denominator=field("attempts"),
        prom_value='expmon_payment_window_failures{{window="{w}"{sel}}}',
        prom_volume='expmon_payment_window_attempts{{window="{w}"{sel}}}',
    ),
    Signal(
        name="checkout_conversion_ratio",
        description=(
            "checkout_started -> order_placed conversion; with a rule `baseline`, its "
            "relative fall against the trailing baseline (1 - now/baseline)"
        ),
        source="window",
        family="checkout",
        kind="conversion",
        labels=("device", "channel", "user_type"),
        fixed={"device": "all", "channel": "all", "user_type": "all"},
        unit="ratio",
        numerator=field("order_placed"),
        denominator=field("checkout_started"),
        prom_value='expmon_checkout_conversion_ratio{{window="{w}"{sel}}}',
        prom_volume='expmon_checkout_window_started{{window="{w}"{sel}}}',
    ),
)


FAMILY = Family(
    name=EventFamily.CHECKOUT,
    topic_setting="topic_checkout",
    stage=CheckoutStage,
    new_merger=new_checkout_merger,
    collector=CheckoutCollector,
    signals=SIGNALS,
    truth=truth.TRUTH,
    agent="checkout-events",
    table="checkout-state",
)
