"""What a beacon does not say and the collector must derive: the route template of a page
URL and the device class of a browser. The same rules as the page snippet (web/src)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

ID = ":id"
# A path segment that is an identifier, not part of the route: all digits, a UUID, or a
# long hex string (hashes, object ids). Anything else is kept as written.
_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,})$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ROUTE = 256


def route_template(url: str) -> str | None:
    """`https://shop.example/product/123?ref=x#top` -> `/product/:id`; None if unusable.

    Query strings and fragments are stripped, id-like segments become `:id`, a trailing
    slash is dropped (except for `/`), control characters make the URL unusable.
    """
    if not url or _CONTROL.search(url):
        return None
    path = (
        urlsplit(url).path
        if "://" in url or url.startswith("//")
        else url.split("?", maxsplit=1)[0]
    )
    path = path.split("#", maxsplit=1)[0]
    segments = [s for s in path.split("/") if s]
    route = "/" + "/".join(ID if _ID_SEGMENT.match(s) else s for s in segments)
    return route if len(route) <= MAX_ROUTE else None


def device_class(user_agent: str, mobile: bool | None = None) -> str:
    """mobile | tablet | desktop from a user agent (and a client's own `mobile` flag).

    Tablets first: iPads and Android devices without "Mobile" in their agent are tablets;
    then "Mobi" (Google's advice for detecting phones) or the client's flag means mobile.
    """
    ua = user_agent or ""
    if "iPad" in ua or "Tablet" in ua or ("Android" in ua and "Mobile" not in ua):
        return "tablet"
    if mobile or "Mobi" in ua:
        return "mobile"
    return "desktop"
