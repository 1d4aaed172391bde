"""The collector's pure parts: token buckets, recent ids, route templates, device classes,
capped gunzip."""

from __future__ import annotations

import gzip

import pytest

from expmon.collect.app import Refused, gunzip
from expmon.collect.context import device_class, route_template
from expmon.collect.cors import CorsPolicy
from expmon.collect.idempotency import RecentIds
from expmon.collect.ratelimit import RateLimiter


def test_token_bucket_bursts_then_sustains_its_rate() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.acquire("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a", 0.0) == pytest.approx(0.1)  # empty: one token in 1/rate
    assert limiter.acquire("a", 0.05) == pytest.approx(0.05)
    assert limiter.acquire("a", 0.1) == 0.0  # refilled one token
    assert limiter.acquire("b", 0.1) == 0.0  # each client has its own bucket
    assert limiter.acquire("a", 100.0) == 0.0 and limiter.acquire("a", 100.0) == 0.0


def test_token_bucket_forgets_least_recent_clients() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_clients=2)
    for client in ("a", "b", "c"):
        limiter.acquire(client, 0.0)
    assert len(limiter) == 2
    assert limiter.acquire("a", 0.0) == 0.0  # forgotten: a fresh bucket
    assert limiter.acquire("c", 0.0) > 0


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: str) -> None:
    assert RateLimiter.retry_after(wait) == header


def test_recent_ids_are_a_bounded_lru() -> None:
    ids = RecentIds(capacity=2)
    ids.add("a")
    ids.add("b")
    ids.add("a")  # refreshes a
    ids.add("c")  # evicts b
    assert "a" in ids and "c" in ids and "b" not in ids and len(ids) == 2


@pytest.mark.parametrize(
    ("url", "route"),
    [
        ("https://shop.example/product/123?ref=ads#reviews", "/product/:id"),
        ("https://shop.example/", "/"),
        ("https://shop.example", "/"),
        ("https://shop.example/cart/", "/cart"),
        (
            "https://shop.example/order/0b7e8c3a-2f4e-4d5b-9c1a-7e6f5d4c3b2a/track",
            "/order/:id/track",
        ),
        ("https://shop.example/img/5f2b9c0e1d3a4b6c7d8e", "/img/:id"),
        ("https://shop.example/category/shoes-2024", "/category/shoes-2024"),
        ("/product/42", "/product/:id"),
        ("/search?q=a", "/search"),
        ("https://shop.example/a\x00b", None),
        ("", None),
    ],
)
def test_route_templates(url: str, route: str | None) -> None:
    assert route_template(url) == route


@pytest.mark.parametrize(
    ("ua", "mobile", "device"),
    [
        ("Mozilla/5.0 (X11; Linux x86_64) Chrome/120 Safari/537.36", None, "desktop"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148 Safari/604.1", None, "mobile"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36", None, "mobile"),
        ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) Safari/604.1", None, "tablet"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) Chrome/120 Safari/537.36", None, "tablet"),
        ("", True, "mobile"),
        ("", None, "desktop"),
    ],
)  # fmt: skip
def test_device_classes(ua: str, mobile: bool | None, device: str) -> None:
    assert device_class(ua, mobile) == device


def test_gunzip_caps_the_output() -> None:
    assert gunzip(gzip.compress(b"x" * 100), 100) == b"x" * 100
    with pytest.raises(Refused) as bomb:
        gunzip(gzip.compress(b"x" * 101), 100)
    assert bomb.value.status == 413
    with pytest.raises(Refused) as bad:
        gunzip(b"not gzip at all", 100)
    assert bad.value.status == 400
    with pytest.raises(Refused) as cut:
        gunzip(gzip.compress(b"x" * 100)[:15], 100)
    assert cut.value.status == 400


def test_cors_policy() -> None:
    policy = CorsPolicy(frozenset({"https://shop.example"}))
    assert policy.allows("https://shop.example") and policy.allows("https://shop.example/")
    assert not policy.allows("https://shop.example.evil.com")
    assert CorsPolicy(frozenset({"*"})).allows("https://anything.example")
    assert not CorsPolicy(frozenset()).allows("https://shop.example")
