"""The judge's Wyoming side: the bounded frame reader (fuzzed with hypothesis), audio format handling, and the
real server on 127.0.0.1 (the official hey_jarvis model in TFLite-Micro) facing well-behaved clients (the
`wyoming` package's own) and bad ones over raw sockets. After every bad client, a normal request succeeds."""
from __future__ import annotations

import asyncio
import io
import json
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, read_event as wyoming_read_event, write_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.wake import Detect, NotDetected

from components.judge.audio import AudioFormatError, PcmFormat, check_format, to_judge_input
from components.judge.client import JudgeClient, JudgeError
from components.judge.protocol import (FrameLimits, FrameParser, FrameTooLarge, MalformedFrame, ProtocolError,
                                       TruncatedFrame, read_event)
from components.runtime.judge import JudgeModelError, load_judge
from components.judge.server import ServerSettings, ServerThread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models" / "v2"
MODEL = FIXTURES / "hey_jarvis.tflite"
LIMITS = FrameLimits(max_header_bytes=1024, max_data_bytes=2048, max_payload_bytes=4096)
SR = 16_000


# -- the frame reader --------------------------------------------------------------------------------------


class CountingReader(asyncio.StreamReader):
    """Records every length the parser asks to read, to prove it never reads beyond the limits."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.exact: list[int] = []

    async def readexactly(self, n: int) -> bytes:
        self.exact.append(n)
        return await super().readexactly(n)


def parse(data: bytes, limits: FrameLimits = LIMITS, pieces: int = 1) -> tuple[list[Event], Exception | None, list]:
    """Every event in `data` (fed in `pieces` parts) up to the end or the first protocol error."""

    async def run():
        reader = CountingReader(limit=limits.max_header_bytes)
        step = max(1, -(-len(data) // pieces))

        async def feed():
            for i in range(0, len(data), step):
                reader.feed_data(data[i:i + step])
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
        events, error = [], None
        try:
            while (event := await read_event(reader, limits)) is not None:
                events.append(event)
        except ProtocolError as e:
            error = e
        await feeder
        return events, error, reader.exact

    return asyncio.run(run())


def encode(*events: Event) -> bytes:
    out = io.BytesIO()
    for e in events:
        write_event(e, out)  # the package's own writer
    return out.getvalue()


def text(**kw):
    return st.text(st.characters(codec="utf-8"), **kw)  # what JSON over UTF-8 can carry (no lone surrogates)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats(allow_nan=False)
                           | text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text(max_size=8), inner,
                                                                                        max_size=4),
                           max_leaves=12)
event_types = st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=30)
events = st.builds(Event, type=event_types, data=st.dictionaries(text(max_size=10), json_values, max_size=5),
                   payload=st.none() | st.binary(min_size=1, max_size=3000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=4), st.integers(1, 7))
def test_well_formed_events_round_trip_whatever_the_packet_boundaries(evs, pieces):
    data = encode(*evs)
    parsed, error, _ = parse(data, FrameLimits(1 << 16, 1 << 16, 1 << 16), pieces)
    assert error is None
    assert [(e.type, e.data, e.payload) for e in parsed] == [(e.type, e.data, e.payload) for e in evs]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(1, 5))
def test_random_bytes_only_ever_raise_protocol_errors_and_reads_stay_within_limits(data, pieces):
    _, error, exact = parse(data, LIMITS, pieces)
    assert error is None or isinstance(error, (FrameTooLarge, MalformedFrame, TruncatedFrame))
    assert all(0 < n <= max(LIMITS.max_data_bytes, LIMITS.max_payload_bytes) for n in exact)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=3), st.data())
def test_mutated_well_formed_frames_only_ever_raise_protocol_errors(evs, data):
    raw = bytearray(encode(*evs))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        raw[data.draw(st.integers(0, len(raw) - 1), label="at")] = data.draw(st.integers(0, 255), label="byte")
    raw = raw[:data.draw(st.integers(1, len(raw)), label="cut")]
    parsed, error, exact = parse(bytes(raw), LIMITS, data.draw(st.integers(1, 4), label="pieces"))
    assert error is None or isinstance(error, (FrameTooLarge, MalformedFrame, TruncatedFrame))
    assert all(0 < n <= max(LIMITS.max_data_bytes, LIMITS.max_payload_bytes) for n in exact)
    assert all(isinstance(e.type, str) and isinstance(e.data, dict) for e in parsed)


headers = st.dictionaries(st.sampled_from(["type", "data", "data_length", "payload_length", "version", "x"]),
                          json_values | st.integers(-5, 10_000), max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers, st.binary(max_size=5000))
def test_arbitrary_json_headers_parse_or_raise_a_protocol_error(header, tail):
    _, error, exact = parse(json.dumps(header).encode() + b"\n" + tail)
    assert error is None or isinstance(error, ProtocolError)
    assert all(n <= LIMITS.max_payload_bytes for n in exact)
    declared = header.get("payload_length")
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > LIMITS.max_payload_bytes:
        assert isinstance(error, (FrameTooLarge, MalformedFrame)) and declared not in exact


@pytest.mark.parametrize("data,error", [
    (b"{not json\n", MalformedFrame),
    (b"[1, 2]\n", MalformedFrame),
    (b'{"data": {}}\n', MalformedFrame),  # no type
    (b'{"type": 5}\n', MalformedFrame),
    (b'{"type": "x", "data": [1]}\n', MalformedFrame),
    (b'{"type": "x", "data_length": -1}\n', MalformedFrame),
    (b'{"type": "x", "payload_length": "10"}\n', MalformedFrame),
    (b'{"type": "x", "payload_length": true}\n', MalformedFrame),
    (b'{"type": "x", "data_length": 4}\n[1,2]', MalformedFrame),  # data section not an object
    (b'{"type": "x", "data_length": 2049}\n', FrameTooLarge),
    (b'{"type": "x", "payload_length": 4097}\n', FrameTooLarge),
    (b'{"type": "' + b"a" * 2000 + b'"}\n', FrameTooLarge),  # header line beyond the limit
    (b"\xff\xfe\n", MalformedFrame),
    (b"[" * 1000 + b"\n", MalformedFrame),  # nesting too deep for the JSON parser
    (b'{"type": "x", "payload_length": 10}\nabc', TruncatedFrame),
    (b'{"type": "x"', TruncatedFrame),
])
def test_malformed_frames_raise_their_named_error(data, error):
    parsed, found, exact = parse(data)
    assert parsed == [] and isinstance(found, error), found
    if error is FrameTooLarge:
        assert exact == []  # refused before reading the oversized part
    got, found = parse_fed(data)
    assert got == [] and isinstance(found, error), found  # the server's parser: the same verdict


def test_data_section_merges_over_header_data_and_clean_eof_is_none():
    data = b'{"type": "audio-start", "data": {"rate": 8000, "a": 1}, "data_length": 15}\n{"rate": 16000}'
    parsed, error, _ = parse(data)
    assert error is None and parsed == [Event("audio-start", {"rate": 16000, "a": 1})]
    assert parse(b"") == ([], None, [])


def parse_fed(data: bytes, limits: FrameLimits = LIMITS, pieces: int = 1) -> tuple[list[Event], Exception | None]:
    """`parse` with the server's FrameParser: `data` fed in `pieces` parts, then closed."""
    parser, events = FrameParser(limits), []
    step = max(1, -(-len(data) // pieces))
    try:
        for i in range(0, len(data), step):
            events += parser.feed(data[i:i + step])
        parser.close()
    except ProtocolError as e:
        return events, e
    return events, None


def same_outcome(data: bytes, limits: FrameLimits, pieces: int) -> None:
    """The parser finds the events read_event finds and fails (or not) with the same kind of error."""
    expected, error, _ = parse(data, limits, pieces)
    got, found = parse_fed(data, limits, pieces)
    assert [(e.type, e.data, e.payload) for e in got] == [(e.type, e.data, e.payload) for e in expected]
    assert type(found) is type(error), (found, error)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=4), st.integers(1, 7))
