"""Realistic, reproducible e-commerce traffic: page loads, checkout funnels, order lifecycles.

`TrafficGenerator` is a small discrete-event simulation. Arrival processes (Poisson) start
page views, checkouts and orders; each checkout and order then schedules its own next step
on a heap, so events come out in event-time order (before jitter). Every random draw comes
from `random.Random` instances seeded from `seed`, so the same configuration yields the
same events, byte for byte.

Incidents (`Incident`, parsed from `kind@start+duration:key=value,...`) bend the traffic
for a while: slow pages, a payment provider outage, a carrier delay, a checkout stall, a
warehouse backlog, or a burst of bad records.

The other concerns sit beside it: the shop (`catalogue`), incidents (`incidents`), bad
records (`bad_records`), records (`encoding`) and sending (`produce`, with `run_simulate`,
the `expmon simulate` entry).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from expmon.sim.bad_records import (
    DEFAULT_OVERSIZE_BYTES,
    BadKind,
    BadRecord,
    bad_kinds_for,
    make_bad_record,
)
from expmon.sim.catalogue import (
    APP_VERSIONS,
    BEACON_DELAY_MS,
    BOUNCE_PROBABILITY,
    CARRIER_BY_REGION,
    CHANNEL_WEIGHTS,
    CLS_ZERO_SHARE,
    CURRENCY_BY_REGION,
    DEFAULT_MIX,
    DEVICE_FACTOR,
    DEVICE_WEIGHTS,
    EXPECTED_EVENTS_PER_CHECKOUT,
    EXPECTED_EVENTS_PER_ORDER,
    FAILURE_REASON_WEIGHTS,
    HOUR_MS,
    INP_MEDIAN_MS,
    LANDING_WEIGHTS,
    LOAD_SIGMA,
    MAX_PAYMENT_ATTEMPTS,
    MEAN_EXTRA_VIEWS,
    METHOD_FAILURE,
    NEXT_PAGE,
    OUTAGE_REASON_WEIGHTS,
    P_CHECKOUT_STARTED,
    P_DELIVERY_FAILED,
    P_INTERACTION,
    P_ORDER_PLACED,
    P_PAYMENT_SUBMITTED,
    P_RETRY_AFTER_FAILURE,
    P_RETURN_AFTER_DELIVERED,
    P_RETURN_AFTER_FAILED,
    P_SHIPPING_SELECTED,
    P_SWITCH_PROVIDER_ON_RETRY,
    PAGE_MEDIAN_MS,
    PLATFORM_WEIGHTS,
    PROVIDER_METHODS,
    PROVIDER_WEIGHTS,
    REGION_FACTOR,
    REGION_WEIGHTS,
    SESSION_IDLE_MS,
    VITAL_BEACON_SHARE,
    WAREHOUSE_BY_REGION,
    beacon_events_per_view,
)
from expmon.sim.incidents import Incident, IncidentKind, parse_incidents
from schemas.events import Event, EventFamily
from schemas.eventtime import format_ms

logger = logging.getLogger(__name__)


DEFAULT_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: a fixed start keeps runs reproducible

GeneratedItem = tuple[EventFamily, str, Event | BadRecord]


@dataclass(slots=True)
class _Session:
    session_id: str
    user_id: str | None
    device: str
    platform: str
    region: str
    channel: str
    is_new_user: bool
    app_version: str | None
    page: str | None = None
    remaining: int = 1
    last_ms: int = 0
    pool_index: int = -1


@dataclass(slots=True)
class _Checkout:
    checkout_id: str
    session: _Session
    step: str
    amount: float
    currency: str
    provider: str = ""
    method: str = ""
    attempts: int = 0
    failure_reason: str = ""


@dataclass(slots=True)
class _Order:
    order_id: str
    session: _Session
    warehouse: str
    carrier: str
    promised_by: str
    status: str
    tracking_id: str | None = None
    scans_left: int = 0
    delivery_attempts: int = 0


_PAGE, _CHECKOUT_ARRIVAL, _CHECKOUT_STEP, _ORDER_ARRIVAL, _ORDER_STEP, _BAD, _BEACON = range(7)
_Task = tuple[int, int, int, Any]  # (time_ms, seq, kind, state)


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(tuple(weights), weights=tuple(weights.values()))[0]


def _lognormal_ms(rng: random.Random, median_ms: float, sigma: float) -> int:
    return max(1, round(median_ms * math.exp(rng.gauss(0.0, sigma))))


class TrafficGenerator:
    """Seeded generator of `(family, key, event)` items in (roughly) event-time order.

    `rate` is events per second over all enabled families, split by `mix` (checkouts and
    orders arrive at rate * share / expected events each, so the split is approximate:
    order lifecycles longer than the run are cut off). Events of each item carry an
    `occurred_at` up to `jitter_ms` before their place in the stream (late arrival).
    Order lifecycle gaps (hours to days) are divided by `lifecycle_compression`.
    Iterating twice yields the same items.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        rate: float = 100.0,
        start_ms: int = DEFAULT_START_MS,
        duration_s: float = 60.0,
        incidents: Iterable[Incident | str] = (),
        families: Iterable[EventFamily | str] | None = None,
        mix: Mapping[EventFamily | str, float] | None = None,
        jitter_ms: int = 2000,
        lifecycle_compression: float = 1.0,
        epoch_ms_share: float = 0.3,
        oversize_bytes: int = DEFAULT_OVERSIZE_BYTES,
        vital_beacon_share: float = VITAL_BEACON_SHARE,
    ) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be > 0 events/s, got {rate}")
        if not duration_s > 0:
            raise ValueError(f"duration must be > 0 s, got {duration_s}")
        if jitter_ms < 0:
            raise ValueError("jitter_ms must be >= 0")
        if lifecycle_compression <= 0:
            raise ValueError("lifecycle_compression must be > 0")
        if not 0 <= epoch_ms_share <= 1:
            raise ValueError("epoch_ms_share must be in [0, 1]")
        if not 0 <= vital_beacon_share <= 1:
            raise ValueError("vital_beacon_share must be in [0, 1]")
        self.seed = seed
        self.rate = float(rate)
        self.start_ms = int(start_ms)
        self.duration_s = float(duration_s)
        self.incidents = parse_incidents(incidents)
        self.families: tuple[EventFamily, ...] = (
            tuple(EventFamily)
            if families is None
            else tuple(f for f in EventFamily if f in {EventFamily(x) for x in families})
        )
        if not self.families:
            raise ValueError("at least one event family is needed")
        raw_mix = {EventFamily(k): float(v) for k, v in (mix or DEFAULT_MIX).items()}
        if any(v < 0 for v in raw_mix.values()):
            raise ValueError("mix shares must be >= 0")
        total = sum(raw_mix.get(f, 0.0) for f in self.families)
        if total <= 0:
            raise ValueError("mix gives no share to the enabled families")
        self.mix = {f: raw_mix.get(f, 0.0) / total for f in self.families}
        self.jitter_ms = int(jitter_ms)
        self.lifecycle_compression = float(lifecycle_compression)
        self.epoch_ms_share = float(epoch_ms_share)
        self.oversize_bytes = int(oversize_bytes)
        self.vital_beacon_share = float(vital_beacon_share)

    def __iter__(self) -> Iterator[GeneratedItem]:
        return self.generate()

    def generate(self, start_ms: int | None = None) -> Iterator[GeneratedItem]:
        for _t, item in self.generate_timed(start_ms):
            yield item

    def generate_timed(self, start_ms: int | None = None) -> Iterator[tuple[int, GeneratedItem]]:
        """Items with their place in the stream (ms, non-decreasing; occurred_at <= it)."""
        run = _Run(self, self.start_ms if start_ms is None else int(start_ms))
        return run.events()


