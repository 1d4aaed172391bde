"""The registry of event families: the one list the worker, replay, metrics, settings
and alerting loop over.

A new family is its module (stage, accumulator, summaries, merger, collector, signals,
ending in `FAMILY = Family(...)`) plus one line in `FAMILIES` (see the README's "How to
add an event family").
"""

from __future__ import annotations

from collections.abc import Mapping

from expmon.alerting.signals import PIPELINE_SIGNALS, Signal
from expmon.families import checkout, logistics, page_load
from expmon.families.base import Family
from expmon.settings import Settings

FAMILIES: tuple[Family, ...] = (
    page_load.FAMILY,
    checkout.FAMILY,
    logistics.FAMILY,
)

BY_NAME: Mapping[str, Family] = {str(f.name): f for f in FAMILIES}

# What alert rules may read: every family's signals, then the pipeline's.
SIGNALS: Mapping[str, Signal] = {
    s.name: s for s in (*(s for f in FAMILIES for s in f.signals), *PIPELINE_SIGNALS)
}


def input_topics(settings: Settings) -> tuple[str, ...]:
    """The input topic of every family, in registry order."""
    return tuple(f.topic(settings) for f in FAMILIES)


def by_topic(settings: Settings) -> dict[str, Family]:
    return {f.topic(settings): f for f in FAMILIES}


def topics_by_family(settings: Settings) -> dict[str, str]:
    """family name -> input topic (the alert engine's replay hints)."""
    return {str(f.name): f.topic(settings) for f in FAMILIES}
