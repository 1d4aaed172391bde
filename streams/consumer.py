"""faust's aiokafka consumer with a bulk path for the stages' input topics.

faust hands every record to its agents one by one (a ConsumerMessage, an Event, a stream
queue, an ack each): ~80 µs per record, most of the worker's time on single-event records.
Here the records aiokafka fetched for a stage's input partition go to the stage in one call;
every other topic (window partials, changelogs) keeps faust's per-message path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.bulk import BulkOffsets, unread

log = logging.getLogger(__name__)

BulkHandler = Callable[[Sequence[Any]], Awaitable[None]]  # aiokafka ConsumerRecords of one TP
# A fetch: records per partition, the active partitions then, the generation it came back in
Fetched = tuple[Mapping[TP, list[Any]] | None, set[TP] | None, int]


class BulkConsumer(faust_aiokafka.Consumer):
    """Stage input partitions in bulk; commit the offset after the last applied record."""

    @property
    def bulk_handlers(self) -> dict[str, BulkHandler]:
        return cast(dict[str, BulkHandler], self.app.bulk_handlers)  # type: ignore[attr-defined]

    @property
    def bulk_offsets(self) -> BulkOffsets:
        offsets = self.__dict__.get("_bulk_offsets")
        if offsets is None:
            offsets = self.__dict__["_bulk_offsets"] = BulkOffsets()
        return cast(BulkOffsets, offsets)

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.bulk_handlers:
            return self.bulk_offsets.next_offset(tp)
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.bulk_offsets.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs Kafka
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        ahead: asyncio.Task[Fetched] | None = None
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                fetched = await (ahead or self._fetch())
                ahead = None
                records, active, generation = fetched
                if records and not self.should_stop:
                    # The next fetch (aiokafka unpacking it in faust's consumer thread, the
                    # broker's round trip) overlaps this delivery, which waits on the broker
                    # for its checkpoints: the event loop no longer idles between batches.
                    ahead = asyncio.ensure_future(self._fetch())
                    await self._deliver(records, active, generation)
                else:
                    await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("consumer drain failed: %r", exc)
            await self.crash(exc)
            raise
        finally:
            # Records it took are fetched again: faust seeks to the committed offsets
            # before it starts the fetcher again (recovery after every assignment).
            if ahead is not None:
                ahead.cancel()

    async def _fetch(self) -> Fetched:
        """One fetch and the generation it came back in (faust's getmany reads it then)."""
        records, active = await self._wait_next_records(1.0)
        return records, active, self.app.consumer_generation_id

    async def _deliver(
        self, records: Mapping[TP, list[Any]], active: set[TP] | None, generation: int
    ) -> None:
        if not self.flow_active:
            await self.perform_seek()  # faust's getmany does the same
            return
        handlers = self.bulk_handlers
        for tp, batch in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return  # a rebalance began: the rest is fetched again after it
            if not (active is None or tp in active or tp in self._buffered_partitions):
                continue
            handler = handlers.get(tp.topic)
            if handler is None:
                await self._deliver_per_message(tp, batch)
                continue
            fresh = unread(batch, self._read_offset[tp])
            if not fresh:
                continue
            await handler(fresh)
            last = fresh[-1].offset
            self._read_offset[tp] = last
            self.bulk_offsets.applied(tp, last)

    async def _deliver_per_message(self, tp: TP, batch: list[Any]) -> None:
        """faust's own path (read offsets, gaps, callback) for one TP's records."""
        callback = self.callback
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for n, record in enumerate(batch):
            if not self.flow_active:
                return
            if n % 100 == 99:
                await asyncio.sleep(0)
            offset = record.offset
            r_offset = self._read_offset[tp]
            if r_offset is not None and offset < r_offset:
                continue
            if r_offset and offset - r_offset > 1 and acks_enabled:
                await self._add_gap(tp, r_offset + 1, offset)
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
            self._read_offset[tp] = offset


class BulkTransport(faust_aiokafka.Transport):
    Consumer = BulkConsumer
