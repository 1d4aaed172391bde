"""The page-loads processor: batches of raw records into PageLoadStage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from expmon.families.page_load import PageLoadStage
from streams.runner import StageRunner, register_stage

if TYPE_CHECKING:
    from streams.app import Runtime


def register(rt: Runtime) -> StageRunner:
    topic = rt.settings.topic_page_loads
    stage = PageLoadStage(rt.settings, topic, rt.source_partitions[topic], live=rt.live)
    rt.metrics.load_histograms.append(stage.histogram)
    rt.metrics.page_load_stages.append(stage)
    return register_stage(rt, stage, agent_name="page-loads", table_name="page-load-state")
