"""A bounded reader for Wyoming frames.

A Wyoming event on the wire is one JSON header line (`type`, optional `data`, `data_length`,
`payload_length`, `version`), then `data_length` bytes of JSON object merged over the header's `data`, then
`payload_length` bytes of binary payload (audio). `wyoming.event.async_read_event` trusts every length a peer
declares; a server facing the network must not, so `read_event` checks each one against `FrameLimits` before
reading it and raises only `ProtocolError` subclasses:

- `FrameTooLarge`: a header line, data section or payload beyond its limit (nothing beyond the limit is read);
- `MalformedFrame`: not JSON, not an object, no string `type`, a length that is not a non-negative integer,
  a data section that is not a JSON object;
- `TruncatedFrame`: the peer closed the connection inside a frame.

A clean end of stream between frames returns None. Writing uses the package's own `async_write_event`.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from wyoming.event import Event

MAX_TYPE_CHARS = 64


class ProtocolError(Exception):
    """The peer broke the framing; the connection cannot continue. `code` goes into the error event."""

    code = "protocol-error"


class FrameTooLarge(ProtocolError):
    code = "frame-too-large"


class MalformedFrame(ProtocolError):
    code = "malformed-frame"


class TruncatedFrame(ProtocolError):
    code = "truncated-frame"


@dataclass(frozen=True)
class FrameLimits:
    max_header_bytes: int = 16 * 1024  # the JSON line, newline included (real headers are ~100 bytes)
    max_data_bytes: int = 64 * 1024
    max_payload_bytes: int = 1024 * 1024  # one audio chunk (HA sends ~2-4 KiB)


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedFrame(f"{key} must be a non-negative integer, got {value!r}"[:200])
    if value > limit:
        raise FrameTooLarge(f"{key} {value} exceeds the limit of {limit} bytes")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MalformedFrame(f"{what} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise MalformedFrame(f"{what} is not a JSON object")
    return doc


async def _read_exactly(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as e:
        raise TruncatedFrame(f"connection closed inside the {what} ({len(e.partial)} of {n} bytes)") from None


async def read_event(reader: asyncio.StreamReader, limits: FrameLimits = FrameLimits()) -> Event | None:
    """The next event, or None at a clean end of stream. Raises only ProtocolError subclasses (and
    ConnectionError / CancelledError from the transport)."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise TruncatedFrame(f"connection closed inside a header line ({len(e.partial)} bytes)") from None
    except asyncio.LimitOverrunError:
        raise FrameTooLarge(f"header line longer than the stream limit ({limits.max_header_bytes} bytes "
                            f"allowed)") from None
    if len(line) > limits.max_header_bytes:
        raise FrameTooLarge(f"header line of {len(line)} bytes exceeds the limit of {limits.max_header_bytes}")
    header = _json_object(line, "the header line")
    event_type = header.get("type")
    if not isinstance(event_type, str) or not event_type or len(event_type) > MAX_TYPE_CHARS:
        raise MalformedFrame(f"type must be a non-empty string of at most {MAX_TYPE_CHARS} characters")
    data = header.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise MalformedFrame("data in the header line is not a JSON object")
    data_length = _length(header, "data_length", limits.max_data_bytes)
    payload_length = _length(header, "payload_length", limits.max_payload_bytes)
    if data_length:
        data = {**data, **_json_object(await _read_exactly(reader, data_length, "data section"), "the data section")}
    payload = await _read_exactly(reader, payload_length, "payload") if payload_length else None
    return Event(type=event_type, data=data, payload=payload)


def new_reader(limits: FrameLimits = FrameLimits()) -> asyncio.StreamReader:
    """A StreamReader whose own line limit matches `limits` (for tests and in-memory parsing)."""
    return asyncio.StreamReader(limit=limits.max_header_bytes)
