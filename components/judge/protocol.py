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
import re
from dataclasses import dataclass
from typing import Any, Iterator

from wyoming.event import Event

MAX_TYPE_CHARS = 64
SEEN_HEADERS = 16  # FrameParser: distinct header lines remembered per connection ...
SEEN_HEADER_BYTES = 256  # ... each at most this long (an audio-chunk's is about 90 bytes)


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


# An audio chunk's data section exactly as the wyoming package writes it (json.dumps' default separators, its key
# order, JSON integers without leading zeros), e.g. {"rate": 16000, "width": 2, "channels": 1, "timestamp": 120}.
# It differs per chunk (the timestamp), so it cannot be remembered as header lines are; matching it takes about
# half the time of json.loads (1.1 against 2.4 µs), and anything else goes through json.loads.
_INT = rb"(0|[1-9][0-9]*)"
_AUDIO_DATA = re.compile(rb'\{"rate": ' + _INT + rb', "width": ' + _INT + rb', "channels": ' + _INT
                         + rb'(?:, "timestamp": (0|[1-9][0-9]*|null))?\}')


def _data_section(raw: bytes | bytearray, what: str) -> dict[str, Any]:
    """`_json_object` of a frame's data section, with a fast path for the audio chunk's (the same dict)."""
    m = _AUDIO_DATA.fullmatch(raw)
    if m is None:
        return _json_object(raw, what)
    rate, width, channels, timestamp = m.groups()
    doc = {"rate": int(rate), "width": int(width), "channels": int(channels)}
    if timestamp is not None:
        doc["timestamp"] = None if timestamp == b"null" else int(timestamp)
    return doc


async def _read_exactly(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as e:
        raise TruncatedFrame(f"connection closed inside the {what} ({len(e.partial)} of {n} bytes)") from None


def _header(line: bytes | bytearray, limits: FrameLimits) -> tuple[str, dict[str, Any], int, int]:
    """A header line's (type, data, data_length, payload_length), each checked against `limits`."""
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
    return (event_type, data, _length(header, "data_length", limits.max_data_bytes),
            _length(header, "payload_length", limits.max_payload_bytes))


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
    event_type, data, data_length, payload_length = _header(line, limits)
    if data_length:
        data = {**data, **_data_section(await _read_exactly(reader, data_length, "data section"), "the data section")}
    payload = await _read_exactly(reader, payload_length, "payload") if payload_length else None
    return Event(type=event_type, data=data, payload=payload)


class FrameParser:
    """`read_event` without a reader (what a server's read loop uses: one `read` of whatever arrived, then
    every complete event in it, with no await per event): `feed` the bytes as they come and iterate the
    complete events; `close` at the end of the stream. The same checks and errors as `read_event`: a header
    line is looked for only within `max_header_bytes`, and a frame's data and payload are waited for only
    once its header has declared lengths within the limits, so the buffer never holds more than one frame's
    limits beyond what one read brought."""

    def __init__(self, limits: FrameLimits = FrameLimits()) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._head: tuple[str, dict[str, Any], int, int] | None = None  # the frame whose header was read
        self._seen: dict[bytes, tuple[str, dict[str, Any], int, int]] = {}  # header lines already checked

    def _header(self, line: bytearray) -> tuple[str, dict[str, Any], int, int]:
        """`_header`, remembered for lines seen before (a stream's audio-chunk headers are all alike)."""
        key = bytes(line)
        head = self._seen.get(key)
        if head is None:
            head = _header(key, self.limits)
            if len(key) > SEEN_HEADER_BYTES:
                return head
            if len(self._seen) >= SEEN_HEADERS:
                self._seen.clear()
            self._seen[key] = head
        event_type, data, data_length, payload_length = head
        return event_type, dict(data), data_length, payload_length  # each event its own data dict

    def feed(self, data: bytes) -> Iterator[Event]:
        """The complete events that `data` finishes, in order; a ProtocolError where the framing breaks (after
        the events before it)."""
        buf, limit = self._buf, self.limits.max_header_bytes
        buf += data
        pos = 0
        try:
            while True:
                if self._head is None:
                    end = buf.find(b"\n", pos, pos + limit)
                    if end < 0:
                        if len(buf) - pos >= limit:
                            raise FrameTooLarge(f"header line longer than the limit of {limit} bytes")
                        return
                    self._head = self._header(buf[pos:end + 1])
                    pos = end + 1
                event_type, fields, data_length, payload_length = self._head
                if data_length:  # as read_event: the data section is checked before the payload is waited for
                    if len(buf) - pos < data_length:
                        return
                    fields = {**fields, **_data_section(buf[pos:pos + data_length], "the data section")}
                    pos += data_length
                    self._head = event_type, fields, 0, payload_length
                if len(buf) - pos < payload_length:
                    return
                payload = bytes(buf[pos:pos + payload_length]) if payload_length else None
                pos += payload_length
                self._head = None
                yield Event(type=event_type, data=fields, payload=payload)
        finally:
            del buf[:pos]

    def close(self) -> None:
        """The end of the stream: TruncatedFrame if it came inside a frame."""
        if self._head is not None:
            what = "data section" if self._head[2] and len(self._buf) < self._head[2] else "payload"
            raise TruncatedFrame(f"connection closed inside the {what} ({len(self._buf)} bytes of the frame's "
                                 f"{self._head[2] + self._head[3]})")
        if self._buf:
            raise TruncatedFrame(f"connection closed inside a header line ({len(self._buf)} bytes)")


def new_reader(limits: FrameLimits = FrameLimits()) -> asyncio.StreamReader:
    """A StreamReader whose own line limit matches `limits` (for tests and in-memory parsing)."""
    return asyncio.StreamReader(limit=limits.max_header_bytes)
