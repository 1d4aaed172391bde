"""The collector's HTTP application (aiohttp): routes, edge checks, validation, producing.

Order of the edge checks on a POST, each answered at once (the body is read only after
the cheap ones): CORS origin (403), API key (401), per-client rate limit (429 with
Retry-After), content type (415), content encoding (415), body size before and after
gzip (413), then JSON and the family's field rules. An event that fails them goes to the
dead-letter topic with its reason; the good events of the same request are produced.
The answer is 202 once the broker acknowledged every record of the request (events and
dead letters), 400 when nothing in it was usable (its dead letters are on the broker),
503 with Retry-After when the broker did not acknowledge in time (nothing is remembered,
so the retry goes through).
"""

from __future__ import annotations

import hmac
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from expmon.collect import faro, webvitals
from expmon.collect.cors import CorsPolicy
from expmon.collect.idempotency import RecentIds
from expmon.collect.metrics import CollectorMetrics
from expmon.collect.producer import Message, Producer
from expmon.collect.ratelimit import RateLimiter
from expmon.engine.stage import record_decoder
from expmon.errors import ProduceError
from expmon.families.registry import BY_NAME
from expmon.settings import Settings
from schemas import codec
from schemas.events import KEY_FIELDS, Event, EventFamily
from schemas.records import RecordDecoder, Rejected, strip_annotations

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
API_KEY_PARAM = "api_key"  # sendBeacon cannot set headers
# sendBeacon with a string body sends text/plain; a Blob without a type sends none
JSON_TYPES = frozenset({"application/json", "text/plain", ""})
MAX_ERRORS_SHOWN = 20

# route -> the family its contract events belong to
EVENT_ROUTES = {
    "/v1/page-loads": EventFamily.PAGE_LOAD,
    "/v1/checkout-events": EventFamily.CHECKOUT,
    "/v1/logistics-events": EventFamily.LOGISTICS,
}
WEB_VITALS_ROUTE = "/v1/web-vitals"
FARO_ROUTE = "/collect"
POST_ROUTES = (*EVENT_ROUTES, WEB_VITALS_ROUTE, FARO_ROUTE)
OTHER_ROUTE = "other"  # requests_total label of unknown paths: bounded
# The server hands bodies over as sent: `read_body` inflates gzip itself, capped, and
# answers 415 for encodings it does not take (aiohttp would inflate br/zstd or fail 400).
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}


class Refused(Exception):  # noqa: N818 - an HTTP answer, not a failure of ours
    """An edge check's answer: status, reason, extra headers."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass
class Outcome:
    """What one request did, for its answer and its counters."""

    accepted: int = 0
    duplicate: int = 0
    invalid: int = 0
    ignored: int = 0

    def answer(self, rejected: list[Rejected]) -> web.Response:
        body: dict[str, Any] = {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "invalid": self.invalid,
            "ignored": self.ignored,
        }
        if rejected:
            body["errors"] = [
                {"index": r.index, "reason": r.reason, "detail": r.detail}
                for r in rejected[:MAX_ERRORS_SHOWN]
            ]
        usable = self.accepted or self.duplicate or self.ignored or not rejected
        return web.Response(
            status=202 if usable else 400, body=codec.dumps(body), content_type="application/json"
        )


def client_key(request: web.Request, header: str) -> str:
    """Who the request is from, for the rate limit: the peer, or the LB's header."""
    if header:
        value = request.headers.get(header, "")
        first = value.split(",")[0].strip()
        if first:
            return first
    return request.remote or "unknown"


