"""The runners' crash-ordering contract, with fake topics, producer and state.

A stage batch's dead letters and window partials are sent and flushed before its state
checkpoint is written; a merge batch's windows are sent and flushed, and evaluated by the
alert engine, before the merge state moves on. So a crash at any point repeats work
(idempotently) and never loses it: a checkpoint never covers output the broker lacks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from expmon.engine.stage import RawRecord
from expmon.exposition.metrics import Metrics, new_registry
from expmon.families.page_load import PageLoadStage, new_page_load_merger
from expmon.settings import Settings
from schemas import codec
from streams.runner import MergeRunner, StageRunner
from streams.runtime import Runtime, Topics

Log = list[tuple[str, ...]]


@dataclass
class FakeTopic:
    name: str
    log: Log

    async def send(self, key: Any = None, value: Any = None, **_kw: Any) -> asyncio.Future[None]:
        self.log.append(("send", self.name))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class FakeProducer:
    log: Log
    fail: bool = False

    async def flush(self) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.log.append(("flush",))


@dataclass
class FakeApp:
    producer: FakeProducer


@dataclass
class FakeState:
    log: Log
    store: dict[str, Any] = field(default_factory=dict)

    async def apply_checkpoint(self, partition: int, checkpoint: Any) -> int:
        self.log.append(("checkpoint", str(partition)))
        return len(checkpoint.writes)

    async def apply(self, partition: int, writes: dict[str, Any], deletes: Any = None) -> int:
        self.log.append(("state",))
        return len(writes)

    def items(self, belongs: Any = None) -> list[tuple[str, Any]]:
        return []

    def forget(self, belongs: Any) -> None:
        pass


@dataclass
class FakeAlerts:
    log: Log

    async def on_results(self, results: Any) -> None:
        self.log.append(("alerts",))


def runtime(log: Log, fail_flush: bool = False) -> Runtime:
    topics = Topics(*(FakeTopic(name, log) for name in ("dlq", "partials", "windows", "alerts")))
    app = FakeApp(FakeProducer(log, fail=fail_flush))
    return Runtime(Settings(), Metrics(new_registry()), app, topics, {"page-loads": 1})


def records() -> list[RawRecord]:
    """Page loads over 3 minutes (windows close) and one record that is not JSON."""
    start = (int(time.time() * 1000) // 60_000 - 10) * 60_000
    values = [
        codec.dumps(
            {
                "event_id": f"e{i}",
                "occurred_at": start + i * 1000,
                "schema_version": 1,
                "session_id": f"s{i % 7}",
                "device": "mobile",
                "platform": "web",
                "region": "eu-west",
                "page": "/",
                "load_ms": 900 + i,
            }
        )
        for i in range(180)
    ]
    values.insert(50, b"{not json")
    return [RawRecord(0, offset, None, value) for offset, value in enumerate(values)]


def stage_runner(log: Log, fail_flush: bool = False) -> StageRunner:
    stage = PageLoadStage(Settings(), "page-loads", 1)
    return StageRunner(runtime(log, fail_flush), stage, FakeState(log))  # type: ignore[arg-type]


def test_stage_flushes_dead_letters_and_partials_before_the_checkpoint() -> None:
    log: Log = []
    asyncio.run(stage_runner(log).handle(records()))
    kinds = [entry[0] for entry in log]
    assert ("send", "dlq") in log and ("send", "partials") in log and "checkpoint" in kinds
    flush = kinds.index("flush")
    assert kinds.count("flush") == 1
    assert all(k == "send" for k in kinds[:flush])  # every output before the flush
    assert all(k == "checkpoint" for k in kinds[flush + 1 :])  # state only after it


def test_no_checkpoint_when_the_flush_fails() -> None:
    log: Log = []
    with pytest.raises(ConnectionError):
        asyncio.run(stage_runner(log, fail_flush=True).handle(records()))
    assert ("send", "partials") in log
    assert not [entry for entry in log if entry[0] == "checkpoint"]


def test_merge_publishes_and_alerts_before_its_state_moves_on() -> None:
    stage = PageLoadStage(Settings(), "page-loads", 1, live=False)
    out = stage.process(records(), now_ms=int(time.time() * 1000))
    partials = out.partials + stage.finish().partials
    log: Log = []
    merge = MergeRunner(
        runtime(log),
        new_page_load_merger(Settings()),
        FakeState(log),
        FakeAlerts(log),  # type: ignore[arg-type]
    )
    asyncio.run(merge.handle(partials))
    kinds = [entry[0] for entry in log]
    assert ("send", "windows") in log
    assert kinds.count("flush") == 1
    flush = kinds.index("flush")
    assert set(kinds[:flush]) == {"send"}
    assert kinds[flush + 1 :] == ["alerts", "state"]
