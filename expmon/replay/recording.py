"""Recorded topic ranges: NDJSON files (gzip when the name ends in .gz), no Kafka here.

Line 1 is a header: `{"expmon_recording": 1, "topics": {"page-loads": 3, ...}}` with
each topic's partition count. Every further line is one record with its Kafka
coordinates: `{"topic", "partition", "offset", "timestamp_ms", "key", "value",
"headers"}`. Key and value are kept as text when they are UTF-8 (events are JSON, so a
recording stays greppable) and as base64 under `key_b64` / `value_b64` otherwise, so any
record, a broken one too, comes back byte for byte.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

import msgspec

from expmon.errors import ExpmonError
from expmon.replay.session import ReplayRecord
from schemas import codec

FORMAT_VERSION = 1


class RecordingError(ExpmonError):
    """A recording file is missing, unreadable or not a recording."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "b")  # type: ignore[return-value]
    return open(path, mode + "b")


def _put_bytes(line: dict[str, Any], name: str, data: bytes | None) -> None:
    if data is None:
        line[name] = None
        return
    try:
        line[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        line[f"{name}_b64"] = base64.b64encode(data).decode("ascii")


def _get_bytes(line: Mapping[str, Any], name: str, b64_name: str) -> bytes | None:
    # Once per key and value of every record replayed: no name built per call.
    encoded = line.get(b64_name)
    if encoded is not None:
        return base64.b64decode(encoded)
    text = line.get(name)
    if type(text) is str:
        return text.encode("utf-8")
    return None if text is None else str(text).encode("utf-8")


def encode_line(record: ReplayRecord) -> bytes:
    line: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
    }
    _put_bytes(line, "key", record.key)
    _put_bytes(line, "value", record.value)
    if record.headers:
        line["headers"] = [[k, base64.b64encode(v).decode("ascii")] for k, v in record.headers]
    return codec.dumps(line) + b"\n"


class _PlainLine(msgspec.Struct, gc=False):
    """A line as `encode_line` writes it for a record with UTF-8 key and value and no
    headers (nearly every record): decoded and typed in one C call."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None = None
    value: str | None = None
    key_b64: str | None = None
    value_b64: str | None = None
    headers: list[Any] | None = None


_PLAIN_LINE = msgspec.json.Decoder(_PlainLine)


def decode_line(raw: bytes) -> ReplayRecord:
    """The record of one line; a line the typed decoder does not take (base64, headers,
    loosely typed fields, a broken line) goes the general way, which names the problem."""
    try:
        line = _PLAIN_LINE.decode(raw)
        if line.key_b64 is None and line.value_b64 is None and not line.headers:
            key, value = line.key, line.value
            return ReplayRecord(
                line.topic,
                line.partition,
                line.offset,
                line.timestamp_ms,
                None if key is None else key.encode("utf-8"),
                None if value is None else value.encode("utf-8"),
            )
    except (msgspec.DecodeError, ValueError):
        pass
    return _decode_any_line(raw)


def _decode_any_line(raw: bytes) -> ReplayRecord:
    line = codec.loads(raw)
    listed = line.get("headers")
    headers = tuple((str(k), base64.b64decode(v)) for k, v in listed) if listed else ()
    return ReplayRecord(
        topic=str(line["topic"]),
        partition=int(line["partition"]),
        offset=int(line["offset"]),
        timestamp_ms=int(line["timestamp_ms"]),
        key=_get_bytes(line, "key", "key_b64"),
        value=_get_bytes(line, "value", "value_b64"),
        headers=headers,
    )


class RecordingWriter(AbstractContextManager["RecordingWriter"]):
    """Writes the header, then records in the order given."""

    def __init__(self, path: Path, partitions: Mapping[str, int]) -> None:
        self.path = path
        self.count = 0
        self._file = _open(path, "w")
        header = {"expmon_recording": FORMAT_VERSION, "topics": dict(partitions)}
        self._file.write(codec.dumps(header) + b"\n")

    def write(self, record: ReplayRecord) -> None:
        self._file.write(encode_line(record))
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingReader(AbstractContextManager["RecordingReader"]):
    """Reads a recording: `partitions` from the header, then `batches()` of records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise RecordingError(path, "no such file")
        self._file = _open(path, "r")
        try:
            header = codec.loads(self._file.readline())
            self.partitions: dict[str, int] = {str(t): int(n) for t, n in header["topics"].items()}
            if header.get("expmon_recording") != FORMAT_VERSION:
                raise RecordingError(path, f"unsupported recording format {header!r}")
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._file.close()
            raise RecordingError(path, f"not an expmon recording ({exc})") from exc
        self.line = 1

    def batches(
        self, size: int = 2000, max_bytes: int = 4 * 1024 * 1024
    ) -> Iterator[list[ReplayRecord]]:
        """Up to `size` records and about `max_bytes` of lines a batch (memory stays flat
        whether a record holds one event or a hundred)."""
        batch: list[ReplayRecord] = []
        held = 0
        try:
            for raw in self._file:
                self.line += 1
                if raw.isspace():  # a blank line (`strip` would copy every line to tell)
                    continue
                batch.append(decode_line(raw))
                held += len(raw)
                if len(batch) >= size or held >= max_bytes:
                    yield batch
                    batch = []
                    held = 0
        except (OSError, EOFError, KeyError, ValueError, TypeError) as exc:
            raise RecordingError(self.path, f"line {self.line}: {exc}") from exc
        if batch:
            yield batch

    def close(self) -> None:
        self._file.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_records(path: Path) -> int:
    """Records in a recording (lines after the header), counted without decoding them:
    the progress bar's total must not cost a second pass of JSON parsing."""
    if not path.is_file():
        raise RecordingError(path, "no such file")
    lines = 0
    with _open(path, "r") as file:
        while chunk := file.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(0, lines - 1)
