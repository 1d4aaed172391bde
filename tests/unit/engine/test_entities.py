from typing import Any

import pytest

from expmon.engine.entities import DUE, SNAPSHOT_EVERY, EntityTable
from expmon.engine.windows import Checkpoint
from tests.unit.helpers import CheckpointStore


def fire(table: EntityTable, watermark: int) -> list[tuple[int, str]]:
    fired = []
    for due, entity_id, entity in table.due(watermark):
        fired.append((due, entity_id))
        table.put(entity_id, entity)
    return fired


@pytest.mark.parametrize(
    ("deadlines", "watermark", "expected"),
    [
        ({"a": 1500, "b": 1200}, 1400, [(1200, "b")]),
        ({"a": 1500, "b": 1200}, 1500, [(1200, "b"), (1500, "a")]),
        ({"b": 5000, "a": 5000}, 9999, [(5000, "a"), (5000, "b")]),  # ties by id
        ({"a": 2000}, 1999, []),
    ],
)
def test_fires_in_deadline_order_once(
    deadlines: dict[str, int], watermark: int, expected: Any
) -> None:
    table = EntityTable(0)
    for entity_id, due in deadlines.items():
        table.put(entity_id, {DUE: due})
    assert fire(table, watermark) == expected
    assert fire(table, watermark) == []


def test_moved_deadline_fires_only_at_the_new_time() -> None:
    table = EntityTable(0)
    table.put("s", {DUE: 1000})
    for t in range(1000, 60_000, 1000):  # a session with a page view every second
        table.put("s", {DUE: t + 30_000})
    # one entry per entity, not one per move
    assert sum(len(members) for members in table._buckets.values()) == 1
    assert fire(table, 88_999) == []
    assert fire(table, 89_000) == [(89_000, "s")]


def test_deleted_entity_never_fires_and_checkpoint_round_trip() -> None:
    table = EntityTable(3)
    table.put("gone", {DUE: 10})
    table.put("kept", {DUE: 20, "x": 1})
    table.delete("gone")
    cp = Checkpoint()
    table.checkpoint(cp)
    assert list(cp.writes.values()) == [{"gone": None, "kept": {DUE: 20, "x": 1}}]
    restored = EntityTable(3)
    restored.restore(cp.writes.items())
    assert restored.items == {"kept": {DUE: 20, "x": 1}}
    assert fire(restored, 100) == [(20, "kept")]


@pytest.mark.parametrize("cut", [None, "after_chunks", "before_deletes"])
def test_snapshots_replace_deltas_and_survive_an_interrupted_write(cut: str | None) -> None:
    table = EntityTable(0)
    store = CheckpointStore()
    for batch in range(SNAPSHOT_EVERY + 5):
        for i in range(50):
            table.put(f"e{(batch * 7 + i) % 300}", {DUE: None, "n": batch})
        if batch % 3 == 0:
            table.delete(f"e{batch}")
        cp = Checkpoint()
        table.checkpoint(cp)
        if cut and any("/s/" in k for k in cp.writes):
            writes = list(cp.writes.items())
            if cut == "after_chunks":  # crash before the done marker
                writes = [(k, v) for k, v in writes if not k.endswith("/done")]
                store.data.update(writes)
                break
            store.data.update(writes)  # crash before the deletes
            break
        store.apply(cp)
    restored = EntityTable(0)
    restored.restore(store.data.items())
    assert restored.items == table.items
    if cut is None:
        assert not any("/d/" in k for k in store.data if int(k.split("/")[3]) < table._seq - 10)


def test_restored_table_keeps_writing_after_its_snapshot() -> None:
    table = EntityTable(0)
    store = CheckpointStore()
    for batch in range(SNAPSHOT_EVERY * 2 + 3):
        table.put(f"e{batch % 40}", {DUE: batch})
        cp = Checkpoint()
        table.checkpoint(cp)
        store.apply(cp)
    restored = EntityTable(0)
    restored.restore(store.data.items())
    restored.put("new", {DUE: 1})
    cp = Checkpoint(deletes=restored.take_pending_deletes())
    restored.checkpoint(cp)
    store.apply(cp)
    again = EntityTable(0)
    again.restore(store.data.items())
    assert again.items == restored.items


def test_leftovers_of_a_cut_short_checkpoint_do_not_survive_a_second_crash() -> None:
    table = EntityTable(0)
    store = CheckpointStore()
    table.put("a", {DUE: 10})
    cp = Checkpoint()
    table.checkpoint(cp)
    store.apply(cp)
    meta_seq = table.seq
    # the next checkpoint's delta lands, its meta (which would vouch for it) does not
    table.put("b", {DUE: 20})
    table.delete("a")
    cut = Checkpoint()
    table.checkpoint(cut)
    store.data.update(cut.writes)

    restored = EntityTable(0)
    restored.restore(store.data.items(), max_seq=meta_seq)
    assert restored.items == {"a": {DUE: 10}}
    restored.put("c", {DUE: 30})
    cp = Checkpoint(deletes=restored.take_pending_deletes(), purges=restored.take_orphans())
    restored.checkpoint(cp)
    assert cp.purges == list(cut.writes)
    # crash after the new checkpoint's writes (and the meta vouching for restored.seq),
    # before its deletes: the purge went first, so the leftover delta is gone
    store.apply(Checkpoint(writes=cp.writes, purges=cp.purges))

    again = EntityTable(0)
    again.restore(store.data.items(), max_seq=restored.seq)
    assert again.items == restored.items == {"a": {DUE: 10}, "c": {DUE: 30}}


def test_touched_entity_is_checkpointed_and_fires_at_its_later_deadline() -> None:
    table = EntityTable(0)
    session = {DUE: 30_000, "views": 1}
    table.put("s", session)
    table.checkpoint(Checkpoint())  # nothing pending after this
    session["views"] = 2
    session[DUE] = 95_000  # later: the lazy bucket entry is re-filed when it comes up
    table.touch("s", session)
    cp = Checkpoint()
    table.checkpoint(cp)
    assert list(cp.writes.values()) == [{"s": {DUE: 95_000, "views": 2}}]
    assert fire(table, 94_999) == []
    assert fire(table, 95_000) == [(95_000, "s")]


# operations on entities "a" and "b" in order; then what one checkpoint must write
@pytest.mark.parametrize(
    ("ops", "want"),
    [
        ([("put", "a", 1), ("touch", "a", 2)], {"a": {"v": 2}}),
        ([("put", "a", 1), ("delete", "a", 0)], {"a": None}),
        ([("put", "a", 1), ("delete", "a", 0), ("put", "a", 3)], {"a": {"v": 3}}),
        ([("put", "b", 1), ("put", "a", 1), ("put", "b", 4)], {"a": {"v": 1}, "b": {"v": 4}}),
        ([("delete", "a", 0)], {}),  # nothing stored: nothing changed
    ],
)  # fmt: skip
def test_a_checkpoint_writes_each_changed_entity_as_it_is_then(
    ops: list[tuple[str, str, int]], want: dict[str, Any]
) -> None:
    table = EntityTable(0)
    for op, entity_id, value in ops:
        if op == "put":
            table.put(entity_id, {"v": value})
        elif op == "touch":
            entity = table.get(entity_id)
            assert entity is not None
            entity["v"] = value
            table.touch(entity_id, entity)
        else:
            table.delete(entity_id)
    cp = Checkpoint()
    table.checkpoint(cp)
    assert [list(chunk) for chunk in cp.writes.values()] == ([sorted(want)] if want else [])
    assert {k: v for chunk in cp.writes.values() for k, v in chunk.items()} == want
