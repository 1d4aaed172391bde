"""Label values are normalised at validation: control characters rejected with their own
reason, query strings, fragments and URL prefixes stripped from `page`."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import codec
from schemas.events import EventFamily
from schemas.records import RecordDecoder, Rejected
from tests.unit.helpers import NOW_MS
from tests.unit.helpers import contract_event as event


def decode(family: EventFamily, ev: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Rejected]]:
    valid: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    RecordDecoder(family).decode(codec.dumps(ev), NOW_MS, valid, rejected)
    return valid, rejected


LABEL_FIELDS = [
    (EventFamily.PAGE_LOAD, "page"),
    (EventFamily.PAGE_LOAD, "region"),
    (EventFamily.CHECKOUT, "region"),
    (EventFamily.CHECKOUT, "payment_provider"),
    (EventFamily.CHECKOUT, "payment_method"),
    (EventFamily.CHECKOUT, "failure_reason"),
    (EventFamily.LOGISTICS, "carrier"),
    (EventFamily.LOGISTICS, "warehouse"),
]


@pytest.mark.parametrize(("family", "name"), LABEL_FIELDS)
@pytest.mark.parametrize("char", ["\r", "\x00", "\n", "\t", "\x1b", "\x7f", "\x85"])
def test_control_characters_in_a_label_are_rejected(
    family: EventFamily, name: str, char: str
) -> None:
    valid, rejected = decode(family, event(family, **{name: f"/a{char}b"}))
    assert valid == []
    assert [r.reason for r in rejected] == [f"control_characters:{name}"]
    # the dead letter keeps the event exactly as it was sent
    assert codec.loads(rejected[0].payload)[name] == f"/a{char}b"


@pytest.mark.parametrize(
    "value", ["/caf\u00e9", "/\u00a0nbsp", "/emoji-\U0001f600", "/zwj\u200dx", "/ä/ö"]
)
def test_printable_and_other_unicode_label_values_pass(value: str) -> None:
    valid, rejected = decode(EventFamily.PAGE_LOAD, event(EventFamily.PAGE_LOAD, page=value))
    assert rejected == []
    assert valid[0]["page"] == value


@pytest.mark.parametrize(
    ("page", "route"),
    [
        ("/product/:id", "/product/:id"),
        ("/search?q=alice@example.com", "/search"),
        ("/cart#step-2", "/cart"),
        ("/checkout?token=abc#pay", "/checkout"),
        ("/a#frag?not-a-query", "/a"),
        ("https://user:pw@shop.example:8443/product/:id?ref=ads", "/product/:id"),
        ("http://shop.example", "/"),
        ("/redirect/https://elsewhere", "/redirect/https://elsewhere"),
    ],
)
def test_page_becomes_its_route_template(page: str, route: str) -> None:
    valid, rejected = decode(EventFamily.PAGE_LOAD, event(EventFamily.PAGE_LOAD, page=page))
    assert rejected == []
    assert valid[0]["page"] == route


@pytest.mark.parametrize("page", ["?utm_source=x", "#top"])
def test_a_page_with_no_route_is_rejected(page: str) -> None:
    valid, rejected = decode(EventFamily.PAGE_LOAD, event(EventFamily.PAGE_LOAD, page=page))
    assert valid == []
    assert [r.reason for r in rejected] == ["empty_route:page"]
    assert codec.loads(rejected[0].payload)["page"] == page


def test_a_batched_event_rejected_later_keeps_its_page_as_sent() -> None:
    bad = event(EventFamily.PAGE_LOAD, page="/search?q=x", load_ms=-1)
    good = event(EventFamily.PAGE_LOAD, event_id="e-2", page="/search?q=y")
    valid: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    RecordDecoder(EventFamily.PAGE_LOAD).decode(codec.dumps([bad, good]), NOW_MS, valid, rejected)
    assert [r.reason for r in rejected] == ["negative_value:load_ms"]
    assert codec.loads(rejected[0].payload)["page"] == "/search?q=x"
    assert [v["page"] for v in valid] == ["/search"]
