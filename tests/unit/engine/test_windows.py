from typing import Any

import pytest

from expmon.engine.windows import Checkpoint, PartitionWindows


class Count:
    def __init__(self, n: int = 0) -> None:
        self.n = n

    def merge(self, other: "Count") -> None:
        self.n += other.n

    def to_dict(self) -> Any:
        return self.n


W = 60_000
T0 = 1_700_000_040_000  # a window start


def make(lateness: int = 30_000) -> PartitionWindows[Count]:
    return PartitionWindows(0, W, lateness, Count, Count)


def feed(pw: PartitionWindows[Count], times: list[int]) -> list[str]:
    outcomes = []
    for i, t in enumerate(times):
        eid = f"e{t}"
        if pw.is_duplicate(eid, t):
            outcomes.append("duplicate")
        elif pw.observe(t):
            outcomes.append("late")
        else:
            pw.remember(eid, t)
            pw.accumulator(t, ("k",)).n += 1
            outcomes.append("accepted")
        pw.applied(i)
    return outcomes


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # in order
        ([T0, T0 + 1000, T0 + 2000], ["accepted"] * 3),
        # out of order within lateness
        ([T0 + 20_000, T0, T0 + 5_000], ["accepted"] * 3),
        # exactly at the watermark is on time; one ms earlier is late
        ([T0 + 40_000, T0 + 10_000, T0 + 9_999], ["accepted", "accepted", "late"]),
        # a repeat of an accepted event is a duplicate, even after its window closed
        ([T0, T0 + 100_000, T0], ["accepted", "accepted", "duplicate"]),
        # a repeat of a late event is late again
        ([T0 + 100_000, T0, T0], ["accepted", "late", "late"]),
    ],
)
def test_outcomes(times: list[int], expected: list[str]) -> None:
    assert feed(make(), times) == expected


def test_windows_close_once_when_watermark_passes_end() -> None:
    pw = make()
    feed(pw, [T0, T0 + 30_000])
    assert pw.close_ready() == []  # watermark T0 < end
    feed(pw, [T0 + W + 29_999])
    assert pw.close_ready() == []  # watermark end-1
    feed(pw, [T0 + W + 30_000])
    closed = pw.close_ready()
    assert [(c.start_ms, c.accumulators[("k",)].n) for c in closed] == [(T0, 2)]
    assert pw.close_ready() == []
    assert pw.closed_through_ms == T0 + W


def test_advance_watermark_closes_idle_windows() -> None:
    pw = make()
    feed(pw, [T0])
    pw.advance_watermark(T0 + 5 * W)
    assert [c.start_ms for c in pw.close_ready()] == [T0]
    assert feed(pw, [T0 + 2 * W]) == ["late"]


def test_checkpoint_restore_round_trip() -> None:
    pw = make()
    feed(pw, [T0, T0 + 1, T0 + W, T0 + W + 5])
    first = pw.checkpoint()
    store: dict[str, Any] = dict(first.writes)
    feed(pw, [T0 + 2 * W + 40_000])  # closes T0
    pw.close_ready()
    second = pw.checkpoint()
    for key in second.deletes:
        store.pop(key, None)
    store.update(second.writes)
    assert not any(k.startswith(f"win/0/{T0}/") for k in store)

    restored = make()
    restored.restore(store.items())
    assert restored.offset == pw.offset
    assert restored.watermark_ms == pw.watermark_ms
    assert {s: {k: a.n for k, a in w.items()} for s, w in restored.windows.items()} == {
        s: {k: a.n for k, a in w.items()} for s, w in pw.windows.items()
    }
    assert restored.is_duplicate(f"e{T0 + W}", T0 + W)


def test_restore_drops_windows_closed_before_crash() -> None:
    pw = make()
    feed(pw, [T0])
    store = dict(pw.checkpoint().writes)
    # the crash fell after the close was emitted and the meta written, before deletes
    pw.advance_watermark(T0 + W)
    pw.close_ready()
    store.update(pw.checkpoint().writes)
    restored = make()
    restored.restore(store.items())
    assert restored.windows == {}
    # the one part that was stored is deleted, after the meta
    assert [k.split("/")[:3] for k in restored.checkpoint().deletes] == [["win", "0", str(T0)]]