def test_the_frame_parser_round_trips_well_formed_events_whatever_the_packet_boundaries(evs, pieces):
    same_outcome(encode(*evs), FrameLimits(1 << 16, 1 << 16, 1 << 16), pieces)
    assert parse_fed(encode(*evs), FrameLimits(1 << 16, 1 << 16, 1 << 16), pieces)[0] == evs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(1, 5))
def test_the_frame_parser_agrees_with_read_event_on_random_bytes(data, pieces):
    same_outcome(data, LIMITS, pieces)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=3), st.data())
def test_the_frame_parser_agrees_with_read_event_on_mutated_frames(evs, data):
    raw = bytearray(encode(*evs))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        raw[data.draw(st.integers(0, len(raw) - 1), label="at")] = data.draw(st.integers(0, 255), label="byte")
    raw = raw[:data.draw(st.integers(1, len(raw)), label="cut")]
    same_outcome(bytes(raw), LIMITS, data.draw(st.integers(1, 4), label="pieces"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers, st.binary(max_size=5000), st.integers(1, 4))
def test_the_frame_parser_agrees_with_read_event_on_arbitrary_headers(header, tail, pieces):
    same_outcome(json.dumps(header).encode() + b"\n" + tail, LIMITS, pieces)


def test_the_frame_parser_refuses_an_oversized_frame_before_buffering_it():
    parser = FrameParser(LIMITS)
    with pytest.raises(FrameTooLarge):
        list(parser.feed(b'{"type": "x", "payload_length": 4097}\n'))
    parser = FrameParser(LIMITS)
    with pytest.raises(FrameTooLarge):
        list(parser.feed(b"a" * LIMITS.max_header_bytes))  # no newline within the limit: not waited for
    parser = FrameParser(LIMITS)
    assert list(parser.feed(b'{"type": "x", "payload_length": 3}\nab')) == []
    assert list(parser.feed(b"cd")) == [Event("x", {}, b"abc")]
    with pytest.raises(TruncatedFrame):
        parser.close()  # "d" began a header line


# -- audio formats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate,width,channels", [(16000, 1, 1), (16000, 3, 1), (4000, 2, 1), (96_000, 2, 1),
                                                 (16000, 2, 0), (16000, 2, 3), ("16000", 2, 1), (16000.0, 2, 1),
                                                 (True, 2, 1), (None, 2, 1)])
