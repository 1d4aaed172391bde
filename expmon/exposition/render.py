"""`/metrics` pages rendered off the event loop and served from cached bytes.

A scrape never renders on the event loop: the page is collected, cut to the series budget
(`budget.py`) and encoded in one render thread, and every scrape within
`EXPMON_METRICS_MAX_AGE_SECONDS` of a render gets those bytes (concurrent scrapes wait
for the same render; Prometheus servers scraping many workers cost one render each per
interval, not one per scrape). `?name[]=...` pages and each format (text, OpenMetrics)
are cached apart.

Collecting from a thread reads the stages' dicts while the event loop changes them: a
collector can then fail ("dictionary changed size during iteration"); the render is
retried, and after a few failures it collects on the event loop (correct, only slower).
A value read mid-update is at most one batch old, as a scrape a moment later would be.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from expmon.exposition.budget import apply_budget, tiers
from expmon.exposition.metrics import Metrics

logger = logging.getLogger(__name__)

COLLECT_ATTEMPTS = 3
MAX_CACHED_PAGES = 32

Encoder = Callable[[Any], bytes]
PageKey = tuple[tuple[str, ...], str]  # (name[] filter, content type)


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    content_type: str
    rendered_at: float  # time.monotonic()
    seconds: float  # how long the render took (collect + budget + encode)


class _Families:
    """A registry-like object over already collected families (what encoders take)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class _Inconsistent(Exception):  # noqa: N818 - internal signal, never leaves this module
    """Collecting from the render thread kept failing on concurrent changes."""


class Exposition:
    """The worker's `/metrics` pages within the series budget."""

    def __init__(
        self, metrics: Metrics, budget: int, views: Sequence[str], max_age_seconds: float = 1.0
    ) -> None:
        self.metrics = metrics
        self.budget = budget
        self.views = tuple(views)
        self.max_age_seconds = max_age_seconds
        # the exposition's own series, added to every page after the cut
        self.reserve = len(tiers(self.views)) * 2 + 4
        self._cache: dict[PageKey, Page] = {}
        self._pending: dict[PageKey, asyncio.Future[Page]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expmon-render")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ rendering (any thread)
    def collect(self, names: Sequence[str], *, retry: bool) -> list[Metric]:
        registry = self.metrics.registry
        source: Any = registry.restricted_registry(names) if names else registry
        attempts = COLLECT_ATTEMPTS if retry else 1
        for attempt in range(attempts):
            try:
                return list(source.collect())
            except (RuntimeError, KeyError, IndexError) as exc:
                if not retry:
                    raise
                logger.debug("collect attempt %d raced the event loop: %r", attempt + 1, exc)
        raise _Inconsistent

    def finish(
        self, families: list[Metric], encoder: Encoder, content_type: str, full: bool = True
    ) -> Page:
        """Cut collected families to the budget, count what was dropped, encode."""
        started = time.perf_counter()
        budgeted = apply_budget(families, self.budget, self.views, reserve=self.reserve)
        for tier, n in budgeted.dropped.items():
            self.metrics.series_dropped.labels(tier).inc(n)
        if full:
            self.metrics.exposition_series.set(budgeted.exposed)
        # the page shows its own cut, not the previous render's
        own = {m.name: m for c in (self.metrics.series_dropped, self.metrics.exposition_series)
               for m in c.collect()}  # fmt: skip
        families = [own.get(f.name, f) for f in budgeted.families]
        body = encoder(_Families(families))
        return Page(body, content_type, time.monotonic(), time.perf_counter() - started)

    def render(self, names: Sequence[str] = (), accept: str = "") -> Page:
        """One page, rendered in the calling thread (the bench, tests, a replay)."""
        encoder, content_type = choose_encoder(accept)
        started = time.perf_counter()
        page = self.finish(self.collect(names, retry=False), encoder, content_type, not names)
        return Page(page.body, content_type, page.rendered_at, time.perf_counter() - started)

    # ------------------------------------------------------------ serving (event loop)
    async def page(self, accept: str, names: Sequence[str] = ()) -> Page:
        """The cached page if fresh, else the render under way or a new one."""
        encoder, content_type = choose_encoder(accept)
        key: PageKey = (tuple(sorted(set(names))), content_type)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached.rendered_at < self.max_age_seconds:
            return cached
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._render(key, encoder))
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _render(self, key: PageKey, encoder: Encoder) -> Page:
        loop = asyncio.get_running_loop()
        names, content_type = key
        started = time.perf_counter()

        def in_thread() -> Page:
            return self.finish(self.collect(names, retry=True), encoder, content_type, not names)

        try:
            page = await loop.run_in_executor(self._executor, in_thread)
        except _Inconsistent:
            logger.info("render kept racing the event loop: collecting on the loop once")
            families = self.collect(names, retry=False)
            page = await loop.run_in_executor(
                self._executor, self.finish, families, encoder, content_type, not names
            )
        page = Page(page.body, content_type, page.rendered_at, time.perf_counter() - started)
        if len(self._cache) >= MAX_CACHED_PAGES and key not in self._cache:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = page
        return page