class _Run:
    """One pass of the simulation (all mutable state lives here)."""

    def __init__(self, gen: TrafficGenerator, start_ms: int) -> None:
        self.gen = gen
        self.start_ms = start_ms
        self.end_ms = start_ms + round(gen.duration_s * 1000)
        seed = gen.seed
        self.rng_ids = random.Random(f"{seed}:ids")
        self.rng_time = random.Random(f"{seed}:time")
        self.rng_page = random.Random(f"{seed}:page")
        self.rng_checkout = random.Random(f"{seed}:checkout")
        self.rng_order = random.Random(f"{seed}:order")
        self.rng_bad = random.Random(f"{seed}:bad")
        # vitals' extra draws (CLS zeros, interactions, beacons) apart: other draws unchanged
        self.rng_vitals = random.Random(f"{seed}:vitals")
        self.heap: list[_Task] = []
        self.seq = itertools.count()
        self.sessions: list[_Session] = []
        self.placed_orders: deque[tuple[str, _Session]] = deque(maxlen=10_000)
        self.bad_counts: dict[int, int] = {}
        self.oversize_counts: dict[int, int] = {}
        comp = gen.lifecycle_compression
        self.hour_ms = HOUR_MS / comp
        mix = gen.mix
        rate = gen.rate
        # `rate` counts events: vital-only beacons take their share of the page-load rate
        self.page_rate = (
            rate
            * mix.get(EventFamily.PAGE_LOAD, 0.0)
            / (1 + beacon_events_per_view(gen.vital_beacon_share))
        )
        self.checkout_rate = (
            rate * mix.get(EventFamily.CHECKOUT, 0.0) / EXPECTED_EVENTS_PER_CHECKOUT
        )
        self.order_rate = rate * mix.get(EventFamily.LOGISTICS, 0.0) / EXPECTED_EVENTS_PER_ORDER
        self.incident_windows = [
            (inc, inc.start_ms(start_ms), inc.end_ms(start_ms)) for inc in gen.incidents
        ]

    # ---- scheduling ------------------------------------------------------

    def push(self, t: int, kind: int, state: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, state))

    def _next_arrival(self, t: int, rate: float) -> int:
        return t + max(1, round(self.rng_time.expovariate(rate) * 1000))

    def active(self, kind: IncidentKind, t: int) -> list[tuple[Incident, int, int]]:
        return [w for w in self.incident_windows if w[0].kind is kind and w[1] <= t < w[2]]

    def events(self) -> Iterator[tuple[int, GeneratedItem]]:
        start = self.start_ms
        if self.page_rate > 0:
            self.push(self._next_arrival(start, self.page_rate), _PAGE, None)
        if self.checkout_rate > 0:
            self.push(self._next_arrival(start, self.checkout_rate), _CHECKOUT_ARRIVAL, None)
        if self.order_rate > 0:
            self.push(self._next_arrival(start, self.order_rate), _ORDER_ARRIVAL, None)
        for index, (inc, s, _e) in enumerate(self.incident_windows):
            if inc.kind is IncidentKind.BAD_RECORDS:
                self.push(s, _BAD, index)
        handlers: dict[int, Callable[[int, Any], Iterator[GeneratedItem]]] = {
            _PAGE: self._page,
            _CHECKOUT_ARRIVAL: self._checkout_arrival,
            _CHECKOUT_STEP: self._checkout_step,
            _ORDER_ARRIVAL: self._order_arrival,
            _ORDER_STEP: self._order_step,
            _BAD: self._bad,
            _BEACON: self._beacons,
        }
        heap = self.heap
        while heap and heap[0][0] < self.end_ms:
            t, _seq, kind, state = heapq.heappop(heap)
            for item in handlers[kind](t, state):
                yield t, item

    # ---- common fields ---------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng_ids.getrandbits(128), version=4))

    def hex_id(self, prefix: str, nbytes: int) -> str:
        return f"{prefix}{self.rng_ids.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def new_session(self, rng: random.Random, t: int) -> _Session:
        device = _pick(rng, DEVICE_WEIGHTS)
        platform = _pick(rng, PLATFORM_WEIGHTS[device])
        is_new = rng.random() < 0.3
        logged_in = rng.random() < (0.15 if is_new else 0.65)
        if not logged_in:
            user_id = None
        elif is_new:
            user_id = f"u-{rng.randrange(1_000_000, 9_999_999)}"
        else:
            user_id = f"u-{rng.randrange(1, 250_000):06d}"
        app_version = _pick(rng, APP_VERSIONS) if platform in ("ios", "android") else None
        bounce = rng.random() < BOUNCE_PROBABILITY
        views = 1 if bounce else 1 + max(1, round(rng.expovariate(1.0 / MEAN_EXTRA_VIEWS)))
        return _Session(
            session_id=self.hex_id("s-", 10),
            user_id=user_id,
            device=device,
            platform=platform,
            region=_pick(rng, REGION_WEIGHTS),
            channel=_pick(rng, CHANNEL_WEIGHTS),
            is_new_user=is_new,
            app_version=app_version,
            remaining=views,
            last_ms=t,
        )

    def common(self, session: _Session, t: int) -> Event:
        occurred = t - (self.rng_time.randint(0, self.gen.jitter_ms) if self.gen.jitter_ms else 0)
        when: int | str = (
            occurred if self.rng_time.random() < self.gen.epoch_ms_share else format_ms(occurred)
        )
        event: Event = {
            "event_id": self.new_id(),
            "occurred_at": when,
            "schema_version": 1,
            "session_id": session.session_id,
            "device": session.device,
            "platform": session.platform,
            "region": session.region,
            "channel": session.channel,
            "is_new_user": session.is_new_user,
        }
        if session.user_id is not None:
            event["user_id"] = session.user_id
        if session.app_version is not None:
            event["app_version"] = session.app_version
        return event

    # ---- page loads ------------------------------------------------------

    def _session_for_view(self, t: int) -> _Session:
        rng = self.rng_page
        pool = self.sessions
        # Continue an open session (most views) or start a new one.
        if pool and rng.random() > 1.0 / (1.0 + MEAN_EXTRA_VIEWS * (1 - BOUNCE_PROBABILITY)):
            session = pool[rng.randrange(len(pool))]
            if t - session.last_ms <= SESSION_IDLE_MS:
                return session
            self._drop_session(session)
        session = self.new_session(rng, t)
        session.pool_index = len(pool)
        pool.append(session)
        return session

    def _drop_session(self, session: _Session) -> None:
        pool = self.sessions
        index = session.pool_index
        if index < 0:
            return
        moved = pool[-1]
        pool[index] = moved
        moved.pool_index = index
        pool.pop()
        session.pool_index = -1

    def _end_view(self, session: _Session) -> None:
        session.remaining -= 1
        if session.remaining <= 0:
            self._drop_session(session)

    def _page(self, t: int, _state: Any) -> Iterator[GeneratedItem]:
        self.push(self._next_arrival(t, self.page_rate), _PAGE, None)
        rng = self.rng_page
        session = self._session_for_view(t)
        page = (
            _pick(rng, LANDING_WEIGHTS)
            if session.page is None
            else _pick(rng, NEXT_PAGE[session.page])
        )
        session.page = page
        session.last_ms = t
        median = (
            PAGE_MEDIAN_MS[page] * DEVICE_FACTOR[session.device] * REGION_FACTOR[session.region]
        )
        load = median * math.exp(rng.gauss(0.0, LOAD_SIGMA))
        if rng.random() < 0.005:  # the occasional cold cache / slow third party
            load *= 3.0
        # vitals follow the page's own speed; slow_pages slows the load event only
        vital_base = max(20, round(load))
        for inc, _s, _e in self.active(IncidentKind.SLOW_PAGES, t):
            if _matches(inc, region=session.region, page=page, device=session.device):
                load *= inc.number("factor", 4.0)
        load_ms = max(20, round(load))
        event = self.common(session, t)
        event["page"] = page
        event["load_ms"] = load_ms
        ttfb = max(5, round(vital_base * rng.uniform(0.08, 0.25)))
        event["ttfb_ms"] = ttfb
        if session.platform in ("web", "miniapp"):
            fcp = max(ttfb, round(vital_base * rng.uniform(0.3, 0.6)))
            event["fcp_ms"] = fcp
            event["lcp_ms"] = max(fcp, round(vital_base * rng.uniform(0.6, 1.05)))
            event["inp_ms"] = _lognormal_ms(rng, INP_MEDIAN_MS[session.device], 0.5)
            event["cls"] = round(min(1.0, rng.lognormvariate(math.log(0.04), 0.9)), 3)
            self._shape_vitals(t, session, page, event)
        self._end_view(session)
        yield EventFamily.PAGE_LOAD, session.session_id, event

    def _shape_vitals(self, t: int, session: _Session, page: str, event: Event) -> None:
        """CLS often 0, INP only with an interaction, LCP regressions, and a share of page
        views whose vitals leave as separate beacons (web-vitals style, no load_ms)."""
        rng = self.rng_vitals
        if rng.random() < CLS_ZERO_SHARE[session.device]:
            event["cls"] = 0.0
        if rng.random() >= P_INTERACTION:
            del event["inp_ms"]
        for inc, _s, _e in self.active(IncidentKind.LCP_REGRESSION, t):
            if _matches(inc, region=session.region, page=page, device=session.device):
                event["lcp_ms"] = round(event["lcp_ms"] * inc.number("factor", 3.0))
        if rng.random() < self.gen.vital_beacon_share:
            vitals = {
                name: event.pop(name) for name in ("ttfb_ms", "fcp_ms", "lcp_ms", "inp_ms", "cls")
                if name in event
            }  # fmt: skip
            delay = rng.randint(*BEACON_DELAY_MS)
            self.push(t + delay, _BEACON, (session, page, vitals))

    def _beacons(
        self, t: int, state: tuple[_Session, str, dict[str, float]]
    ) -> Iterator[GeneratedItem]:
        """One vital-only page-load event per vital, as the web-vitals library sends them."""
        session, page, vitals = state
        rng = self.rng_vitals
        for name, value in vitals.items():
            occurred = t - rng.randint(0, self.gen.jitter_ms) if self.gen.jitter_ms else t
            event: Event = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "occurred_at": format_ms(occurred),
                "schema_version": 1,
                "session_id": session.session_id,
                "device": session.device,
                "platform": session.platform,
                "region": session.region,
                "page": page,
                name: value,
            }
            yield EventFamily.PAGE_LOAD, session.session_id, event

    # ---- checkout --------------------------------------------------------

    def _checkout_arrival(self, t: int, _state: Any) -> Iterator[GeneratedItem]:
        self.push(self._next_arrival(t, self.checkout_rate), _CHECKOUT_ARRIVAL, None)
        rng = self.rng_checkout
        if self.sessions and rng.random() < 0.8:
            session = self.sessions[rng.randrange(len(self.sessions))]
        else:
            session = self.new_session(rng, t)
        currency, fx = CURRENCY_BY_REGION.get(session.region, ("EUR", 1.0))
        amount = round(rng.lognormvariate(math.log(65.0), 0.7) * fx, 2)
        state = _Checkout(self.hex_id("co-", 8), session, "cart_viewed", amount, currency)
        yield from self._checkout_step(t, state)

    def _choose_payment(self, state: _Checkout) -> None:
        rng = self.rng_checkout
        state.provider = _pick(rng, PROVIDER_WEIGHTS)
        state.method = _pick(rng, PROVIDER_METHODS[state.provider])

    def _checkout_step(self, t: int, state: _Checkout) -> Iterator[GeneratedItem]:
        rng = self.rng_checkout
        step = state.step
        event = self.common(state.session, t)
        event["checkout_id"] = state.checkout_id
        event["step"] = step
        if step in ("payment_submitted", "payment_succeeded", "payment_failed"):
            event["payment_provider"] = state.provider
            event["payment_method"] = state.method
        if step == "payment_failed":
            event["failure_reason"] = state.failure_reason
        if step in ("cart_viewed", "payment_submitted", "order_placed"):
            event["amount"] = state.amount
            event["currency"] = state.currency
        next_step: str | None = None
        delay = 0
        if step == "cart_viewed":
            if rng.random() < P_CHECKOUT_STARTED:
                next_step, delay = "checkout_started", _lognormal_ms(rng, 25_000, 0.8)
        elif step == "checkout_started":
            p = P_SHIPPING_SELECTED
            for inc, _s, _e in self.active(IncidentKind.CHECKOUT_STALL, t):
                if _matches(inc, region=state.session.region, device=state.session.device):
                    p *= 1.0 - inc.number("dropoff", 0.6)
            if rng.random() < p:
                next_step, delay = "shipping_selected", _lognormal_ms(rng, 30_000, 0.6)
        elif step == "shipping_selected":
            if rng.random() < P_PAYMENT_SUBMITTED:
                self._choose_payment(state)
                next_step, delay = "payment_submitted", _lognormal_ms(rng, 40_000, 0.6)
        elif step == "payment_submitted":
            state.attempts += 1
            next_step, delay = self._payment_outcome(t, state)
        elif step == "payment_succeeded":
            if rng.random() < P_ORDER_PLACED:
                next_step, delay = "order_placed", _lognormal_ms(rng, 800, 0.4)
        elif step == "payment_failed":
            retry_p = 0.1 if state.failure_reason == "fraud_suspected" else P_RETRY_AFTER_FAILURE
            if state.attempts < MAX_PAYMENT_ATTEMPTS and rng.random() < retry_p:
                if rng.random() < P_SWITCH_PROVIDER_ON_RETRY:
                    self._choose_payment(state)
                next_step, delay = "payment_submitted", _lognormal_ms(rng, 20_000, 0.6)
        elif step == "order_placed":
            order_id = f"ord-{self.rng_ids.randrange(10**9, 10**10)}"
            event["order_id"] = order_id
            event["payment_provider"] = state.provider
            event["payment_method"] = state.method
            if EventFamily.LOGISTICS in self.gen.mix:
                self.placed_orders.append((order_id, state.session))
        if next_step is not None:
            state.step = next_step
            self.push(t + delay, _CHECKOUT_STEP, state)
        if EventFamily.CHECKOUT in self.gen.mix:
            yield EventFamily.CHECKOUT, state.checkout_id, event

    def _payment_outcome(self, t: int, state: _Checkout) -> tuple[str, int]:
        rng = self.rng_checkout
        fail_p = METHOD_FAILURE[state.method] * (1.1 if state.provider == "paypal" else 1.0)
        reasons = FAILURE_REASON_WEIGHTS
        for inc, _s, _e in self.active(IncidentKind.PAYMENT_OUTAGE, t):
            if _matches(inc, provider=state.provider, method=state.method):
                fail_p = max(fail_p, inc.number("failure_rate", 0.4))
                chosen = inc.values("reason")
                reasons = {r: 1.0 for r in chosen} if chosen else OUTAGE_REASON_WEIGHTS
        if rng.random() < fail_p:
            state.failure_reason = _pick(rng, reasons)
            slow = state.failure_reason == "provider_timeout"
            return "payment_failed", _lognormal_ms(rng, 30_000 if slow else 1500, 0.2)
        return "payment_succeeded", _lognormal_ms(rng, 1800, 0.4)

    # ---- logistics -------------------------------------------------------

    def _order_arrival(self, t: int, _state: Any) -> Iterator[GeneratedItem]:
        self.push(self._next_arrival(t, self.order_rate), _ORDER_ARRIVAL, None)
        rng = self.rng_order
        if self.placed_orders:
            order_id, session = self.placed_orders.popleft()
        else:  # orders from channels outside the simulated web checkout
            order_id = f"ord-{self.rng_ids.randrange(10**9, 10**10)}"
            session = self.new_session(rng, t)
        promise_h = rng.choice((48, 72, 96, 120))
        order = _Order(
            order_id=order_id,
            session=session,
            warehouse=_pick(rng, WAREHOUSE_BY_REGION.get(session.region, {"fra-1": 1.0})),
            carrier=_pick(rng, CARRIER_BY_REGION.get(session.region, {"dhl": 1.0})),
            promised_by=format_ms(t + round(promise_h * self.hour_ms)),
            status="order_placed",
        )
        yield from self._order_step(t, order)

    def _tracking_id(self, carrier: str) -> str:
        rng = self.rng_ids
        if carrier == "ups":
            return "1Z" + "".join(rng.choices("0123456789ABCDEFGHJKLMNPRSTUVWXYZ", k=16))
        if carrier == "dhl":
            return "JD" + f"{rng.randrange(10**17, 10**18)}"
        if carrier == "fedex":
            return f"{rng.randrange(10**11, 10**12)}"
        return f"{rng.randrange(10**13, 10**14)}"

    def _gap(self, median_h: float, sigma: float) -> int:
        return max(1, round(self.hour_ms * median_h * math.exp(self.rng_order.gauss(0.0, sigma))))

    def _order_step(self, t: int, order: _Order) -> Iterator[GeneratedItem]:
        rng = self.rng_order
        status = order.status
        # Stalls: the step waits for the incident to end.
        if status == "shipped":
            for inc, _s, end in self.active(IncidentKind.WAREHOUSE_BACKLOG, t):
                if _matches(inc, warehouse=order.warehouse):
                    self.push(end + self._gap(1.0, 0.5), _ORDER_STEP, order)
                    return
        carrier_incidents = [
            inc_w
            for inc_w in self.active(IncidentKind.CARRIER_DELAY, t)
            if _matches(inc_w[0], carrier=order.carrier)
        ]
        if status in ("in_transit", "out_for_delivery", "delivered", "delivery_failed"):
            for inc, _s, end in carrier_incidents:
                if inc.flag("stall"):
                    self.push(end + self._gap(2.0, 0.5), _ORDER_STEP, order)
                    return
        factor = max((inc.number("factor", 6.0) for inc, _s, _e in carrier_incidents), default=1.0)
        p_fail = max(
            (inc.number("failure_rate", P_DELIVERY_FAILED) for inc, _s, _e in carrier_incidents),
            default=P_DELIVERY_FAILED,
        )
        if status == "shipped":
            order.tracking_id = self._tracking_id(order.carrier)
        event = self.common(order.session, t)
        event["order_id"] = order.order_id
        event["status"] = status
        event["carrier"] = order.carrier
        event["warehouse"] = order.warehouse
        event["promised_by"] = order.promised_by
        if order.tracking_id is not None:
            event["tracking_id"] = order.tracking_id
        next_status: str | None = None
        gap = 0
        if status == "order_placed":
            next_status, gap = "packed", self._gap(3.0, 0.6)
        elif status == "packed":
            next_status, gap = "shipped", self._gap(6.0, 0.6)
        elif status == "shipped":
            order.scans_left = rng.choice((0, 1, 1, 2))
            next_status, gap = "in_transit", round(self._gap(2.0, 0.5) * factor)
        elif status == "in_transit":
            if order.scans_left > 0:
                order.scans_left -= 1
                next_status, gap = "in_transit", round(self._gap(8.0, 0.4) * factor)
            else:
                next_status, gap = "out_for_delivery", round(self._gap(6.0, 0.4) * factor)
        elif status == "out_for_delivery":
            order.delivery_attempts += 1
            failed = rng.random() < (p_fail if order.delivery_attempts == 1 else 0.15)
            next_status = "delivery_failed" if failed else "delivered"
            gap = round(self._gap(4.0, 0.4) * factor)
        elif status == "delivery_failed":
            if order.delivery_attempts >= 2 or rng.random() < P_RETURN_AFTER_FAILED:
                next_status, gap = "returned", self._gap(48.0, 0.3)
            else:
                next_status, gap = "out_for_delivery", self._gap(20.0, 0.3)
        elif status == "delivered" and rng.random() < P_RETURN_AFTER_DELIVERED:
            next_status, gap = "returned", self._gap(96.0, 0.4)
        if next_status is not None:
            order.status = next_status
            self.push(t + max(1, gap), _ORDER_STEP, order)
        if EventFamily.LOGISTICS in self.gen.mix:
            yield EventFamily.LOGISTICS, order.order_id, event

    # ---- bad records -----------------------------------------------------

    def _bad(self, t: int, index: int) -> Iterator[GeneratedItem]:
        inc, _s, end = self.incident_windows[index]
        rng = self.rng_bad
        rate = inc.number("rate", 2.0)
        nxt = t + max(1, round(rng.expovariate(rate) * 1000))
        if nxt < end:
            self.push(nxt, _BAD, index)
        count = self.bad_counts.get(index, 0)
        self.bad_counts[index] = count + 1
        chosen = inc.values("family")
        families = tuple(EventFamily(f) for f in chosen) if chosen else self.gen.families
        family = families[count % len(families)]
        wanted = inc.values("kinds")
        kinds = tuple(k for k in bad_kinds_for(family) if wanted is None or k.value in wanted)
        max_oversize = int(inc.number("oversize", 2))
        if self.oversize_counts.get(index, 0) >= max_oversize:
            kinds = tuple(k for k in kinds if k is not BadKind.OVERSIZE)
        if not kinds:
            return
        kind = kinds[(count // len(families)) % len(kinds)]
        if kind is BadKind.OVERSIZE:
            self.oversize_counts[index] = self.oversize_counts.get(index, 0) + 1
        session = self.new_session(rng, t)
        base = self.common(session, t)
        if family is EventFamily.PAGE_LOAD:
            base.update(page="/", load_ms=700)
            key = session.session_id
        elif family is EventFamily.CHECKOUT:
            key = self.hex_id("co-", 8)
            base.update(checkout_id=key, step="cart_viewed", amount=10.0, currency="EUR")
        else:
            key = f"ord-{self.rng_ids.randrange(10**9, 10**10)}"
            base.update(order_id=key, status="packed", carrier="dhl", warehouse="ams-1")
        yield family, key, make_bad_record(kind, family, base, self.gen.oversize_bytes)


def _matches(incident: Incident, **attrs: str) -> bool:
    """True when every filter parameter the incident sets admits the given attribute."""
    for name, value in attrs.items():
        allowed = incident.values(name)
        if allowed is not None and value not in allowed:
            return False
    return True
