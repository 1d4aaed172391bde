"""Where alert transitions go. Every sink has the same small interface (`AlertSink`).

- `AlertmanagerSink`: Alertmanager API v2. Keeps the set of firing (and recently
  resolved) alerts and posts it to every configured Alertmanager from a background task:
  at once on a change, then every `resend_seconds` while firing, with `endsAt` on
  resolve. A failed post is retried with backoff; the stream never waits for it.
- `TopicSink`: each transition as JSON to the `experience-alerts` topic, keyed by
  fingerprint (the send function is injected: no Kafka import here).
- `LogSink`: one log line per transition.
- `MemorySink`: keeps transitions in a list, for tests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from expmon.alerting.engine import AlertInstance, Transition
from schemas import codec

log = logging.getLogger(__name__)

# notify outcome counter: (sink name, outcome) -> increment; injected by the caller
CountFn = Callable[[str, str, int], None]


def _no_count(_sink: str, _outcome: str, _n: int) -> None:
    return None


class AlertSink(Protocol):
    name: str

    async def start(self, active: Sequence[AlertInstance]) -> None:
        """Begin; `active` is what the engine holds (firing + recently resolved)."""

    async def notify(self, transitions: Sequence[Transition]) -> None:
        """Deliver or queue; must not wait on a slow or dead receiver."""

    async def stop(self) -> None: ...


class MemorySink:
    name = "memory"

    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self.started_with: list[AlertInstance] = []

    async def start(self, active: Sequence[AlertInstance]) -> None:
        self.started_with = list(active)

    async def notify(self, transitions: Sequence[Transition]) -> None:
        self.transitions.extend(transitions)

    async def stop(self) -> None:
        return None


class LogSink:
    name = "log"

    def __init__(self, count: CountFn = _no_count) -> None:
        self.count = count

    async def start(self, active: Sequence[AlertInstance]) -> None:
        firing = [i for i in active if i.state == "firing"]
        if firing:
            log.info("alerts firing at start: %s", ", ".join(_describe(i) for i in firing))

    async def notify(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            level = logging.WARNING if t.state == "firing" else logging.INFO
            log.log(
                level,
                "ALERT %s %s: %s",
                t.state.upper(),
                _describe(t.instance),
                t.instance.annotations.get("summary", ""),
            )
        self.count(self.name, "sent", len(transitions))

    async def stop(self) -> None:
        return None


class TopicSink:
    """Each transition to the alerts topic, in order, from an outbox of its own.

    `notify` only queues: a send waits on the broker (its metadata, a full buffer), and
    while the broker is away it would hold the alert tick for the client's timeouts (83 s
    in one outage) when `KafkaUnreachable` is the very alert to deliver. A failed send is
    retried, in order, with backoff; past `max_queued` the oldest queued are dropped and
    counted (`dropped`), the newest state of an alert being the one that matters.
    """

    name = "topic"

    def __init__(
        self,
        send: Callable[[bytes, bytes], Awaitable[Any]],
        count: CountFn = _no_count,
        max_queued: int = 10_000,
        max_backoff_seconds: float = 10.0,
        drain_seconds: float = 5.0,
    ) -> None:
        self.send = send
        self.count = count
        self.max_queued = max_queued
        self.max_backoff_seconds = max_backoff_seconds
        self.drain_seconds = drain_seconds
        self._outbox: collections.deque[Transition] = collections.deque()
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, active: Sequence[AlertInstance]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._send_loop())

    async def notify(self, transitions: Sequence[Transition]) -> None:
        if self._task is None:
            await self.start([])
        self._outbox.extend(transitions)
        excess = len(self._outbox) - self.max_queued
        for _ in range(max(0, excess)):
            self._outbox.popleft()
        if excess > 0:
            log.warning("alerts topic: %d queued transitions dropped (broker away?)", excess)
            self.count(self.name, "dropped", excess)
        if transitions:
            self._queued.set()

    @property
    def queued(self) -> int:
        return len(self._outbox)

    async def stop(self) -> None:
        """What is queued gets `drain_seconds` to go out; the rest is logged as lost."""
        if self._task is None:
            return
        deadline = asyncio.get_running_loop().time() + self.drain_seconds
        while self._outbox and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._outbox:
            log.warning("alerts topic: %d transitions not sent at stop", len(self._outbox))
            self.count(self.name, "dropped", len(self._outbox))
            self._outbox.clear()

    async def _send_loop(self) -> None:
        backoff = 0.2
        while True:
            if not self._outbox:
                self._queued.clear()
                await self._queued.wait()
                continue
            t = self._outbox[0]
            try:
                await self.send(t.instance.fingerprint.encode(), codec.dumps(t.to_dict()))
            except Exception as exc:  # any client error: keep it queued, in order, and retry
                log.warning("alerts topic: send failed (%s); will retry", exc or type(exc).__name__)
                self.count(self.name, "failed", 1)
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff_seconds, backoff * 2)
                continue
            backoff = 0.2
            if self._outbox and self._outbox[0] is t:
                self._outbox.popleft()
            self.count(self.name, "sent", 1)


def _describe(inst: AlertInstance) -> str:
    dims = ",".join(
        f"{k}={v}" for k, v in sorted(inst.labels.items()) if k not in ("alertname", "severity")
    )
    return f"{inst.alert}[{inst.severity}]{{{dims}}}"


def _rfc3339(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class AlertmanagerSink:
    """Posts the current alert set to each Alertmanager (HA: all of them, independently)."""

    name = "alertmanager"

    def __init__(
        self,
        urls: Sequence[str],
        resend_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        generator_url: str = "",
        count: CountFn = _no_count,
        clock: Callable[[], float] = time.time,
        max_backoff_seconds: float = 30.0,
        expiry_seconds: float = 180.0,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.resend_seconds = resend_seconds
        self.timeout_seconds = timeout_seconds
        self.generator_url = generator_url.rstrip("/")
        self.count = count
        self.clock = clock
        self.max_backoff_seconds = max_backoff_seconds
        self.expiry_seconds = max(expiry_seconds, 2 * resend_seconds)
        self.alerts: dict[str, AlertInstance] = {}
        self._changed = {url: asyncio.Event() for url in self.urls}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.delivered: dict[str, float] = {}  # url -> wall time of the last good post

    async def start(self, active: Sequence[AlertInstance]) -> None:
        self.replace(active)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds)
            )
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._deliver_loop(url)) for url in self.urls]

    def replace(self, active: Sequence[AlertInstance]) -> None:
        """Take over the engine's set (after a restore, or empty after losing ownership)."""
        self.alerts = {i.fingerprint: i for i in active}
        self._wake()

    async def notify(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            self.alerts[t.instance.fingerprint] = t.instance
        if transitions:
            self._wake()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _wake(self) -> None:
        for event in self._changed.values():
            event.set()

    def payload(self) -> list[dict[str, Any]]:
        now = self.clock()
        body = []
        for fp, inst in sorted(self.alerts.items()):
            # A firing alert's endsAt lies far enough ahead that a worker restart or a
            # rebalance does not let Alertmanager resolve it (and page again after).
            expires = now + self.expiry_seconds
            ends = (inst.ends_at or now) if inst.state == "resolved" else expires
            alert: dict[str, Any] = {
                "labels": inst.labels,
                "annotations": inst.annotations,
                "startsAt": _rfc3339(inst.starts_at or now),
                "endsAt": _rfc3339(ends),
            }
            if self.generator_url:
                alert["generatorURL"] = f"{self.generator_url}/alerts?fingerprint={fp}"
            body.append(alert)
        return body

    def _forget_old_resolved(self) -> None:
        horizon = self.clock() - 15 * 60
        for fp in [fp for fp, i in self.alerts.items() if i.state == "resolved"]:
            if (self.alerts[fp].ends_at or 0) < horizon:
                del self.alerts[fp]

    async def _deliver_loop(self, url: str) -> None:
        backoff = 0.5
        changed = self._changed[url]
        while True:
            changed.clear()
            self._forget_old_resolved()
            body = self.payload()
            ok = True
            if body:
                ok = await self._post(url, body)
            if ok:
                backoff = 0.5
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=self.resend_seconds)
            else:
                # Back off even if alerts change meanwhile: the next post carries them all.
                await asyncio.sleep(backoff * (0.8 + 0.4 * random.random()))
                backoff = min(self.max_backoff_seconds, backoff * 2)

    async def _post(self, url: str, body: list[dict[str, Any]]) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(
                f"{url}/api/v2/alerts",
                data=codec.dumps(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status >= 300:
                    text = (await response.text())[:300]
                    log.warning("alertmanager %s answered %d: %s", url, response.status, text)
                    self.count(self.name, "failed", len(body))
                    return False
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning(
                "alertmanager %s unreachable (%s); will retry", url, exc or type(exc).__name__
            )
            self.count(self.name, "failed", len(body))
            return False
        self.delivered[url] = self.clock()
        self.count(self.name, "sent", len(body))
        return True
