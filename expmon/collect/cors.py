"""CORS with an origin allow-list: which browser pages may post to the collector."""

from __future__ import annotations

ALLOW_METHODS = "POST, OPTIONS"
# Content-Encoding for gzip bodies, X-API-Key for the optional key; x-faro-session-id and
# Idempotency-Key are sent by the Faro web SDK's fetch transport.
ALLOW_HEADERS = "Content-Type, Content-Encoding, X-API-Key, X-Faro-Session-Id, Idempotency-Key"
MAX_AGE_SECONDS = "600"


class CorsPolicy:
    """`origins`: exact origins (`https://shop.example`), or `*` for any."""

    def __init__(self, origins: frozenset[str]) -> None:
        self.any = "*" in origins
        self.origins = origins - {"*"}

    def allows(self, origin: str) -> bool:
        return self.any or origin.rstrip("/") in self.origins

    def response_headers(self, origin: str) -> dict[str, str]:
        """Headers of an allowed cross-origin answer (the browser reads it only with these)."""
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def preflight_headers(self, origin: str) -> dict[str, str]:
        headers = self.response_headers(origin)
        headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        return headers