def test_dedup_ids_expire_behind_the_watermark() -> None:
    pw = make()
    feed(pw, [T0, T0 + 10 * W])
    pw.close_ready()
    assert T0 not in pw.ids


def test_a_checkpoint_cut_short_by_a_crash_counts_not_at_all() -> None:
    pw = make()
    feed(pw, [T0, T0 + 1000])
    store: dict[str, Any] = dict(pw.checkpoint().writes)
    feed(pw, [T0 + 2000, T0 + 3000])  # offsets 0, 1 again: make them new records
    pw.applied(5)
    second = pw.checkpoint()
    # the crash lands after the window parts and ids, before the meta
    store.update({k: v for k, v in second.writes.items() if not k.startswith("meta/")})
    restored = make()
    restored.restore(store.items())
    assert restored.offset == 1  # the first checkpoint's meta
    assert {k: a.n for k, a in restored.windows[T0].items()} == {("k",): 2}
    assert not restored.is_duplicate(f"e{T0 + 2000}", T0 + 2000)
    # its leftovers go, and new versions do not reuse their numbers
    cp = restored.checkpoint()
    assert set(cp.purges) == {k for k in second.writes if not k.startswith("meta/")}
    assert not set(cp.deletes) & set(cp.purges)
    assert not set(cp.writes) & set(second.writes) - {"meta/0"}


def apply(store: dict[str, Any], cp: Checkpoint, crash_before_deletes: bool = False) -> None:
    """A checkpoint in the order TableState applies it: purges, writes, deletes."""
    for key in cp.purges:
        store.pop(key, None)
    store.update(cp.writes)
    if not crash_before_deletes:
        for key in cp.deletes:
            store.pop(key, None)


def counts(pw: PartitionWindows[Count]) -> dict[int, int]:
    return {s: sum(a.n for a in w.values()) for s, w in pw.windows.items()}


def test_leftovers_of_a_cut_short_checkpoint_do_not_survive_a_second_crash() -> None:
    pw = make()
    feed(pw, [T0, T0 + 1000])
    store: dict[str, Any] = {}
    apply(store, pw.checkpoint())
    # checkpoint 2 (another window, new ids) is cut short before its meta
    feed(pw, [T0 + 2000, T0 + W + 1000])
    pw.applied(5)
    cut = pw.checkpoint()
    store.update({k: v for k, v in cut.writes.items() if not k.startswith("meta/")})
    restored = make()
    restored.restore(store.items())
    # the restart re-reads other records; its first checkpoint lands, its deletes do not
    feed(restored, [T0 + 3000])
    restored.applied(5)
    apply(store, restored.checkpoint(), crash_before_deletes=True)

    again = make()
    again.restore(store.items())
    # the new meta's version is above the leftovers': only the purge keeps them out
    assert counts(again) == counts(restored) == {T0: 3}
    assert not again.is_duplicate(f"e{T0 + 2000}", T0 + 2000)
    assert not again.is_duplicate(f"e{T0 + W + 1000}", T0 + W + 1000)
    assert again.is_duplicate(f"e{T0 + 3000}", T0 + 3000)