def test_unsupported_audio_formats_are_refused(rate, width, channels):
    with pytest.raises(AudioFormatError):
        check_format(rate, width, channels)


def test_audio_is_converted_to_16k_mono_int16():
    x = (np.random.default_rng(0).standard_normal(SR) * 3000).astype(np.int16)
    native = to_judge_input(x.tobytes(), check_format(16000, 2, 1))
    assert native.dtype == np.int16 and np.array_equal(native, x)
    t = np.arange(48_000) / 48_000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1)
    pcm32 = np.round(stereo * (2 ** 31 - 1)).astype("<i4").tobytes()
    out = to_judge_input(pcm32, check_format(48_000, 4, 2))
    assert out.dtype == np.int16 and len(out) == SR
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
    assert np.argmax(spectrum) == 440  # 1 s at 16 kHz: bin k is k Hz
    assert abs(np.max(np.abs(out[1000:-1000])) / 32767 - 0.5) < 0.01
    with pytest.raises(AudioFormatError):
        to_judge_input(b"\x00" * 3, PcmFormat(16000, 2, 1))


# -- loading a judge model ---------------------------------------------------------------------------------


def test_a_tflite_judge_takes_name_and_cutoff_from_its_manifest(tmp_path):
    judge = load_judge(MODEL)
    assert (judge.name, judge.phrase, judge.cutoff, judge.kind) == ("hey_jarvis", "Hey Jarvis", 0.97, "tflite")
    assert judge.threshold == int(0.97 * 255) / 256 and judge.settings.sliding_window == 5
    assert load_judge(MODEL, cutoff=0.5, name="Jarvis Please").name == "jarvis_please"
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(MODEL, bare / "m.tflite")  # no manifest: no calibrated cutoff
    with pytest.raises(JudgeModelError, match="--cutoff"):
        load_judge(bare)
    assert load_judge(bare, cutoff=0.9).cutoff == 0.9
    shutil.copy(FIXTURES / "alexa.tflite", bare / "other.tflite")
    with pytest.raises(JudgeModelError, match=r"holds 2 models \(m.tflite, other.tflite\)"):
        load_judge(bare)
    with pytest.raises(JudgeModelError):
        load_judge(tmp_path / "missing")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model" * 100)
    with pytest.raises(JudgeModelError, match="does not load"):
        load_judge(junk, cutoff=0.5)


