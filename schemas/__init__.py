"""Event schemas (schema_version 1) and their validators: the one definition of valid input.

The contract's leaf: the wire codec (`codec`), event time (`eventtime`), field rules
(`events`) and record decoding (`records`). Imports nothing from `expmon`."""

from schemas.events import (
    CHECKOUT_STEPS,
    DEVICES,
    LOGISTICS_STATUSES,
    PLATFORMS,
    EventFamily,
    validate_checkout,
    validate_logistics,
    validate_page_load,
    validator_for,
)
from schemas.records import RecordDecoder, Rejected

__all__ = [
    "CHECKOUT_STEPS",
    "DEVICES",
    "LOGISTICS_STATUSES",
    "PLATFORMS",
    "EventFamily",
    "RecordDecoder",
    "Rejected",
    "validate_checkout",
    "validate_logistics",
    "validate_page_load",
    "validator_for",
]
