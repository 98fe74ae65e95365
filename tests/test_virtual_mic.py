"""The sound devices and the virtual microphone on a real PulseAudio server
(tests/pulse_server.py: the running one, or a private one for the session), and
`avatar-cam run --virtual-mic` end to end on a real clip."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pulse_server import pulse_server  # noqa: F401  (a fixture)
from test_audio import dominant_hz, rms, tone, write_wav

from avatar_cam.audio import pulse
from avatar_cam.audio.chunk import CHUNK, RATE, AudioError
from avatar_cam.audio.delay import CATCH_UP_MS
from avatar_cam.audio.mic import open_mic
from avatar_cam.audio.relay import VoiceRelay
from avatar_cam.audio.speaker import PulseSpeaker, open_speaker
from avatar_cam.audio.virtual_mic import SINK, SOURCE, VirtualMic


def listen(spec: str, chunks: int) -> np.ndarray:
    mic = open_mic(spec)
    assert mic is not None
    try:
        got = []
        for _ in range(chunks):
            chunk = mic.read()
            assert chunk is not None and chunk.samples.shape == (CHUNK,)
            got.append(chunk.samples)
        return np.concatenate(got)
    finally:
        mic.close()


def modules() -> list[str]:
    return pulse.pactl("list", "short", "modules").splitlines()


def in_real_time(write: Callable[[np.ndarray], object], x: np.ndarray) -> None:
    """Hand ``x`` over a chunk at a time, as a microphone would (no faster)."""
    t0 = time.monotonic()
    for n, i in enumerate(range(0, len(x), CHUNK)):
        time.sleep(max(0.0, t0 + n * CHUNK / RATE - time.monotonic()))
        write(x[i:i + CHUNK])


@pytest.mark.usefixtures("pulse_server")
def test_virtual_microphone_carries_what_is_written_and_unloads() -> None:
    before = modules()
    vmic = VirtualMic()
    try:
        loaded = list(vmic.modules)
        assert len(loaded) == 2 and pulse.sink_exists(SINK)
        assert pulse.source_exists(SOURCE)  # `pactl list short sources` shows it
        assert "avatar-cam microphone" in pulse.pactl("list", "sources")  # what Zoom lists
        listener = open_mic(f"device:{SOURCE}")  # what a call app records
        assert listener is not None
        listener.start()
        x = tone(1.0, 500.0, level=0.3)
        in_real_time(vmic.write, x)
        heard = np.concatenate([listener.read().samples for _ in range(40)])  # type: ignore[union-attr]
        listener.close()
        assert vmic.samples_written == len(x)
        # a burst (the writer stalled, then caught up) is not queued as latency: what the
        # server accepted never runs far ahead of the clock (the writes wait)
        t0, written0 = time.monotonic(), vmic.samples_written
        ahead = []
        for i in range(0, len(x), CHUNK):
            vmic.write(x[i:i + CHUNK])
            ahead.append((vmic.samples_written - written0) / RATE - (time.monotonic() - t0))
        assert max(ahead) < 0.2, max(ahead)
        with pytest.raises(ValueError):
            vmic.write(x.astype(np.float32))  # checked before it reaches the server
    finally:
        vmic.close()
    assert not pulse.source_exists(SOURCE) and not pulse.sink_exists(SINK)
    ids = {line.split("\t")[0] for line in modules()}
    assert not ids & set(loaded)  # its two modules unloaded...
    assert not any(f"sink_name={SINK} " in line or f"source_name={SOURCE} " in line
                   for line in modules())
    kept = [line for line in before if "auto_null" not in line]  # (always-sink's churn)
    assert all(line.split("\t")[0] in ids for line in kept)  # ...and nothing else
    assert abs(dominant_hz(heard) - 500.0) < 10 and rms(heard) > 0.5 * rms(x)


@pytest.mark.usefixtures("pulse_server")
def test_default_speaker_and_microphone_on_the_sound_server() -> None:
    """What the default speaker plays reaches the default sink; its monitor hears it (as
    the default microphone where the server has no other input, as here)."""
    info = dict(line.split(": ", 1) for line in pulse.pactl("info").splitlines()
                if ": " in line)
    assert info.get("Default Sink"), "the server has a default sink"
    monitor = info["Default Sink"] + ".monitor"
    spec = "default" if info.get("Default Source") == monitor else f"device:{monitor}"
    listener = open_mic(spec)
    speaker = open_speaker("default")
    assert listener is not None and isinstance(speaker, PulseSpeaker)
    listener.start()
    x = tone(1.0, 700.0)
    in_real_time(speaker.play, x)
    heard = np.concatenate([listener.read().samples for _ in range(40)])  # type: ignore[union-attr]
    listener.close()
    speaker.close()
    assert speaker.samples_played == len(x)
    assert abs(dominant_hz(heard) - 700.0) < 15 and rms(heard) > 0.2 * rms(x)


@pytest.mark.usefixtures("pulse_server")
def test_speaker_counts_the_feed_running_dry() -> None:
    speaker = PulseSpeaker(None)
    try:
        for _ in range(5):  # 100 ms handed over at once: no underrun
            speaker.play(np.zeros(CHUNK, np.int16))
        assert speaker.underruns == 0
        time.sleep(0.6)  # all of it played long ago
        speaker.play(np.zeros(CHUNK, np.int16))
        assert speaker.underruns == 1
    finally:
        speaker.close()


@pytest.mark.usefixtures("pulse_server")
def test_a_microphone_read_late_stamps_its_backlog_with_its_age() -> None:
    """Recording from the virtual microphone's source (a device running in real time:
    an idle null sink of the server's own may sleep in 2 s blocks)."""
    vmic = VirtualMic()
    mic = open_mic(f"device:{SOURCE}")
    assert mic is not None
    try:
        mic.start()
        time.sleep(0.5)  # nobody reads: the server keeps what the device records
        now = time.monotonic_ns()
        chunks = [mic.read() for _ in range(10)]
    finally:
        mic.close()
        vmic.close()
    stamps = [c.t_capture_ns for c in chunks if c is not None]
    assert len(stamps) == 10 and np.all(np.diff(stamps) == 20_000_000)
    assert now - stamps[0] > 400e6  # the backlog shows its age, for a delay line to drop


