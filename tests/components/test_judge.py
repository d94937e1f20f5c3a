"""The judge end to end: `wakeline judge serve` as a real subprocess on 127.0.0.1 with the official hey_jarvis
model, piper-synthesised clips through the Python client and `wakeline judge check`; audio in another format;
a bounded load test; and a Keras `Model` directory (a small MixedNet trained here on piper clips with the
mining probe's recipe) judged in-process and through the server."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.wake import Detection

from components.common.audio import resample, to_int16, write_wav
from components.judge.client import JudgeClient, JudgeError, read_clip
from components.runtime.judge import load_judge

pytestmark = pytest.mark.slow  # starts `wakeline judge serve`, synthesises clips with piper, trains a MixedNet

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "fixtures" / "esphome-models" / "v2" / "hey_jarvis.tflite"
SR = 16_000
PAD = np.zeros(SR // 2, np.int16)
LOAD_CLIENTS, LOAD_REQUESTS = 32, 20


def _piper(texts_and_scales: list[tuple[str, float, float]], seed: int, pad: bool = True) -> list[np.ndarray]:
    """16 kHz int16 speech, with 0.5 s of silence either side when `pad` (as a device would capture it)."""
    from components.synthesis.piper_tts import PiperJob, synthesize_many

    jobs = [PiperJob(text, length, noise, 0.8) for text, length, noise in texts_and_scales]
    speech = [to_int16(resample(pcm.astype(np.float32) / 32768, sr)) for pcm, sr in synthesize_many(jobs, seed=seed)]
    return [np.concatenate([PAD, x, PAD]) for x in speech] if pad else speech


def _noise(seconds: float, seed: int) -> np.ndarray:
    from components.synthesis.ambient import coloured_noise

    return to_int16(coloured_noise(int(seconds * SR), np.random.default_rng(seed)))


@pytest.fixture(scope="module")
def clips():
    pos = _piper([("hey jarvis", 1.0, 0.667), ("hey jarvis", 1.15, 0.5)], seed=11)
    neg = _piper([("turn on the lights", 1.0, 0.667), ("what time is it", 1.0, 0.667)], seed=11)
    return {"positive": pos, "negative": neg + [_noise(2.0, 1), np.zeros(2 * SR, np.int16)]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`wakeline judge serve` in a subprocess; yields (uri, log path); SIGTERM at the end (exit code 0)."""
    log = tmp_path_factory.mktemp("judge") / "serve.log"
    for _ in range(3):
        port = _free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "judge", "serve", "--model", str(MODEL),
                                     "--port", str(port), "--max-connections", str(LOAD_CLIENTS + 4)],
                                    cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"tcp://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                JudgeClient(uri, timeout_s=5).describe()
                break
            except JudgeError:
                time.sleep(0.2)
        if proc.poll() is not None:  # e.g. the port was taken in between: try another
            continue
        try:
            yield uri, log
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
                raise
        assert code == 0, log.read_text()[-2000:]
        assert "stopping" in log.read_text()
        return
    pytest.fail(f"the judge server did not start: {log.read_text()[-2000:]}")


def test_the_wake_word_is_detected_and_other_audio_is_not(served, clips):
    uri, _ = served
    client = JudgeClient(uri)
    judge = load_judge(MODEL)  # the same model in-process: the server adds nothing to the score
    assert client.describe().wake[0].models[0].name == "hey_jarvis"
    for samples in clips["positive"]:
        verdict = client.check(samples)
        assert verdict.detected and verdict.name == "hey_jarvis", verdict
        assert verdict.score == pytest.approx(judge.score_audio(samples), abs=1e-6)
        assert verdict.score > verdict.context["threshold"] and verdict.cutoff == 0.97
        assert 0 < verdict.timestamp <= len(samples) * 1000 // SR
    for samples in clips["negative"]:
        verdict = client.check(samples)
        assert not verdict.detected and verdict.score < verdict.context["threshold"], verdict
        assert verdict.score == pytest.approx(judge.score_audio(samples), abs=1e-6)
    many = client.check_many(clips["positive"] + clips["negative"], concurrency=3)  # order kept
    assert [v.detected for v in many] == [True] * len(clips["positive"]) + [False] * len(clips["negative"])


