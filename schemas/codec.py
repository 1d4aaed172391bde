"""The one place JSON is encoded and decoded (orjson)."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(obj: Any) -> bytes:
    """Encode to compact JSON bytes; dict keys sorted so equal data gives equal bytes."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def dumps_indented(obj: Any) -> bytes:
    """`dumps` with two-space indentation, for files people read (the published JSON Schema)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    return orjson.loads(data)