@pytest.mark.usefixtures("pulse_server")
def test_devices_that_do_not_exist_are_one_clear_line() -> None:
    for spec, opener in (("device:no-such-mic", open_mic), ("device:no-such-speaker",
                                                             open_speaker)):
        with pytest.raises(AudioError) as caught:
            opener(spec)
        message = str(caught.value)
        assert "no-such" in message and "pactl list" in message and "\n" not in message


def test_no_sound_server_is_one_clear_line(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """No server where the clients look (PULSE_SERVER, for this test's subprocesses)."""
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path / 'nobody-here'}")
    for opener in (lambda: open_mic("default"), lambda: open_speaker("default"),
                   lambda: VirtualMic()):
        with pytest.raises(AudioError) as caught:
            opener()
        message = str(caught.value)
        assert "\n" not in message and " -- " in message, message
        assert "PulseAudio" in message and ("no sound server" in message
                                           or "not installed" in message), message
        assert "pulseaudio --start" in message or "apt-get install" in message, message


@pytest.mark.usefixtures("pulse_server")
def test_voice_relay_holds_the_voice_back_by_the_live_latency(tmp_path: Path) -> None:
    """A file microphone through the relay into the real virtual microphone: nothing
    before the picture is ready, then each chunk handed over no sooner than the delay
    of that moment and never more than CATCH_UP_MS after it; when the delay shrinks the
    backlog is dropped; at the end of the file the line's tail still plays."""
    mic = open_mic("file:" + str(write_wav(tmp_path / "v.wav", tone(1.0, 600.0))))
    assert mic is not None
    ready, delay = [False], [200.0]
    relay = VoiceRelay(mic, VirtualMic(), lambda: delay[0], ready=lambda: ready[0])
    held: list[tuple[float, float]] = []  # (delay of the moment, how long it was held)
    try:
        for _ in range(5):
            assert relay.pump()
        assert relay.chunks == 0 and not relay.started
        ready[0] = True
        while relay.pump():
            held += [(delay[0], h) for h in list(relay.held_ms)[len(held):]]
            if relay.chunks >= 10:
                delay[0] = 20.0  # the picture got faster
        held += [(delay[0], h) for h in list(relay.held_ms)[len(held):]]
    finally:
        relay.close()
    assert all(d <= h <= d + CATCH_UP_MS + 1 for d, h in held), held
    assert relay.delay.dropped_ms > 0  # the 180 ms it no longer needed, less CATCH_UP_MS
    assert relay.chunks * 20 + relay.delay.dropped_ms == pytest.approx(1000)
    assert relay.summary()["chunks"] == relay.chunks


@pytest.mark.usefixtures("pulse_server")
def test_run_virtual_mic_passes_the_voice_behind_the_picture(tmp_path: Path,
                                                            single_face_mp4: Path) -> None:
    """`avatar-cam run --virtual-mic --mic file:...` on a real clip: the virtual source
    carries the file's tone while the avatar runs, each chunk written about a pipeline
    latency after it was spoken."""
    wav = write_wav(tmp_path / "voice.wav", tone(30.0, 600.0))
    stats = tmp_path / "stats.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "avatar_cam.cli", "run", "--person", "demo", "--video",
         str(single_face_mp4), "--loop", "--sink", "null", "--renderer", "warp",
         "--virtual-mic", "--mic", f"file:{wav}", "--frames", "240",
         "--stats-json", str(stats)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t_end = time.monotonic() + 60
    while not pulse.source_exists(SOURCE):
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        assert time.monotonic() < t_end, "the virtual microphone never appeared"
        time.sleep(0.2)
    # 5 s from the moment the source appears: the voice starts with the first picture,
    # after the renderer and MediaPipe have started (1-2 s on 2 cores), and the run's
    # 240 frames take 8 s after that, so the source outlives the recording.
    heard = listen(f"device:{SOURCE}", 250)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err[-2000:]
    assert 'virtual microphone "avatar-cam microphone"' in err
    assert not pulse.source_exists(SOURCE)  # unloaded at the end
    loud = heard[np.abs(heard) > 1000]
    assert len(loud) > RATE // 2 and abs(dominant_hz(heard[-RATE:]) - 600.0) < 10
    said = re.search(r"virtual microphone: (\d+) chunks relayed, each (\d+) ms after", err)
    assert said, err[-2000:]
    chunks, held_ms = int(said.group(1)), float(said.group(2))
    latency_ms = json.loads(stats.read_text())["latency_ms"]["p50"]
    print(said.group(0) + err[said.end():].split("\n")[0])  # the run's own account
    print(f"voice held back {held_ms:.0f} ms (median) behind a picture latency p50 "
          f"{latency_ms:.0f} ms; {chunks} chunks relayed")
    assert chunks > 100  # the run lasts 8 s: 400 chunks at real time, less the start
    assert 0.5 * latency_ms <= held_ms < latency_ms + 250  # sanity, not a timing claim
