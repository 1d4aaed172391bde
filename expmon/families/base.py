"""What an event family is made of: the one shape every family module fills in.

A family module (`page_load.py`, `checkout.py`, `logistics.py`) builds its stage,
accumulator, window summaries and merger on `expmon.engine`, and ends with a `FAMILY`
that hands them, with its metrics, rule signals and ground truth, to the registry
(`registry.py`). The worker, replay, metrics, alerting and the contract tests read
families only through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from expmon.alerting.signals import Signal
from expmon.engine.merge import WindowMerger
from expmon.engine.stage import WindowedStage
from expmon.settings import Settings
from expmon.sim.truth.base import FamilyTruth
from schemas.events import EventFamily

# (view, row) of the latest final views of one family: what its gauges show
Rows = Callable[[], Iterator[tuple[str, Mapping[str, Any]]]]
# the family's metrics, read at scrape time from its final views and from its stages
CollectorFactory = Callable[[Rows, Sequence[Any]], Collector]


@dataclass(frozen=True)
class Family:
    """One event family, everything the rest of the system needs of it."""

    name: EventFamily  # windows-topic keys, rules' `family`, metrics' `family` label
    topic_setting: str  # the Settings field naming the input topic (`topic_checkout`)
    stage: type[WindowedStage[Any]]  # stage 1: (settings, topic, partitions, live=)
    new_merger: Callable[[Settings], WindowMerger[Any]]  # stage 2
    collector: CollectorFactory  # its /metrics families
    signals: tuple[Signal, ...]  # what alert rules may read of it
    truth: FamilyTruth  # exact ground truth, computed independently (expmon.sim.truth)
    agent: str  # faust agent name (stable: it names the consumer's work)
    table: str  # faust table name (stable: it names the changelog topic)

    def topic(self, settings: Settings) -> str:
        topic: str = getattr(settings, self.topic_setting)
        return topic

    def new_stage(
        self, settings: Settings, source_partitions: int, live: bool = True
    ) -> WindowedStage[Any]:
        return self.stage(settings, self.topic(settings), source_partitions, live=live)


def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)
