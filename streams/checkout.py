"""The checkout-events processor: funnel, abandonment and payments (CheckoutStage)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from expmon.families.checkout import CheckoutStage
from streams.runner import StageRunner, register_stage

if TYPE_CHECKING:
    from streams.app import Runtime


def register(rt: Runtime) -> StageRunner:
    topic = rt.settings.topic_checkout
    stage = CheckoutStage(rt.settings, topic, rt.source_partitions[topic], live=rt.live)
    rt.metrics.checkout_stages.append(stage)
    return register_stage(rt, stage, agent_name="checkout-events", table_name="checkout-state")
