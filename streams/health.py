"""What the broker last said about the input partitions, and when: reachability and idleness.

A worker asks the broker for its input partitions' high-water marks every second, with a
bounded wait. From the answers (and their absence):

- the broker is *reachable* while an answer came within `stale_after` seconds; otherwise
  `/readyz` says so and the pipeline rule `KafkaUnreachable` can fire;
- a partition is *idle* only when the broker is reachable, this worker applied every
  record up to the high-water mark, and the mark has not moved for the idle timeout. A
  partition is never idle because records stopped arriving (an outage, a slow fetch, a
  rebalance): only the broker can say there is nothing more.

Idleness only lets a partition's open windows be shown early (`WindowedStage.tick`); it
never decides that an event is late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class BrokerProbe:
    stale_after_s: float = 10.0
    last_ok: float | None = None  # monotonic time of the last answer
    first_failure: float | None = None  # since when answers have been missing
    marks: dict[TopicPartition, int] = field(default_factory=dict)
    changed_at: dict[TopicPartition, float] = field(default_factory=dict)

    def record(self, marks: Mapping[TopicPartition, int], now: float) -> None:
        """An answer: the high-water marks of (some) partitions."""
        self.last_ok = now
        self.first_failure = None
        for tp, mark in marks.items():
            if self.marks.get(tp) != mark:
                self.marks[tp] = mark
                self.changed_at[tp] = now

    def failed(self, now: float) -> None:
        """No answer within the bound (or an error)."""
        if self.first_failure is None:
            self.first_failure = now

    def forget(self, keep: set[TopicPartition]) -> None:
        """Drop partitions no longer assigned: a returning one starts its idle clock anew."""
        for tp in [tp for tp in self.marks if tp not in keep]:
            del self.marks[tp]
            self.changed_at.pop(tp, None)

    def reachable(self, now: float) -> bool:
        return self.last_ok is not None and now - self.last_ok <= self.stale_after_s

    def unreachable_seconds(self, now: float) -> float:
        """How long answers have been missing (0 while reachable)."""
        if self.reachable(now):
            return 0.0
        since = self.first_failure if self.last_ok is None else self.last_ok
        return 0.0 if since is None else now - since

    def lag(self, tp: TopicPartition, applied_offset: int) -> int | None:
        """Records on the broker past what was applied; None when the mark is unknown."""
        mark = self.marks.get(tp)
        return None if mark is None else max(0, mark - applied_offset - 1)

    def idle(
        self, tp: TopicPartition, applied_offset: int, idle_after_s: float, now: float
    ) -> bool:
        if not self.reachable(now):
            return False
        lag = self.lag(tp, applied_offset)
        if lag is None or lag > 0:
            return False
        return now - self.changed_at[tp] >= idle_after_s
