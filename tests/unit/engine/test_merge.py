"""WindowMerger's rolling views: the block cache gives plain merges, restarts change nothing."""

import random
from typing import Any

import pytest

from expmon.engine.merge import VIEW_BLOCK, WindowMerger
from expmon.families.page_load import PageLoadAccumulator, summarize_rows
from schemas import codec

W = 60_000
T0 = 1_763_000_000_000 - 1_763_000_000_000 % (VIEW_BLOCK * W) + 2 * W  # not block-aligned
VIEWS = (("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60))


class Tally:
    """An integer accumulator: merges are exact, so any merge order gives equal results."""

    def __init__(self, values: dict[str, int] | None = None) -> None:
        self.values = dict(values or {})

    def merge(self, other: "Tally") -> None:
        for k, n in other.values.items():
            self.values[k] = self.values.get(k, 0) + n

    def to_dict(self) -> Any:
        return self.values


def tally_rows(view: str, start: int, end: int, accs: dict[Any, Any]) -> list[dict[str, Any]]:
    return [{"key": list(k), **accs[k].values} for k in sorted(accs)]


def partial(start: int, partition: int, entries: list[Any]) -> dict[str, Any]:
    return {"kind": "partial", "family": "f", "partition": partition, "start": start,
            "end": start + W, "part": 0, "entries": entries}  # fmt: skip


def progress(partition: int, through: int) -> dict[str, Any]:
    return {"kind": "progress", "family": "f", "partition": partition, "partitions": 2,
            "closed_through": through}  # fmt: skip


def traffic(windows: int, seed: int, acc: Any) -> list[list[dict[str, Any]]]:
    """Per minute: partials of two partitions (some minutes empty), then progress."""
    rng = random.Random(seed)
    batches = []
    for i in range(windows):
        start = T0 + i * W
        msgs = []
        if rng.random() > 0.15:  # a gap now and then: a window without data
            for p in (0, 1):
                entries = [[[k], acc(rng)] for k in rng.sample(["a", "b", "c", "d"], 2)]
                msgs.append(partial(start, p, entries))
        msgs += [progress(0, start + W), progress(1, start + W)]
        batches.append(msgs)
    return batches


def naive_views(batches: list[list[dict[str, Any]]]) -> dict[tuple[str, int], list[Any]]:
    """Every view as the plain sum of its base windows' partials."""
    base: dict[int, dict[str, dict[str, int]]] = {}
    for msgs in batches:
        for m in msgs:
            if m["kind"] == "partial":
                window = base.setdefault(m["start"], {})
                for (key,), values in m["entries"]:
                    tally = window.setdefault(key, {})
                    for k, n in values.items():
                        tally[k] = tally.get(k, 0) + n
    out: dict[tuple[str, int], list[Any]] = {}
    last_end = T0 + len(batches) * W
    for end in range(T0 + W, last_end + W, W):
        for name, k in VIEWS:
            merged: dict[str, dict[str, int]] = {}
            for s in range(end - k * W, end, W):
                for key, values in base.get(s, {}).items():
                    tally = merged.setdefault(key, {})
                    for v, n in values.items():
                        tally[v] = tally.get(v, 0) + n
            if any(s in base for s in range(end - k * W, end, W)):
                out[(name, end)] = [{"key": [key], **merged[key]} for key in sorted(merged)]
    return out


def tally_merger() -> WindowMerger[Tally]:
    return WindowMerger("f", W, VIEWS, Tally, Tally, tally_rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("per_apply", [1, 7, 200])
def test_views_equal_plain_merges_of_their_windows(seed: int, per_apply: int) -> None:
    batches = traffic(130, seed, lambda rng: {"n": rng.randint(1, 9), "m": rng.randint(0, 3)})
    merger = tally_merger()
    got = {}
    for i in range(0, len(batches), per_apply):
        messages = [m for msgs in batches[i : i + per_apply] for m in msgs]
        for r in merger.apply(messages).results:
            assert (r.view, r.end_ms) not in got, "a view emitted twice"
            got[(r.view, r.end_ms)] = r.rows
    expected = naive_views(batches)
    # views whose ends the merger reached (the last window's views and those before it)
    assert got == {k: v for k, v in expected.items() if k[1] <= T0 + len(batches) * W}
    assert len(got) > 300


def page_load_acc(rng: random.Random) -> Any:
    acc = PageLoadAccumulator()
    for _ in range(rng.randint(1, 30)):
        acc.add(round(rng.lognormvariate(6.5, 0.6), 1), 3000, 1800, f"e{rng.randrange(10**6)}")
    return acc.to_dict()


def test_a_restarted_merger_emits_the_same_bytes() -> None:
    """Float sums depend on merge order: the cache must not change the order after a restart."""
    batches = traffic(100, 5, page_load_acc)

    def new() -> WindowMerger[PageLoadAccumulator]:
        return WindowMerger(
            "f", W, VIEWS, PageLoadAccumulator, PageLoadAccumulator.from_dict,
            lambda v, s, e, accs: summarize_rows(v, s, e, {(k[0], "d", "r"): a
                                                           for k, a in accs.items()}),
        )  # fmt: skip

    whole = new()
    expected = [codec.dumps(r.to_dict()) for msgs in batches for r in whole.apply(msgs).results]

    merger = new()
    table: dict[str, Any] = {}
    got = []
    for i, msgs in enumerate(batches):
        if i in (23, 61, 62):  # crash and restore from the state written so far
            merger = new()
            merger.restore(codec.loads(codec.dumps(table)).items())
        out = merger.apply(msgs)
        table.update(out.writes)
        for key in out.deletes:
            table.pop(key, None)
        got += [codec.dumps(r.to_dict()) for r in out.results]
    assert got == expected
