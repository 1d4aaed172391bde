"""The shop the traffic comes from: pages, devices, regions, channels, platforms, app
versions, load times, journeys' branching, payment providers and methods, failure reasons,
currencies, carriers and warehouses, and the mix of families. Shared by the simulator and
`expmon bench`, so both speak of the same shop."""

from __future__ import annotations

import logging

from schemas.events import EventFamily

logger = logging.getLogger(__name__)


PAGES: tuple[str, ...] = (
    "/",
    "/search",
    "/category/:slug",
    "/product/:id",
    "/cart",
    "/checkout",
    "/checkout/payment",
    "/account",
)
DEVICE_WEIGHTS: dict[str, float] = {"mobile": 0.58, "desktop": 0.34, "tablet": 0.08}
REGION_WEIGHTS: dict[str, float] = {
    "eu-west": 0.30,
    "eu-central": 0.20,
    "us-east": 0.25,
    "us-west": 0.15,
    "ap-south": 0.10,
}
REGIONS: tuple[str, ...] = tuple(REGION_WEIGHTS)
CHANNEL_WEIGHTS: dict[str, float] = {
    "organic": 0.35,
    "ads": 0.25,
    "direct": 0.20,
    "social": 0.15,
    "other": 0.05,
}
PLATFORM_WEIGHTS: dict[str, dict[str, float]] = {
    "mobile": {"web": 0.45, "ios": 0.25, "android": 0.25, "miniapp": 0.05},
    "tablet": {"web": 0.50, "ios": 0.35, "android": 0.15},
    "desktop": {"web": 1.0},
}
APP_VERSIONS: dict[str, float] = {"5.14.2": 0.6, "5.14.1": 0.25, "5.13.0": 0.15}

# Median load time (ms) per page on desktop in eu-west; devices and regions multiply it.
PAGE_MEDIAN_MS: dict[str, float] = {
    "/": 600.0,
    "/search": 750.0,
    "/category/:slug": 700.0,
    "/product/:id": 820.0,
    "/cart": 550.0,
    "/checkout": 750.0,
    "/checkout/payment": 850.0,
    "/account": 650.0,
}
# Share of page views per page over a whole day (the journeys produce it; `expmon bench`
# draws pages from it directly).
PAGE_VIEW_WEIGHTS: dict[str, float] = {
    "/": 0.14,
    "/search": 0.16,
    "/category/:slug": 0.18,
    "/product/:id": 0.30,
    "/cart": 0.08,
    "/checkout": 0.06,
    "/checkout/payment": 0.04,
    "/account": 0.04,
}
DEVICE_FACTOR: dict[str, float] = {"desktop": 1.0, "tablet": 1.2, "mobile": 1.35}
REGION_FACTOR: dict[str, float] = {
    "eu-west": 1.0,
    "eu-central": 1.0,
    "us-east": 1.04,
    "us-west": 1.08,
    "ap-south": 1.12,
}
LOAD_SIGMA = 0.4  # log-normal shape: p95 = median * e^(1.645 * 0.4) ~ 1.93 x median
LANDING_WEIGHTS: dict[str, float] = {
    "/": 0.35,
    "/product/:id": 0.35,
    "/category/:slug": 0.20,
    "/search": 0.10,
}
NEXT_PAGE: dict[str, dict[str, float]] = {
    "/": {
        "/search": 0.35,
        "/category/:slug": 0.35,
        "/product/:id": 0.2,
        "/account": 0.05,
        "/cart": 0.05,
    },
    "/search": {"/product/:id": 0.6, "/search": 0.2, "/category/:slug": 0.1, "/cart": 0.1},
    "/category/:slug": {"/product/:id": 0.6, "/category/:slug": 0.2, "/search": 0.1, "/cart": 0.1},
    "/product/:id": {
        "/product/:id": 0.3,
        "/cart": 0.3,
        "/category/:slug": 0.2,
        "/search": 0.15,
        "/": 0.05,
    },
    "/cart": {"/checkout": 0.5, "/product/:id": 0.3, "/": 0.2},
    "/checkout": {"/checkout/payment": 0.8, "/cart": 0.2},
    "/checkout/payment": {"/": 0.5, "/account": 0.5},
    "/account": {"/": 0.5, "/product/:id": 0.5},
}
BOUNCE_PROBABILITY = 0.3
# Core Web Vitals of web page views (the other vitals derive from the load time)
INP_MEDIAN_MS: dict[str, float] = {"desktop": 60.0, "tablet": 80.0, "mobile": 100.0}
P_INTERACTION = 0.7  # page views with an interaction (so with an INP)
CLS_ZERO_SHARE: dict[str, float] = {"desktop": 0.35, "tablet": 0.3, "mobile": 0.25}
VITAL_BEACON_SHARE = 0.03  # page views whose vitals come as separate beacons (web-vitals)
BEACON_DELAY_MS = (500, 8000)  # beacons leave on visibilitychange/pagehide, after the load


