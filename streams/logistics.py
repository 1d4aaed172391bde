"""The logistics-events processor: ship-within-SLA, tracking staleness, deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from expmon.families.logistics import LogisticsStage
from streams.runner import StageRunner, register_stage

if TYPE_CHECKING:
    from streams.app import Runtime


def register(rt: Runtime) -> StageRunner:
    topic = rt.settings.topic_logistics
    stage = LogisticsStage(rt.settings, topic, rt.source_partitions[topic], live=rt.live)
    rt.metrics.logistics_stages.append(stage)
    return register_stage(rt, stage, agent_name="logistics-events", table_name="logistics-state")
