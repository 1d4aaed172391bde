"""Event schemas (schema_version 1) and their validators: the one definition of valid input."""

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