def test_check_cli_exit_codes(served, clips, tmp_path, capsys):
    from pipeline.cli import main

    uri, _ = served
    pos = write_wav_file(tmp_path / "pos.wav", clips["positive"][0])
    neg = write_wav_file(tmp_path / "neg.wav", clips["negative"][0])
    assert main(["judge", "check", str(pos), "--server", uri]) == 0
    out = capsys.readouterr().out
    assert out.startswith("detected: hey_jarvis at ") and "cutoff 0.97" in out
    assert main(["judge", "check", str(neg), "--server", uri, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["detected"] is False and doc["score"] < doc["cutoff"]
    assert main(["judge", "check", str(pos), "--server", f"tcp://127.0.0.1:{_free_port()}"]) == 2  # nobody there
    assert "ConnectionRefusedError" in capsys.readouterr().err
    (tmp_path / "bad.wav").write_bytes(b"not audio" * 100)
    assert main(["judge", "check", str(tmp_path / "bad.wav"), "--server", uri]) == 2
    assert main(["judge", "check", str(pos), "--server", "http://nowhere"]) == 2
    # the console script, as a user would run it
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "judge", "check", str(pos), "--server", uri],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "detected: hey_jarvis" in done.stdout


def write_wav_file(path: Path, samples: np.ndarray) -> Path:
    write_wav(path, samples)
    assert np.array_equal(read_clip(path), samples)
    return path


def test_audio_in_another_format_is_converted_by_the_server(served, clips):
    """44.1 kHz stereo 16-bit straight over the wire (wyoming's own client): converted, then judged."""
    uri, log = served
    port = int(uri.rsplit(":", 1)[1])
    judge = load_judge(MODEL)

    async def ask(samples: np.ndarray) -> tuple:
        x = resample(samples.astype(np.float32) / 32768, SR, 44_100)
        pcm = to_int16(np.stack([x, x], axis=1)).tobytes()
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(AudioStart(44_100, 2, 2).event())
            for i in range(0, len(pcm), 4096):
                await client.write_event(AudioChunk(44_100, 2, 2, pcm[i:i + 4096]).event())
            await client.write_event(AudioStop().event())
            return await asyncio.wait_for(client.read_event(), 30)

    event = asyncio.run(ask(clips["positive"][0]))
    assert Detection.is_type(event.type) and Detection.from_event(event).name == "hey_jarvis"
    assert Detection.from_event(event).context["score"] > judge.threshold
    event = asyncio.run(ask(clips["negative"][0]))
    assert event.type == "not-detected"
    assert "converting 44100 Hz, 16-bit, 2 channel(s) to 16000 Hz" in log.read_text()


def test_features_are_judged_as_the_audio_they_come_from(clips):
    """`judge_features` is `judge`'s path after the frontend (what the cascade evaluation sends it)."""
    from components.common.frontend import features_uint16

    judge = load_judge(MODEL)
    for samples in (clips["positive"][0], clips["negative"][0]):
        audio, features = judge.judge(samples), judge.judge_features(features_uint16(samples))
        assert (features.score, features.detected, features.peak_ms, features.inferences) == (
            audio.score, audio.detected, audio.peak_ms, audio.inferences)
    assert judge.judge_features(np.zeros((0, 40), np.uint16)).inferences == 0
    assert judge.threshold_at(judge.cutoff) == judge.threshold == int(judge.cutoff * 255) / 256
    with pytest.raises(ValueError, match=r"expected features \[frames, 40\]"):
        judge.judge_features(np.zeros((10, 20), np.uint16))


def test_scoring_in_worker_processes_gives_the_same_verdicts(clips):
    from components.judge.server import ServerSettings, ServerThread

    judge = load_judge(MODEL)
    with ServerThread(judge, ServerSettings(port=_free_port(), workers=2, processes=True), 120) as server:
        client = JudgeClient(server.uri)
        for kind in ("positive", "negative"):
            for samples in clips[kind][:2]:
                verdict = client.check(samples)
                assert verdict.detected == (kind == "positive")
                assert verdict.score == pytest.approx(judge.score_audio(samples), abs=1e-6)


def test_32_concurrent_clients_x_20_requests_all_answered_correctly(served, clips):
    uri, log = served
    client = JudgeClient(uri, timeout_s=60)
    cases = [(s, True) for s in clips["positive"]] + [(s, False) for s in clips["negative"][:2]]
    failures: list[str] = []

    async def one_client(k: int) -> int:
        right = 0
        for i in range(LOAD_REQUESTS):
            samples, expected = cases[(k + i) % len(cases)]
            try:
                verdict = await client.acheck(samples)
            except JudgeError as e:
                failures.append(f"client {k} request {i}: {e}")
                continue
            right += verdict.detected == expected
        return right

    async def all_clients() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(one_client(k) for k in range(LOAD_CLIENTS))), 300)

    t0 = time.perf_counter()
    right = asyncio.run(all_clients())
    wall = time.perf_counter() - t0
    assert failures == [] and sum(right) == LOAD_CLIENTS * LOAD_REQUESTS
    print(f"\njudge load: {LOAD_CLIENTS * LOAD_REQUESTS} requests from {LOAD_CLIENTS} clients in {wall:.1f} s")
    assert "refused" not in log.read_text()