def beacon_events_per_view(share: float) -> float:
    """Expected vital-only events per page view (web and miniapp views carry vitals:
    TTFB, FCP, LCP, CLS and INP when there was an interaction)."""
    web = sum(
        w * (PLATFORM_WEIGHTS[d].get("web", 0.0) + PLATFORM_WEIGHTS[d].get("miniapp", 0.0))
        for d, w in DEVICE_WEIGHTS.items()
    )
    return share * web * (4 + P_INTERACTION)


MEAN_EXTRA_VIEWS = 4.0  # non-bouncing sessions view 1 + geometric(mean 4) more pages
SESSION_IDLE_MS = 30 * 60_000

PROVIDER_WEIGHTS: dict[str, float] = {"stripe": 0.45, "adyen": 0.35, "paypal": 0.20}
PROVIDERS: tuple[str, ...] = tuple(PROVIDER_WEIGHTS)
PROVIDER_METHODS: dict[str, dict[str, float]] = {
    "stripe": {"card": 0.75, "wallet": 0.25},
    "adyen": {"card": 0.6, "wallet": 0.25, "bnpl": 0.15},
    "paypal": {"wallet": 0.8, "bnpl": 0.2},
}
METHODS: tuple[str, ...] = ("card", "wallet", "bnpl")
# Normal failure ratio per method (kept well under the 3 % alert threshold).
METHOD_FAILURE: dict[str, float] = {"card": 0.012, "wallet": 0.006, "bnpl": 0.015}
FAILURE_REASONS: tuple[str, ...] = (
    "card_declined",
    "insufficient_funds",
    "provider_timeout",
    "fraud_suspected",
)
FAILURE_REASON_WEIGHTS: dict[str, float] = {
    "card_declined": 0.5,
    "insufficient_funds": 0.3,
    "provider_timeout": 0.1,
    "fraud_suspected": 0.1,
}
OUTAGE_REASON_WEIGHTS: dict[str, float] = {
    "provider_timeout": 0.85,
    "card_declined": 0.1,
    "insufficient_funds": 0.05,
}
CURRENCY_BY_REGION: dict[str, tuple[str, float]] = {
    "eu-west": ("EUR", 1.0),
    "eu-central": ("EUR", 1.0),
    "us-east": ("USD", 1.08),
    "us-west": ("USD", 1.08),
    "ap-south": ("INR", 90.0),
}
# Probability of moving on to the next checkout step (the rest abandon).
P_CHECKOUT_STARTED = 0.6
P_SHIPPING_SELECTED = 0.88
P_PAYMENT_SUBMITTED = 0.9
P_ORDER_PLACED = 0.995
P_RETRY_AFTER_FAILURE = 0.55
P_SWITCH_PROVIDER_ON_RETRY = 0.35
MAX_PAYMENT_ATTEMPTS = 3
EXPECTED_EVENTS_PER_CHECKOUT = 3.5

CARRIERS: tuple[str, ...] = ("dhl", "ups", "fedex", "dpd")
WAREHOUSES: tuple[str, ...] = ("ams-1", "fra-1", "nyc-1")
WAREHOUSE_BY_REGION: dict[str, dict[str, float]] = {
    "eu-west": {"ams-1": 0.7, "fra-1": 0.3},
    "eu-central": {"fra-1": 0.8, "ams-1": 0.2},
    "us-east": {"nyc-1": 1.0},
    "us-west": {"nyc-1": 1.0},
    "ap-south": {"fra-1": 0.5, "ams-1": 0.5},
}
CARRIER_BY_REGION: dict[str, dict[str, float]] = {
    "eu-west": {"dhl": 0.4, "dpd": 0.35, "ups": 0.25},
    "eu-central": {"dhl": 0.45, "dpd": 0.4, "ups": 0.15},
    "us-east": {"ups": 0.45, "fedex": 0.45, "dhl": 0.1},
    "us-west": {"ups": 0.45, "fedex": 0.45, "dhl": 0.1},
    "ap-south": {"dhl": 0.6, "fedex": 0.4},
}
HOUR_MS = 3_600_000
P_DELIVERY_FAILED = 0.025
P_RETURN_AFTER_FAILED = 0.15
P_RETURN_AFTER_DELIVERED = 0.02
EXPECTED_EVENTS_PER_ORDER = 7.0

DEFAULT_MIX: dict[EventFamily, float] = {
    EventFamily.PAGE_LOAD: 0.75,
    EventFamily.CHECKOUT: 0.15,
    EventFamily.LOGISTICS: 0.10,
}
