"""State entries on a faust table (in-memory store, changelog topic) at explicit partitions.

A stage-1 batch spans several input partitions, so the usual `table[key] = value` (which
takes the partition of "the current event") does not fit. Entries are written straight
to the store and to the changelog partition of the input partition they belong to;
faust's co-partitioned assignment and recovery then bring them back with that partition.

Writes are published directly and awaited until the broker has them, rather than left
in faust's `send_soon` buffer: faust's commit flushes that buffer only for a moment, so
input offsets could be committed before the state that covers them is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from expmon.engine.windows import Checkpoint
from schemas import codec


class TableState:
    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def _store(self) -> dict[Any, Any]:
        data: dict[Any, Any] = self.table.data.data
        return data

    async def _publish(self, partition: int, raw_key: bytes, raw_value: bytes | None) -> Any:
        return await self.table.changelog_topic.send(
            key=raw_key,
            value=raw_value,
            partition=partition,
            key_serializer="raw",
            value_serializer="raw",
        )

    async def apply(
        self,
        partition: int,
        writes: dict[str, Any],
        deletes: list[str] | None = None,
        purges: list[str] | None = None,
    ) -> int:
        """Purge (durably), write in order (a checkpoint's meta last), then delete; return
        when durable.

        A crash in between leaves superseded records, which restore ignores, never a hole.
        Purged records must not outlive the meta that follows them (see `Checkpoint`), so
        the writes wait until the broker has their tombstones.
        """
        purged = await self._tombstones(partition, purges or ())
        if purged:
            await asyncio.gather(*purged)
        pending = []
        for key, value in writes.items():
            raw_key, raw_value = key.encode(), codec.dumps(value)
            self._store[raw_key] = raw_value
            pending.append(await self._publish(partition, raw_key, raw_value))
        pending += await self._tombstones(partition, deletes or ())
        if pending:
            await asyncio.gather(*pending)
        return len(purged) + len(pending)

    async def _tombstones(self, partition: int, keys: Iterable[str]) -> list[Any]:
        """Drop the keys held locally and publish their tombstones; the send futures."""
        sent = []
        for key in keys:
            raw_key = key.encode()
            if self._store.pop(raw_key, None) is not None:
                sent.append(await self._publish(partition, raw_key, None))
        return sent

    async def apply_checkpoint(self, partition: int, checkpoint: Checkpoint) -> int:
        return await self.apply(partition, checkpoint.writes, checkpoint.deletes, checkpoint.purges)

    def items(
        self, belongs: Callable[[str], bool] = lambda _key: True
    ) -> Iterator[tuple[str, Any]]:
        for raw_key, raw_value in list(self._store.items()):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            if raw_value is not None and belongs(key):
                yield key, codec.loads(raw_value)

    def forget(self, belongs: Callable[[str], bool]) -> None:
        """Drop local copies (not the changelog) of entries of a revoked partition."""
        for raw_key in [
            k for k in self._store if belongs(k.decode() if isinstance(k, bytes) else str(k))
        ]:
            del self._store[raw_key]