# -- a Keras Model directory ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    """A small MixedNet trained on piper "hey jarvis" vs other phrases with the mining probe's recipe (examples
    over beds of silence / noise / tones, balanced batches), saved as a Model directory the way fit.py lays
    it out. Its cutoff is 0.5 (written into validation.json): this is a judge fixture, not a calibrated model."""
    from components.background_mining.probe import build_examples, train
    from components.common.artifacts import DatasetLayout, Label, ManifestRecord, ModelLayout, Split
    from components.common.config import Mining
    from components.training.fit import feature_config

    root = tmp_path_factory.mktemp("keras-judge")
    layout = DatasetLayout(root / "dataset")
    positives = [("hey jarvis", length, noise) for length in (0.8, 0.9, 1.0, 1.1, 1.2, 1.3) for noise in (0.667, 0.9)]
    negatives = [(text, length, 0.667) for text in ("turn on the lights", "hello there", "hey marvin", "play music",
                                                    "good morning", "hey travis", "harvest moon", "stop the timer",
                                                    "are you there", "jars of jam", "hey there", "what is the weather")
                 for length in (0.9, 1.15)]
    records = []  # trimmed clips, as data_prep keeps them
    for i, samples in enumerate(_piper(positives + negatives, seed=0, pad=False)):
        label = Label.POSITIVE if i < len(positives) else Label.NEGATIVE
        sha = hashlib.sha256(samples.tobytes()).hexdigest()
        path = layout.clip_path(label, sha)
        write_wav(path, samples)
        records.append(ManifestRecord(layout.relative(path), label, Split.TRAIN, "piper", "test", len(samples) / SR,
                                      sha))
    mining = Mining()
    x, y = build_examples(layout, records, mining.probe, seed=0)
    model, losses, _ = train(x, y, mining, 0, root / "work", show_progress=False)
    assert losses[-1] < losses[0]
    out = root / "model"
    out.mkdir()
    saved = ModelLayout(out)
    model.save(saved.model)
    saved.write_spec({"spec": mining.probe.model_dump(mode="json"), "features": feature_config(mining.probe),
                      "output": ModelLayout.OUTPUT_KIND, "wake_word": "hey jarvis"})
    saved.write_validation({"cutoff": 0.5, "frr": None, "fa_per_hour": None})
    return out, model, mining.probe


@pytest.mark.slow
def test_a_keras_model_directory_judges_unseen_clips_in_process_and_served(keras_model, clips):
    from components.common.frontend import features_uint16
    from components.common.metrics import sliding_mean
    from components.training.scoring import stream_probabilities
    from components.judge.server import ServerSettings, ServerThread

    model_dir, model, spec = keras_model
    judge = load_judge(model_dir)
    assert (judge.name, judge.phrase, judge.cutoff, judge.kind, judge.quantized) == \
        ("hey_jarvis", "hey jarvis", 0.5, "keras", False)
    # the judge's score is the Keras model's own streaming windows on device features, smoothed as on the device
    for samples in clips["positive"][:1] + clips["negative"][:1]:
        probs = stream_probabilities(lambda w: model(w, training=False).numpy(), features_uint16(samples),
                                     spec.input_frames, spec.stride)
        assert judge.score_audio(samples) == pytest.approx(sliding_mean(probs, 5).max(), abs=1e-5)
    # clips it never saw (another piper seed and scales): the wake word above the cutoff, the rest below
    scores = {kind: [judge.judge(x) for x in clips[kind]] for kind in ("positive", "negative")}
    print("\nkeras judge scores:", {kind: [round(r.score, 3) for r in rs] for kind, rs in scores.items()})
    assert all(r.detected and r.score > 0.5 for r in scores["positive"]), scores["positive"]
    assert not any(r.detected or r.score > 0.5 for r in scores["negative"]), scores["negative"]
    with ServerThread(judge, ServerSettings(port=_free_port())) as server:
        client = JudgeClient(server.uri)
        assert client.describe().wake[0].models[0].phrase == "hey jarvis"
        verdict = client.check(clips["positive"][0])
        assert verdict.detected and verdict.score == pytest.approx(judge.score_audio(clips["positive"][0]))
        assert not client.check(clips["negative"][0]).detected
