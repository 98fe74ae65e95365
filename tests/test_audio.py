"""The audio package on real components: WAV files written here, PyAV's libopus, and a
real PulseAudio server (tests/pulse_server.py) for devices and the virtual microphone."""

from __future__ import annotations

import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from pulse_server import pulse_server  # noqa: F401  (a fixture)

from avatar_cam.audio.chunk import CHUNK, RATE, AudioChunk, AudioError
from avatar_cam.audio.delay import DelayLine
from avatar_cam.audio.mic import open_mic
from avatar_cam.audio.opus import OpusDecoder, OpusEncoder
from avatar_cam.audio.speaker import RecordingSpeaker, open_speaker


def tone(seconds: float, hz: float = 440.0, level: float = 0.3, rate: int = RATE
         ) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples, channels).astype("<i2").tobytes())
    return path


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[int(np.argmax(spectrum))])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


# -- the file microphone --------------------------------------------------------------


def test_file_mic_plays_the_file_in_real_time_chunks(tmp_path: Path) -> None:
    samples = tone(0.5)
    mic = open_mic("file:" + str(write_wav(tmp_path / "a.wav", samples)))
    assert mic is not None
    t0 = time.monotonic_ns()
    mic.start(t0)
    chunks = []
    while (chunk := mic.read()) is not None:
        chunks.append(chunk)
    elapsed = (time.monotonic_ns() - t0) / 1e9
    mic.close()
    assert len(chunks) == 25 and all(len(c.samples) == CHUNK for c in chunks)
    # stamped from t0 at 20 ms a chunk, and the file's own samples
    assert [c.t_capture_ns - t0 for c in chunks[:3]] == [0, 20_000_000, 40_000_000]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), samples)
    assert elapsed >= 0.45  # paced like a microphone, not read at disk speed


def test_file_mic_resamples_any_rate_and_layout_and_loops(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "b.wav", tone(0.2, 1000.0, rate=22050), rate=22050,
                     channels=2)
    mic = open_mic("file:" + str(path), loop=True)
    assert mic is not None
    mic.start(time.monotonic_ns() - 10**9)  # a second in the past: due at once
    got = np.concatenate([mic.read().samples for _ in range(20)])  # type: ignore[union-attr]
    mic.close()
    assert len(got) == 20 * CHUNK  # 0.4 s from a 0.2 s file: it looped
    assert abs(dominant_hz(got[:CHUNK * 8]) - 1000.0) < 10


def test_bad_microphone_specs_are_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    (tmp_path / "empty.wav").write_bytes(b"")
    silent_video = tmp_path / "picture.mp4"
    import av

    with av.open(str(silent_video), "w") as c:
        stream = c.add_stream("mpeg4", rate=30)
        stream.width, stream.height = 64, 64
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8),
                                               format="rgb24")
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    cases = {f"file:{tmp_path / 'missing.wav'}": "does not exist",
             f"file:{tmp_path / 'junk.wav'}": "microphone file",
             f"file:{tmp_path / 'empty.wav'}": "microphone file",
             f"file:{silent_video}": "has no sound",
             "speakers please": "not a microphone"}
    for spec, words in cases.items():
        with pytest.raises(AudioError) as caught:
            open_mic(spec)
        message = str(caught.value)
        assert words in message and "\n" not in message and " -- " in message, message
    assert open_mic("none") is None


# -- Opus ---------------------------------------------------------------------------


@pytest.mark.parametrize("kbps", [12, 16, 24])
def test_opus_round_trip_keeps_a_voice_band_tone(kbps: int) -> None:
    encoder, decoder = OpusEncoder(kbps * 1000), OpusDecoder()
    x = tone(1.0, 440.0)
    packets = [p for i in range(0, len(x), CHUNK) for p in encoder.encode(x[i:i + CHUNK])]
    assert len(packets) >= 48  # one 20 ms packet a chunk (libopus holds back one)
    mean_bytes = np.mean([len(p) for p in packets])
    assert mean_bytes < kbps * 1000 / 8 / 50 * 1.5  # about the asked bitrate
    y = np.concatenate([decoder.decode(p) for p in packets])
    assert abs(dominant_hz(y[CHUNK * 5:]) - 440.0) < 10
    assert abs(rms(y[CHUNK * 5:]) / rms(x) - 1) < 0.2


def test_opus_packets_carry_their_time_for_rtp() -> None:
    encoder = OpusEncoder(16000)
    x = tone(0.2)
    packets = [p for i in range(0, len(x), CHUNK) for p in encoder.encode_packets(x[i:i + CHUNK])]
    assert [p.pts for p in packets[:3]] == [0, CHUNK, 2 * CHUNK]
    assert all(p.time_base == packets[0].time_base and p.time_base.denominator == RATE
               for p in packets)


