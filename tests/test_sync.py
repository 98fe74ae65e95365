"""The lip-sync test signal and its measurement: the signal's mouth opens when its bursts
start, and the measurement (real MediaPipe on the pictures, the bursts' onsets in the
sound) recovers a known shift of the sound against the picture, from an mp4 written by
the real file sink and from speaker chunks with their play times."""

from __future__ import annotations

import sys
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from avatar_cam.audio.chunk import CHUNK, RATE
from avatar_cam.sinks import FileSink
from avatar_cam.sync_signal import SyncSignal, make_signal, plan
from avatar_cam.types import AvatarFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _sync_measure as sm  # noqa: E402

SECONDS = 4.0
SHIFTS_MS = (-40.0, 0.0, 80.0)
TOLERANCE_MS = 2.0  # the sound's onsets to ~0.1 ms, the pictures' at their frame times


@pytest.fixture(scope="module")
def signal(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyncSignal, Path, Path]:
    folder = tmp_path_factory.mktemp("signal")
    video, wav = folder / "clip.mp4", folder / "tone.wav"
    return make_signal(video, wav, SECONDS), video, wav


def wav_samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)


def clip_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_the_plan_puts_onsets_on_frames_and_checks_its_timing() -> None:
    sig = plan(10.0, 1.0, first_s=0.5, fps=30.0)
    assert sig.onsets_s == tuple(0.5 + k for k in range(10))
    assert all(abs(t * 30 - round(t * 30)) < 1e-9 for t in plan(5, 0.7, fps=30).onsets_s)
    assert sig.opening(0.5) == sig.jaw and sig.opening(0.4999) == 0.0
    assert sig.opening(0.74) == sig.jaw and sig.opening(0.76) == 0.0
    for bad in ({"open_s": 1.5}, {"tone_s": 0.0}, {"jaw": 2.0}, {"fps": 0.0}):
        with pytest.raises(ValueError):
            plan(10.0, 1.0, **bad)


def test_the_sound_and_the_mouth_of_the_signal_start_together(
        signal: tuple[SyncSignal, Path, Path]) -> None:
    sig, video, wav = signal
    samples = wav_samples(wav)
    assert len(samples) == round(SECONDS * RATE)
    sound = sm.audio_onsets(samples, np.arange(len(samples)) / RATE)
    assert np.abs(sound - np.asarray(sig.onsets_s)).max() < 1e-4  # under 0.1 ms
    burst = samples[round(sig.onsets_s[0] * RATE):][:round(0.1 * RATE)]
    spectrum = np.abs(np.fft.rfft(burst.astype(np.float64)))
    assert abs(np.fft.rfftfreq(len(burst), 1 / RATE)[np.argmax(spectrum)] - sig.tone_hz) < 15
    frames = clip_frames(video)
    assert len(frames) == sig.frames and frames[0].shape == (480, 640, 3)
    times, gaps = sm.mouth_apertures((n / sig.fps, f) for n, f in enumerate(frames))
    assert np.isfinite(gaps).mean() > 0.99  # MediaPipe finds the face throughout
    mouth = sm.mouth_onsets(times, gaps)
    assert np.abs(mouth - np.asarray(sig.onsets_s)).max() < 1e-6  # the very frame
    shut = [g for t, g in zip(times, gaps, strict=True) if sig.opening(t) == 0]
    wide = [g for t, g in zip(times, gaps, strict=True) if sig.opening(t) > 0]
    assert min(wide) - max(shut) > 0.05  # open is open, shut is shut (head sway and all)


