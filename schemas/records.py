"""Kafka record value -> valid events and rejects.

A record's value is one JSON event or a JSON array of events. Each bad event (or a
bad record as a whole) becomes a `Rejected` carrying the bytes to dead-letter and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import codec
from schemas.errors import InvalidEvent
from schemas.events import BATCH_INDEX, Event, EventFamily, make_validators
from schemas.structs import PageLoadFastPath

# What validation adds to an event (event time, parsed promise, position in its batch):
# never part of the wire form.
ANNOTATIONS = ("_t", "_promised_ms", BATCH_INDEX)
__all__ = ["ANNOTATIONS", "BATCH_INDEX", "RecordDecoder", "Rejected", "strip_annotations"]


def strip_annotations(event: Event) -> Event:
    """The event as it was sent: validators' annotations removed (in place)."""
    for name in ANNOTATIONS:
        event.pop(name, None)
    return event


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str
    payload: bytes
    index: int | None  # position in a batch record; None for the record as a whole


class RecordDecoder:
    """Decodes and validates record values for one event family.

    `typed=False` leaves out the typed fast path (`schemas.structs`): the precise way alone,
    which the tests hold the fast path to."""

    def __init__(
        self,
        family: EventFamily,
        max_record_bytes: int = 1_000_000,
        max_events_per_record: int = 10_000,
        max_future_ms: int = 86_400_000,
        typed: bool = True,
    ) -> None:
        self.family = family
        self.max_record_bytes = max_record_bytes
        self.max_events_per_record = max_events_per_record
        self._validate = make_validators(max_future_ms)[family]
        # Typed decoding in C for the family on the hot path (schemas.structs); a record it
        # does not take goes the precise way below, which names the reasons.
        self._fast = (
            PageLoadFastPath(max_future_ms, max_events_per_record)
            if typed and family is EventFamily.PAGE_LOAD
            else None
        )

    def decode(
        self, value: bytes | None, now_ms: int, valid: list[Event], rejected: list[Rejected]
    ) -> int:
        """Append valid events and rejects to the given lists; return how many events it held.

        A record that cannot be split into events counts as one event (it is one thing lost).
        """
        if value is None:
            rejected.append(Rejected("empty_record", "record has no value", b"", None))
            return 1
        if len(value) > self.max_record_bytes:
            rejected.append(
                Rejected("oversize", f"{len(value)} bytes > {self.max_record_bytes}", value, None)
            )
            return 1
        if self._fast is not None:
            taken = self._fast.decode(value, now_ms, valid)
            if taken is not None:
                return taken
        try:
            decoded: Any = codec.loads(value)
        except codec.JSONDecodeError as exc:
            rejected.append(Rejected("not_json", str(exc)[:200], value, None))
            return 1
        if type(decoded) is dict:
            self._one(decoded, now_ms, valid, rejected, value, None)
            return 1
        if type(decoded) is list:
            return self.decode_events(decoded, now_ms, valid, rejected, value)
        rejected.append(
            Rejected("not_object", "value is neither an object nor an array", value, None)
        )
        return 1

    def decode_events(
        self,
        items: list[Any],
        now_ms: int,
        valid: list[Event],
        rejected: list[Rejected],
        raw: bytes | None = None,
    ) -> int:
        """The batch path on already decoded items (a collector's mapped beacons use it too);
        `raw` is what to dead-letter when the batch as a whole is rejected."""
        if not items:
            rejected.append(
                Rejected("empty_batch", "JSON array holds no events", raw or b"[]", None)
            )
            return 1
        if len(items) > self.max_events_per_record:
            rejected.append(
                Rejected(
                    "too_many_events",
                    f"{len(items)} events > {self.max_events_per_record}",
                    raw if raw is not None else codec.dumps(items),
                    None,
                )
            )
            return 1
        for index, item in enumerate(items):
            if type(item) is dict:
                self._one(item, now_ms, valid, rejected, None, index)
            else:
                rejected.append(
                    Rejected(
                        "not_object",
                        "batch item is not a JSON object",
                        codec.dumps(item),
                        index,
                    )
                )
        return len(items)

    def _one(
        self,
        event: Event,
        now_ms: int,
        valid: list[Event],
        rejected: list[Rejected],
        raw: bytes | None,
        index: int | None,
    ) -> None:
        try:
            valid.append(self._validate(event, now_ms))
            if index is not None:
                event[BATCH_INDEX] = index
        except InvalidEvent as exc:
            # Validators annotate as they go; dead-letter the event as it was sent.
            strip_annotations(event)
            payload = raw if raw is not None else codec.dumps(event)
            rejected.append(Rejected(exc.reason, exc.detail, payload, index))
