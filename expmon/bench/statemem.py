"""Memory of processor state for N open sessions and M open orders.

Measured in-process on the real stages (no broker) with tracemalloc, which counts the
Python allocations the state holds (RSS moves in pages and keeps freed heap, so it
cannot attribute bytes to entities): page views of distinct sessions that stay open
(bounce timeout not reached) and orders placed, not yet shipped. Process RSS is
reported beside it.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

from expmon.engine.stage import RawRecord
from expmon.families.logistics import LogisticsStage
from expmon.families.page_load import PageLoadStage
from expmon.settings import Settings
from schemas import codec


@dataclass(frozen=True)
class StateMemory:
    sessions: int
    orders: int
    session_bytes: float
    order_bytes: float
    rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "orders": self.orders,
            "bytes_per_session": round(self.session_bytes),
            "bytes_per_order": round(self.order_bytes),
            "rss_mb": round(self.rss_mb, 1),
        }


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _records(events: list[dict[str, Any]], partitions: int) -> list[RawRecord]:
    offsets = [0] * partitions
    out = []
    for i in range(0, len(events), 100):
        p = (i // 100) % partitions
        out.append(RawRecord(p, offsets[p], None, codec.dumps(events[i : i + 100])))
        offsets[p] += 1
    return out


def _common(i: int, t: int, session: str) -> dict[str, Any]:
    return {
        "event_id": f"m-{i}",
        "occurred_at": t,
        "schema_version": 1,
        "session_id": session,
        "device": ("mobile", "desktop", "tablet")[i % 3],
        "platform": "web",
        "region": ("eu-west", "us-east", "ap-south")[i % 3],
    }


def measure_state_memory(sessions: int = 100_000, orders: int = 10_000) -> StateMemory:
    settings = Settings()
    t0 = int(time.time() * 1000) - 3_600_000
    views = [
        {**_common(i, t0 + i, f"s-{i}"), "page": f"/p{i % 8}", "load_ms": 500.0 + i % 900}
        for i in range(sessions)
    ]
    placed = [
        {
            **_common(sessions + i, t0 + i, f"s-o{i}"),
            "order_id": f"ord-{i}",
            "status": "order_placed",
            "carrier": ("dhl", "ups")[i % 2],
            "warehouse": ("ams-1", "fra-1")[i % 2],
        }
        for i in range(orders)
    ]
    page_records, order_records = _records(views, 3), _records(placed, 3)
    del views, placed
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        pages = PageLoadStage(settings, "page-loads", 3, live=False)
        pages.process(page_records)
        gc.collect()
        after_sessions = tracemalloc.get_traced_memory()[0]
        logistics = LogisticsStage(settings, "logistics-events", 3, live=False)
        logistics.process(order_records)
        gc.collect()
        after_orders = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert pages.open_sessions() == sessions and logistics.open_orders() == orders
    return StateMemory(
        sessions=sessions,
        orders=orders,
        session_bytes=(after_sessions - base) / sessions,
        order_bytes=(after_orders - after_sessions) / orders,
        rss_mb=rss_bytes() / 2**20,
    )