@pytest.mark.parametrize(
    ("spaces", "keys", "asks", "want"),
    [
        # per position: the window has a, b at position 1 and x, z at 0: c and y are a third
        (False, [("x", "a"), ("z", "b")], [(1, "a", ""), (1, "c", ""), (0, "y", "")],
         ["a", "other", "other"]),
        # per space and position: a payment's provider does not take a funnel place
        (True, [("funnel", "a"), ("funnel", "b"), ("payment", "p"), ("payment", "s")],
         [(1, "c", "funnel"), (1, "a", "payment"), (1, "p", "payment"), (1, "q", "other-space")],
         ["other", "other", "p", "q"]),
        (True, [], [(1, "anything", "funnel")], ["anything"]),
    ],
)  # fmt: skip
def test_label_caps_values_per_window(
    spaces: bool, keys: list[tuple[str, ...]], asks: list[tuple[int, str, str]], want: list[str]
) -> None:
    pw = make()
    pw.label_positions = (0, 1)
    pw.label_spaces = spaces
    for key in keys:
        pw.accumulator(T0, key).n += 1
    assert [pw.label(T0 + 5, pos, value, 2, space) for pos, value, space in asks] == want
    # another window is not capped by this one's values
    assert pw.label(T0 + W, 1, "c", 2, "funnel" if spaces else "") == "c"
    # a restore rebuilds the admitted values from the stored keys
    again = make()
    again.label_positions = (0, 1)
    again.label_spaces = spaces
    again.restore(pw.checkpoint().writes.items())
    assert [again.label(T0 + 5, pos, value, 2, space) for pos, value, space in asks] == want


# (page, device, region)-like keys, places 0 and 2 labelled with caps 2 and 1; `made`: keys
# made beforehand with `accumulator` as they are (a fixed value, like page loads' region
# `all`, counts among the window's values without being labelled)
@pytest.mark.parametrize(
    ("made", "asks", "want"),
    [
        ([], [("a", "m", "x"), ("a", "m", "x"), ("a", "d", "x")],
         [("a", "m", "x"), ("a", "m", "x"), ("a", "d", "x")]),
        ([], [("a", "m", "x"), ("b", "m", "y"), ("c", "m", "x"), ("a", "d", "z"), ("c", "d", "w")],
         [("a", "m", "x"), ("b", "m", "other"), ("other", "m", "x"), ("a", "d", "other"),
          ("other", "d", "other")]),
        # a fixed value took the only region place: a key with it is found as it is
        ([("a", "m", "all")], [("a", "m", "x"), ("a", "m", "all"), ("b", "d", "all")],
         [("a", "m", "other"), ("a", "m", "all"), ("b", "d", "all")]),
    ],
)  # fmt: skip
def test_labelled_accumulator_is_label_then_accumulator(
    made: list[tuple[str, ...]], asks: list[tuple[str, ...]], want: list[tuple[str, ...]]
) -> None:
    pw, twin = make(), make()
    for windows in (pw, twin):
        windows.label_positions = (0, 2)
        for key in made:
            windows.accumulator(T0, key).n += 1
    got = []
    for values in asks:
        acc = pw.labelled_accumulator(T0 + 5, values, (2, 1))
        acc.n += 1
        got.append(next(k for k, a in pw.windows[T0].items() if a is acc))
        # the step-by-step way on a twin, in the same order
        page = twin.label(T0 + 5, 0, values[0], 2)
        region = twin.label(T0 + 5, 2, values[2], 1)
        twin.accumulator(T0 + 5, (page, values[1], region)).n += 1
    assert got == want
    assert {k: a.n for k, a in pw.windows[T0].items()} == {
        k: a.n for k, a in twin.windows[T0].items()
    }
    # both marked their keys changed: the checkpoints write the same
    assert pw.checkpoint().writes == twin.checkpoint().writes


def test_labelled_accumulator_after_restore_keeps_the_stored_keys() -> None:
    pw = make()
    pw.label_positions = (0, 2)
    pw.labelled_accumulator(T0, ("a", "m", "x"), (1, 1)).n += 1
    again = make()
    again.label_positions = (0, 2)
    again.restore(pw.checkpoint().writes.items())
    again.labelled_accumulator(T0 + 1, ("b", "m", "y"), (1, 1)).n += 1
    again.labelled_accumulator(T0 + 2, ("a", "m", "x"), (1, 1)).n += 1
    assert {k: a.n for k, a in again.windows[T0].items()} == {
        ("a", "m", "x"): 2,
        ("other", "m", "other"): 1,
    }