class Collector:
    """The state of one collector process: limits, caches, decoders, the producer."""

    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        metrics: CollectorMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self.clock = clock
        self.cors = CorsPolicy(settings.collect_origins)
        self.limiter = RateLimiter(settings.collect_rate_per_second, settings.collect_rate_burst)
        key = settings.collect_api_key
        self.api_key = key.get_secret_value().encode() if key is not None else None
        self.decoders: dict[EventFamily, RecordDecoder] = {
            f: record_decoder(settings, f) for f in EventFamily
        }
        self.topics = {f: BY_NAME[str(f)].topic(settings) for f in EventFamily}
        self.recent = {f: RecentIds(settings.collect_idempotency_ids) for f in EventFamily}
        self.draining = False

    # ---------------------------------------------------------------- edge checks
    def check_origin(self, request: web.Request) -> dict[str, str]:
        """CORS headers for the answer; Refused(403) for an origin not on the list."""
        origin = request.headers.get("Origin")
        if origin is None:
            return {}  # not a browser's cross-origin request (curl, a service, same origin)
        if not self.cors.allows(origin):
            raise Refused(403, f"origin {origin} is not allowed (EXPMON_COLLECT_ALLOWED_ORIGINS)")
        return self.cors.response_headers(origin)

    def check_api_key(self, request: web.Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get(API_KEY_HEADER) or request.query.get(API_KEY_PARAM) or ""
        if not hmac.compare_digest(given.encode(), self.api_key):
            raise Refused(401, f"missing or wrong API key ({API_KEY_HEADER} header)")

    def check_rate(self, request: web.Request) -> None:
        wait = self.limiter.acquire(
            client_key(request, self.settings.collect_client_ip_header), self.clock()
        )
        if wait > 0:
            raise Refused(
                429, "rate limit exceeded", {"Retry-After": RateLimiter.retry_after(wait)}
            )

    async def read_body(self, request: web.Request) -> bytes:
        if request.content_type not in JSON_TYPES:
            raise Refused(415, f"content type {request.content_type} (send application/json)")
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise Refused(415, f"content encoding {encoding} (gzip or none)")
        limit = self.settings.collect_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refused(413, f"body of {request.content_length} bytes > {limit}")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise Refused(413, f"body over {limit} bytes")
        if encoding == "gzip":
            return gunzip(body, limit)
        return body

    # ---------------------------------------------------------------- handling
    async def handle_post(
        self, request: web.Request, ingest: Callable[[bytes, web.Request], Awaitable[web.Response]]
    ) -> web.Response:
        self.check_api_key(request)
        self.check_rate(request)
        body = await self.read_body(request)
        return await ingest(body, request)

    def _context(self, request: web.Request) -> webvitals.BeaconContext:
        return webvitals.BeaconContext(
            referer=request.headers.get("Referer", ""),
            user_agent=request.headers.get("User-Agent", ""),
            region=self.settings.collect_region,
            now_ms=time.time_ns() // 1_000_000,
        )

    async def ingest_events(
        self, family: EventFamily, body: bytes, request: web.Request, route: str
    ) -> web.Response:
        valid: list[Event] = []
        rejected: list[Rejected] = []
        self.decoders[family].decode(body, time.time_ns() // 1_000_000, valid, rejected)
        return await self.produce(family, valid, rejected, 0, request, route)

    async def ingest_mapped(
        self, mapped: webvitals.Mapped, request: web.Request, route: str
    ) -> web.Response:
        family = EventFamily.PAGE_LOAD
        valid: list[Event] = []
        rejected = list(mapped.rejected)
        if mapped.events:
            self.decoders[family].decode_events(
                mapped.events, time.time_ns() // 1_000_000, valid, rejected
            )
        return await self.produce(family, valid, rejected, mapped.ignored, request, route)

    async def produce(
        self,
        family: EventFamily,
        valid: list[Event],
        rejected: list[Rejected],
        ignored: int,
        request: web.Request,
        route: str,
    ) -> web.Response:
        topic = self.topics[family]
        key_field = KEY_FIELDS[family]
        recent = self.recent[family]
        extra = self._client_info(request)
        outcome = Outcome(invalid=len(rejected), ignored=ignored)
        messages: list[Message] = []
        fresh: list[str] = []  # event ids, by message index
        seen: set[str] = set()
        for event in valid:
            event_id: str = event["event_id"]
            if event_id in recent or event_id in seen:
                outcome.duplicate += 1
                continue
            seen.add(event_id)
            fresh.append(event_id)
            strip_annotations(event)
            event.update(extra)
            key = event.get(key_field)
            messages.append(
                Message(topic, key.encode() if type(key) is str else None, codec.dumps(event))
            )
        for rej in rejected:
            messages.append(self._dead_letter(family, topic, route, rej))

        def acked(index: int) -> None:
            # on time or late (after a 503): a repeat of the id is then a duplicate
            if index < len(fresh):
                recent.add(fresh[index])

        try:
            await self.producer.send_all(messages, acked)
        except ProduceError as exc:
            log.warning("%s: %s", route, exc)
            raise Refused(503, "broker unavailable, retry", {"Retry-After": "1"}) from exc
        outcome.accepted = len(fresh)
        name = str(family)
        self.metrics.count(name, "accepted", outcome.accepted)
        self.metrics.count(name, "duplicate", outcome.duplicate)
        self.metrics.count(name, "invalid", outcome.invalid)
        self.metrics.count("faro" if route == FARO_ROUTE else name, "ignored", ignored)
        for rej in rejected:
            self.metrics.dead_letter(name, rej.reason)
        return outcome.answer(rejected)

    def _client_info(self, request: web.Request) -> dict[str, str]:
        if not self.settings.collect_store_client_info:
            return {}
        return {
            "client_ip": client_key(request, self.settings.collect_client_ip_header),
            "user_agent": request.headers.get("User-Agent", "")[:256],
        }

    def _dead_letter(self, family: EventFamily, topic: str, route: str, rej: Rejected) -> Message:
        headers = [
            ("expmon-reason", rej.reason.encode()),
            ("expmon-source-topic", topic.encode()),
            ("expmon-source", f"collect:{route}".encode()),
        ]
        if rej.detail:
            headers.append(("expmon-detail", rej.detail.encode()[:1000]))
        if rej.index is not None:
            headers.append(("expmon-batch-index", str(rej.index).encode()))
        key = None
        try:
            item = codec.loads(rej.payload) if rej.index is not None else None
            if type(item) is dict and type(item.get(KEY_FIELDS[family])) is str:
                key = item[KEY_FIELDS[family]].encode()
        except codec.JSONDecodeError:
            key = None
        return Message(self.settings.topic_dlq, key, rej.payload, tuple(headers))

    def _json_or_reject(self, body: bytes) -> tuple[Any, Rejected | None]:
        try:
            return codec.loads(body), None
        except codec.JSONDecodeError as exc:
            return None, Rejected("not_json", str(exc)[:200], body, None)


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body, refusing more than `limit` bytes of output (zip bombs: 413)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Refused(400, f"body is not valid gzip: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise Refused(413, f"body over {limit} bytes once decompressed")
    if not inflater.eof:
        raise Refused(400, "body is truncated gzip")
    return out


def route_label(request: web.Request) -> str:
    """The matched route's path (bounded: unknown paths are `other`)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else OTHER_ROUTE


def build_app(collector: Collector) -> web.Application:
    metrics = collector.metrics

    @web.middleware
    async def edge(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        route = route_label(request)
        cors: dict[str, str] = {}
        try:
            if request.method in ("POST", "OPTIONS") and route in POST_ROUTES:
                cors = collector.check_origin(request)
            if collector.draining and request.method == "POST":
                raise Refused(503, "shutting down", {"Retry-After": "1", "Connection": "close"})
            response = await handler(request)
        except Refused as refused:
            response = web.json_response(
                {"error": refused.reason}, status=refused.status, headers=refused.headers
            )
        except web.HTTPException as exc:  # 404, 405 from the router
            response = web.json_response({"error": exc.reason}, status=exc.status)
        except Exception:  # a bug of ours: answered and counted, the process goes on
            log.exception("%s %s failed", request.method, route)
            response = web.json_response({"error": "internal error"}, status=500)
        response.headers.update(cors)
        metrics.request(route, response.status, time.perf_counter() - started)
        return response

    async def events(request: web.Request) -> web.Response:
        route = route_label(request)
        family = EVENT_ROUTES[route]

        async def ingest(body: bytes, req: web.Request) -> web.Response:
            return await collector.ingest_events(family, body, req, route)

        return await collector.handle_post(request, ingest)

    async def web_vitals(request: web.Request) -> web.Response:
        async def ingest(body: bytes, req: web.Request) -> web.Response:
            decoded, bad = collector._json_or_reject(body)
            if bad is not None:
                mapped = webvitals.Mapped(rejected=[bad])
            else:
                items = decoded if type(decoded) is list else [decoded]
                mapped = webvitals.map_metrics(items, collector._context(req))
            return await collector.ingest_mapped(mapped, req, WEB_VITALS_ROUTE)

        return await collector.handle_post(request, ingest)

    async def faro_collect(request: web.Request) -> web.Response:
        async def ingest(body: bytes, req: web.Request) -> web.Response:
            decoded, bad = collector._json_or_reject(body)
            if bad is not None:
                mapped = webvitals.Mapped(rejected=[bad])
            else:
                mapped = faro.map_payload(decoded, collector._context(req))
            return await collector.ingest_mapped(mapped, req, FARO_ROUTE)

        return await collector.handle_post(request, ingest)

    async def preflight(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if origin is None:
            raise Refused(400, "preflight without Origin")
        return web.Response(status=204, headers=collector.cors.preflight_headers(origin))

    async def healthz(_request: web.Request) -> web.Response:
        status = "draining" if collector.draining else "ok"
        return web.json_response({"status": status}, status=503 if collector.draining else 200)

    app = web.Application(middlewares=[edge])
    for path in EVENT_ROUTES:
        app.router.add_post(path, events)
    app.router.add_post(WEB_VITALS_ROUTE, web_vitals)
    app.router.add_post(FARO_ROUTE, faro_collect)
    for path in POST_ROUTES:
        app.router.add_route("OPTIONS", path, preflight)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry, disable_compression=True))
    return app
