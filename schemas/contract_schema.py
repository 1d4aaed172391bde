"""The event contract published as JSON Schema, generated from the fast path's Structs.

`schemas/page_load.schema.json` is this module's output, committed so that producers can
validate against it without installing expmon; tests/unit/schemas/test_structs.py keeps
it equal. Rewrite it with `python -m schemas.contract_schema` after changing a Struct.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas import codec
from schemas.events import WEB_VITAL_FIELDS
from schemas.structs import PageLoadEvent

PAGE_LOAD_SCHEMA_FILE = Path(__file__).with_name("page_load.schema.json")
_SCHEMA_NOTES = (
    "A page_load event of schema_version 1, as `expmon` accepts it (generated from "
    "schemas/structs.py PageLoadEvent; a test keeps this file equal to it). Also required, "
    "beyond what this schema states: `load_ms` or at least one web vital "
    f"({', '.join(WEB_VITAL_FIELDS)}) with a value; `occurred_at` in epoch milliseconds or "
    "an RFC 3339 time with a UTC offset, from 2000 on and at most EXPMON_MAX_FUTURE_SECONDS "
    "ahead; no control characters in `page` and `region`; a `page` with a route before any "
    "`?` or `#`. Other fields are accepted and kept as sent. A record value is one event or "
    "a JSON array of events."
)


def page_load_json_schema() -> dict[str, Any]:
    """The page_load event contract as JSON Schema (draft 2020-12), from `PageLoadEvent`.

    Where the Struct is stricter than the contract only to keep the fast path exact, the
    contract is published: other fields allowed (the validators keep them), durations
    any non-negative number (the Struct's int bound only routes huge ints elsewhere).
    """
    generated = msgspec.json.schema(PageLoadEvent)
    schema: dict[str, Any] = dict(generated["$defs"]["PageLoadEvent"])
    schema.pop("additionalProperties", None)
    properties = schema["properties"]
    for name in ("load_ms", *WEB_VITAL_FIELDS):
        properties[name] = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "page_load event (schema_version 1)",
        "description": _SCHEMA_NOTES,
    }


def write_page_load_schema(path: Path = PAGE_LOAD_SCHEMA_FILE) -> None:
    path.write_bytes(codec.dumps_indented(page_load_json_schema()) + b"\n")


if __name__ == "__main__":  # python -m schemas.contract_schema: rewrite the published file
    write_page_load_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else PAGE_LOAD_SCHEMA_FILE)
