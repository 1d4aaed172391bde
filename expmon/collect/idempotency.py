"""Recently produced event ids per family: a retried beacon or batch is not produced twice.

Bounded LRU: an id is remembered only once the broker acknowledged its event, so a request
that failed (503) can be retried and goes through. Per process: behind a load balancer a
retry may reach another replica; the worker's own de-duplication by `event_id` then
counts it as a duplicate, so the figures stay right either way.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        ids = self._ids
        if event_id in ids:
            ids.move_to_end(event_id)
            return
        ids[event_id] = None
        if len(ids) > self.capacity:
            ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)