def test_opus_decoder_rejects_what_is_not_opus() -> None:
    decoder = OpusDecoder()
    rng = np.random.default_rng(3)
    rejected = 0
    for n in (0, 1, 3, 40, 2000):
        try:
            out = decoder.decode(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            assert out.dtype == np.int16  # random bytes can be a valid (noisy) packet
        except ValueError:
            rejected += 1
    assert rejected >= 2  # the empty and the oversized one at least
    assert decoder.conceal(CHUNK).shape == (CHUNK,)


# -- the delay line -------------------------------------------------------------------


def _chunk(t_ms: float) -> AudioChunk:
    return AudioChunk(np.zeros(CHUNK, np.int16), int(t_ms * 1e6))


def test_delay_line_holds_sound_back_by_the_live_delay_and_catches_up() -> None:
    delay = [100.0]
    line = DelayLine(lambda: delay[0])
    for i in range(10):
        line.push(_chunk(20 * i))
    assert line.due(int(99e6)) == []
    assert [c.t_capture_ns for c in line.due(int(145e6))] == [0, int(20e6), int(40e6)]
    delay[0] = 20.0  # the picture got faster: play on time, drop what would be late
    out = line.due(int(200e6))
    assert out and out[-1].t_capture_ns == int(180e6)
    assert line.dropped_ms > 0 and all(200 - c.t_capture_ns / 1e6 - 20 <= 80 for c in out)
    delay[0] = 5000.0  # clamped to max_ms
    assert line.current_ms() == line.max_ms


def test_delay_line_is_bounded() -> None:
    line = DelayLine(lambda: 0.0, max_ms=100)
    for i in range(50):
        line.push(_chunk(20 * i))
    assert len(line.chunks) <= 7 and line.overflow_ms > 0


def test_recording_speaker_checks_what_it_plays() -> None:
    speaker = RecordingSpeaker()
    speaker.play(tone(0.02))
    for bad in (tone(0.02).astype(np.float32), np.zeros((CHUNK, 2), np.int16)):
        with pytest.raises(ValueError):
            speaker.play(bad)
    assert speaker.duration_s == pytest.approx(0.02) and speaker.rms() > 1000


# -- PulseAudio: devices and the virtual microphone -----------------------------------


@pytest.mark.usefixtures("pulse_server")
def test_virtual_microphone_carries_what_is_written_and_unloads() -> None:
    from avatar_cam.audio import pulse
    from avatar_cam.audio.virtual_mic import SOURCE, VirtualMic

    vmic = VirtualMic()
    try:
        assert pulse.source_exists(SOURCE)
        assert "avatar-cam microphone" in pulse.pactl("list", "sources")
        listener = open_mic(f"device:{SOURCE}")  # what Zoom would record
        assert listener is not None
        x = tone(1.0, 500.0, level=0.3)
        for i in range(0, len(x), CHUNK):
            vmic.write(x[i:i + CHUNK])
        heard = np.concatenate([listener.read().samples for _ in range(40)])  # type: ignore[union-attr]
        listener.close()
    finally:
        vmic.close()
    assert not pulse.source_exists(SOURCE)
    assert "avatar_cam" not in pulse.pactl("list", "short", "modules")  # both unloaded
    assert abs(dominant_hz(heard) - 500.0) < 10 and rms(heard) > 0.5 * rms(x)


@pytest.mark.usefixtures("pulse_server")
def test_default_speaker_and_microphone_on_the_sound_server() -> None:
    """What the default speaker plays reaches the default sink; its monitor, read as a
    named microphone, hears it."""
    from avatar_cam.audio import pulse

    sink = [line for line in pulse.pactl("info").splitlines() if "Default Sink" in line]
    assert sink, "the server has a default sink"
    monitor = sink[0].split(":", 1)[1].strip() + ".monitor"
    listener = open_mic(f"device:{monitor}")
    speaker = open_speaker("default")
    assert listener is not None and speaker is not None
    x = tone(1.0, 700.0)
    for i in range(0, len(x), CHUNK):
        speaker.play(x[i:i + CHUNK])
    heard = np.concatenate([listener.read().samples for _ in range(40)])  # type: ignore[union-attr]
    listener.close()
    speaker.close()
    assert abs(dominant_hz(heard) - 700.0) < 15 and rms(heard) > 0.2 * rms(x)


@pytest.mark.usefixtures("pulse_server")
def test_devices_that_do_not_exist_are_one_clear_line() -> None:
    for spec, opener in (("device:no-such-mic", open_mic), ("device:no-such-speaker",
                                                             open_speaker)):
        with pytest.raises(AudioError) as caught:
            opener(spec)
        assert "no-such" in str(caught.value) and "pactl list" in str(caught.value)


@pytest.mark.usefixtures("pulse_server")
def test_run_virtual_mic_passes_the_voice_behind_the_picture(tmp_path: Path,
                                                            single_face_mp4: Path) -> None:
    """`avatar-cam run --virtual-mic --mic file:...` on a real clip: the virtual source
    carries the file's tone while the avatar runs."""
    from avatar_cam.audio.virtual_mic import SOURCE

    wav = write_wav(tmp_path / "voice.wav", tone(30.0, 600.0))
    run = subprocess.Popen(
        [sys.executable, "-m", "avatar_cam.cli", "run", "--person", "demo", "--video",
         str(single_face_mp4), "--loop", "--sink", "null", "--renderer", "warp",
         "--virtual-mic", "--mic", f"file:{wav}", "--frames", "240"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    from avatar_cam.audio import pulse

    t_end = time.monotonic() + 60
    while not pulse.source_exists(SOURCE):
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        assert time.monotonic() < t_end, "the virtual microphone never appeared"
        time.sleep(0.2)
    listener = open_mic(f"device:{SOURCE}")
    assert listener is not None
    heard = np.concatenate([listener.read().samples for _ in range(100)])  # type: ignore[union-attr]
    listener.close()
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err[-2000:]
    assert 'virtual microphone "avatar-cam microphone"' in err
    assert not pulse.source_exists(SOURCE)  # unloaded at the end
    loud = heard[np.abs(heard) > 1000]
    assert len(loud) > RATE // 2 and abs(dominant_hz(heard[-RATE:]) - 600.0) < 10