def test_serve_refuses_a_bad_model_with_exit_code_2(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["judge", "serve", "--model", str(tmp_path / "missing.tflite"), "--port", "0"]) == 2
    assert "no such file" in capsys.readouterr().err


# -- the server --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    from components.synthesis.ambient import coloured_noise
    from components.common.audio import to_int16

    return to_int16(coloured_noise(int(seconds * SR), np.random.default_rng(seed)))


READ_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 4
MAX_AUDIO_S = 3.0


@pytest.fixture(scope="module")
def server():
    judge = load_judge(MODEL)
    for _ in range(3):  # the free port may be taken before the server binds it
        try:
            with ServerThread(judge, ServerSettings(port=free_port(), read_timeout_s=READ_TIMEOUT_S,
                                                    max_connections=MAX_CONNECTIONS, max_audio_s=MAX_AUDIO_S,
                                                    limits=LIMITS)) as running:
                yield running
            return
        except OSError:
            continue
    pytest.fail("could not bind a free port on 127.0.0.1")


def normal_request_works(server) -> None:
    verdict = JudgeClient(server.uri, timeout_s=10).check(noise(1.0, seed=3))
    assert not verdict.detected and verdict.score is not None and verdict.score < verdict.cutoff


class Raw:
    """A raw TCP client: sends any bytes, reads answers with the wyoming package's reader."""

    def __init__(self, server) -> None:
        self.sock = socket.create_connection((server.settings.host, server.settings.port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def event(self) -> Event | None:
        return wyoming_read_event(self.file)

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def request_events(samples: np.ndarray, rate=SR, width=2, channels=1, chunk=2048) -> bytes:
    pcm = samples.tobytes()
    chunks = [AudioChunk(rate, width, channels, pcm[i:i + chunk]).event() for i in range(0, len(pcm), chunk)]
    return encode(AudioStart(rate, width, channels).event(), *chunks, AudioStop().event())


@pytest.mark.slow
def test_describe_answers_one_wake_program_with_the_wake_word(server):
    async def ask():
        async with AsyncTcpClient("127.0.0.1", server.settings.port) as client:
            await client.write_event(Describe().event())
            info_event = await asyncio.wait_for(client.read_event(), 10)
            await client.write_event(Ping(text="hi").event())
            pong = await asyncio.wait_for(client.read_event(), 10)
            return info_event, pong

    info_event, pong = asyncio.run(ask())
    assert Info.is_type(info_event.type) and Pong.from_event(pong).text == "hi"
    info = Info.from_event(info_event)
    assert len(info.wake) == 1 and info.wake[0].installed
    (model,) = info.wake[0].models
    assert (model.name, model.phrase, model.languages) == ("hey_jarvis", "Hey Jarvis", ["en"])


@pytest.mark.slow
def test_noise_and_silence_are_not_detected_with_the_score_in_the_context(server):
    async def ask(samples):
        async with AsyncTcpClient("127.0.0.1", server.settings.port) as client:
            await client.write_event(Detect(names=["hey_jarvis"]).event())
            await client.write_event(AudioStart(SR, 2, 1).event())
            pcm = samples.tobytes()
            for i in range(0, len(pcm), 2048):
                await client.write_event(AudioChunk(SR, 2, 1, pcm[i:i + 2048], timestamp=i // 32).event())
            await client.write_event(AudioStop().event())
            return await asyncio.wait_for(client.read_event(), 10)

    for samples in (noise(2.0), np.zeros(2 * SR, np.int16)):
        event = asyncio.run(ask(samples))
        assert NotDetected.is_type(event.type), event
        ctx = NotDetected.from_event(event).context
        assert ctx["cutoff"] == 0.97 and 0 <= ctx["score"] < ctx["threshold"] and ctx["audio_s"] == 2.0


@pytest.mark.slow
def test_a_request_for_another_wake_word_is_not_detected(server):
    verdict = JudgeClient(server.uri).check(noise(1.0), names=["alexa"])
    assert not verdict.detected and verdict.context == {"reason": "not-served", "served": "hey_jarvis"}


@pytest.mark.slow
def test_a_broken_json_header_gets_an_error_and_a_close(server):
    raw = Raw(server)
    raw.send(b'{"type": "describe"\n')
    event = raw.event()
    assert event.type == "error" and event.data["code"] == "malformed-frame"
    assert raw.closed_by_server()
    raw.close()
    normal_request_works(server)


@pytest.mark.slow
@pytest.mark.parametrize("header", [{"type": "audio-chunk", "payload_length": LIMITS.max_payload_bytes + 1},
                                    {"type": "audio-start", "data_length": LIMITS.max_data_bytes + 1},
                                    {"type": "x" * 10, "pad": "y" * LIMITS.max_header_bytes}])
def test_oversized_frames_get_an_error_and_a_close(server, header):
    raw = Raw(server)
    raw.send(json.dumps(header).encode() + b"\n" + b"\x00" * 64)
    event = raw.event()
    assert event.type == "error" and event.data["code"] == "frame-too-large"
    assert raw.closed_by_server()
    raw.close()
    normal_request_works(server)


@pytest.mark.slow
@pytest.mark.parametrize("rate,width,channels", [(SR, 3, 1), (4000, 2, 1), (SR, 2, 16)])
def test_an_unsupported_audio_format_drops_the_request_but_not_the_connection(server, rate, width, channels):
    raw = Raw(server)
    raw.send(request_events(np.zeros(6 * width * channels, np.uint8), rate, width, channels))
    event = raw.event()
    assert event.type == "error" and event.data["code"] == "unsupported-audio-format"
    raw.send(request_events(noise(1.0)))  # the same connection serves the next request
    assert NotDetected.is_type(raw.event().type)
    raw.close()
    normal_request_works(server)


@pytest.mark.slow
def test_a_format_change_mid_request_and_too_much_audio_drop_the_request(server):
    raw = Raw(server)
    raw.send(encode(AudioStart(SR, 2, 1).event(), AudioChunk(SR, 2, 1, b"\x00" * 640).event(),
                    AudioChunk(8000, 2, 1, b"\x00" * 640).event(), AudioChunk(SR, 2, 1, b"\x00" * 640).event(),
                    AudioStop().event()))
    event = raw.event()
    assert event.type == "error" and "changed" in event.data["text"]
    too_long = noise(MAX_AUDIO_S + 0.5)
    raw.send(request_events(too_long, chunk=4096))
    event = raw.event()
    assert event.type == "error" and event.data["code"] == "too-much-audio"
    raw.send(request_events(noise(MAX_AUDIO_S - 0.1)))  # within the bound: served on the same connection
    assert NotDetected.is_type(raw.event().type)
    raw.close()
    with pytest.raises(JudgeError, match="too-much-audio"):
        JudgeClient(server.uri).check(too_long)
    normal_request_works(server)


@pytest.mark.slow
def test_audio_before_audio_start_is_an_error(server):
    raw = Raw(server)
    raw.send(encode(AudioChunk(SR, 2, 1, b"\x00" * 640).event(), AudioStop().event()))
    event = raw.event()
    assert event.type == "error" and event.data["code"] == "protocol"
    raw.close()
    normal_request_works(server)


@pytest.mark.slow
def test_a_client_that_disconnects_mid_stream_leaves_the_server_serving(server):
    for cut in (10, 200, 700):  # inside a header line, a data section, a payload
        raw = Raw(server)
        raw.send(request_events(noise(0.5))[:cut])
        raw.close()
    normal_request_works(server)


@pytest.mark.slow
def test_a_silent_client_is_closed_after_the_read_timeout(server):
    raw = Raw(server)
    t0 = time.monotonic()
    event = raw.event()
    waited = time.monotonic() - t0
    assert event.type == "error" and event.data["code"] == "timeout"
    assert waited > READ_TIMEOUT_S * 0.9  # not before the timeout (a busy machine only makes it later)
    assert raw.closed_by_server()
    raw.close()
    slow = Raw(server)  # a slow-loris header (one byte at a time) is bounded by the same timeout: the server
    with pytest.raises((BrokenPipeError, ConnectionResetError)):  # hangs up before the 6 s of bytes are sent
        for byte in b'{"type": "describe", "data": {"pad": "' + b"x" * 40:  # 6 s at 10 bytes/s, no newline
            slow.send(bytes([byte]))
            time.sleep(0.1)
    slow.close()
    normal_request_works(server)


@pytest.mark.slow
def test_scoring_runs_off_the_event_loop(server):
    """A verdict that is still being scored holds up no other connection: the long clip's judge blocks until
    the short clip's answer has arrived, which could never happen if scoring ran on the event loop. Order of
    events only, no clock: a busy machine cannot fail it."""
    import dataclasses
    import threading

    from components.runtime.judge import Judge

    started, released = threading.Event(), threading.Event()
    unblocked: list[bool] = []

    class BlockingJudge(Judge):
        def judge(self, samples):
            if len(samples) > 2 * SR:
                started.set()
                unblocked.append(released.wait(timeout=60))  # False: nobody got through while it blocked
            return super().judge(samples)

    base = load_judge(MODEL)
    blocking = BlockingJudge(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Judge)
                                if f.name != "_local"})
    finished = {}
    with ServerThread(blocking, ServerSettings(port=free_port(), workers=2)) as running:
        client = JudgeClient(running.uri, timeout_s=120)
        worker = threading.Thread(target=lambda: finished.update(long=client.check(noise(2.5))))
        worker.start()
        assert started.wait(timeout=60)  # the long clip is being scored, and blocks
        finished["short"] = client.check(noise(1.0))  # answered while the long one still blocks
        released.set()
        worker.join(timeout=120)
    assert unblocked == [True] and not finished["short"].detected and not finished["long"].detected


@pytest.mark.slow
def test_connections_beyond_the_maximum_are_refused_with_busy(server):
    held = [Raw(server) for _ in range(MAX_CONNECTIONS)]
    for raw in held:  # each is being served (a pong proves its handler runs)
        raw.send(encode(Ping(text="x").event()))
        assert raw.event().type == "pong"
    extra = Raw(server)
    event = extra.event()
    assert event.type == "error" and event.data["code"] == "busy"
    assert extra.closed_by_server()
    extra.close()
    with pytest.raises(JudgeError, match="busy"):  # the Python client reports the server's reason
        JudgeClient(server.uri).check(noise(1.0))
    for raw in held:
        raw.close()
    time.sleep(0.2)  # the server notices the closes
    normal_request_works(server)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.integers(0, 10**12), width=st.integers(0, 8), channels=st.integers(0, 8),
       timestamp=st.one_of(st.none(), st.integers(-10, 10**15)),
       cut=st.integers(0, 80), insert=st.sampled_from(["", " ", "0", "-", "}", ",", '"', "1.5", "\n"]))
def test_the_audio_chunk_fast_path_reads_what_json_reads(rate, width, channels, timestamp, cut, insert):
    """The data section of an audio chunk, as wyoming writes it and mutated: the fast path gives json's object
    exactly, and a section json refuses is refused."""
    from components.judge.protocol import _AUDIO_DATA, MalformedFrame, _data_section

    chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=b"", timestamp=timestamp).event()
    written = json.dumps(chunk.data, ensure_ascii=False).encode()  # what wyoming's write_event sends
    assert (_AUDIO_DATA.fullmatch(written) is not None) == (timestamp is None or timestamp >= 0)  # fast path taken
    for raw in (written, written[:cut] + insert.encode() + written[cut:]):
        try:
            expected = json.loads(raw)
        except ValueError:
            with pytest.raises(MalformedFrame):
                _data_section(raw, "the data section")
            continue
        if not isinstance(expected, dict):
            with pytest.raises(MalformedFrame):
                _data_section(raw, "the data section")
            continue
        got = _data_section(bytearray(raw), "the data section")
        assert got == expected and [type(v) for v in got.values()] == [type(v) for v in expected.values()]
        assert list(got) == list(expected)