def shifted_mp4(sig: SyncSignal, video: Path, wav: Path, out: Path, shift_ms: float) -> None:
    """The clip and its sound through the real file sink, the sound played ``shift_ms``
    later than the picture of the same instant (frames come faster than real time, so
    the file has one a period from the first hand-off)."""
    samples = wav_samples(wav)
    frames = clip_frames(video)
    with FileSink(out, frames[0].shape[1], frames[0].shape[0], sig.fps) as sink:
        t0 = time.monotonic_ns()
        sink.send(AvatarFrame(seq=0, t_capture_ns=t0, image=frames[0]))
        for n, image in enumerate(frames[1:], 1):
            sink.send(AvatarFrame(seq=n, t_capture_ns=t0, image=image))
        start = t0 + round(shift_ms * 1e6)
        for i in range(0, len(samples), CHUNK):
            sink.play(samples[i:i + CHUNK], start + i * 1_000_000_000 // RATE)


@pytest.mark.parametrize("shift_ms", SHIFTS_MS)
def test_a_known_shift_in_a_recording_is_measured(signal: tuple[SyncSignal, Path, Path],
                                                  tmp_path: Path, shift_ms: float,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_CONFIG", str(tmp_path / "config"))  # the sink signs
    sig, video, wav = signal
    out = tmp_path / "shifted.mp4"
    shifted_mp4(sig, video, wav, out, shift_ms)
    got = sm.measure_mp4(out, sig.period_s, len(sig.onsets_s), sig.tone_hz)
    assert got["pairs"] == got["expected"] == len(sig.onsets_s), got
    offsets = np.asarray(got["offsets_ms"])
    assert np.abs(offsets - shift_ms).max() < TOLERANCE_MS, (shift_ms, offsets)
    assert got["meets_target"] == (-sm.AHEAD_MS <= shift_ms <= sm.BEHIND_MS)
    assert got["within_target"] == (1.0 if got["meets_target"] else 0.0)


def test_speaker_chunks_are_measured_by_their_play_times(
        signal: tuple[SyncSignal, Path, Path]) -> None:
    """The other form: frames with arrival times, chunks as a recording speaker keeps them
    (jittery play times: each chunk's own time counts, not a running sample count)."""
    sig, video, wav = signal
    samples = wav_samples(wav)
    rng = np.random.default_rng(0)
    shift_ns = 25_000_000
    chunks = [(10**12 + shift_ns + i * 1_000_000_000 // RATE + int(rng.integers(0, 3_000_000))
               if i % (CHUNK * 7) == 0 else
               10**12 + shift_ns + i * 1_000_000_000 // RATE, samples[i:i + CHUNK])
              for i in range(0, len(samples), CHUNK)]
    audio, times = sm.chunk_times(chunks)
    frames = ((1000.0 + n / sig.fps, f) for n, f in enumerate(clip_frames(video)))
    got = sm.measure(frames, audio, times, sig.period_s, len(sig.onsets_s), sig.tone_hz)
    assert got["pairs"] == len(sig.onsets_s)
    assert np.abs(np.asarray(got["offsets_ms"]) - 25.0).max() < 3.5  # the jitter added


def test_silence_or_a_still_face_gives_no_pairs_not_an_error() -> None:
    assert len(sm.audio_onsets(np.zeros(RATE, np.int16), np.arange(RATE) / RATE)) == 0
    still = np.full(60, 0.05)
    assert len(sm.mouth_onsets(np.arange(60) / 30.0, still)) == 0
    got = sm.summarise(sm.pair(np.zeros(0), np.asarray([1.0]), 1.0), 5)
    assert got == {"pairs": 0, "expected": 5}


def test_a_flicker_of_the_mouth_before_an_opening_is_not_taken_for_it() -> None:
    """MediaPipe on a small received face reads a shut mouth half open for a frame or
    two now and then; taken for the onset, such a flicker hid the true opening 0.4 s
    later (within the half period) and read as sound 0.4 s late."""
    times = np.arange(90) / 30.0
    gaps = np.full(90, 0.002)
    gaps[[20, 26, 27]] = 0.08  # flickers: one frame, then two
    gaps[32:40] = 0.12  # the opening, held 8 frames (0.27 s)
    gaps[62:70] = 0.12
    got = sm.mouth_onsets(times, gaps)
    assert np.allclose(got, [32 / 30.0, 62 / 30.0])
    assert np.allclose(sm.mouth_onsets(times, gaps, held=1), [20 / 30.0, 62 / 30.0])
