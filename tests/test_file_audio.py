"""The file sink records sound with the picture: one mp4, H.264 + AAC, each placed by when
it was handed over (frames at send, sound at play). Real PyAV encoding and decoding, the
real c2pa library signing and reading; the sound is a generated tone (no microphone)."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from avatar_cam.audio.chunk import CHUNK, RATE
from avatar_cam.honesty.c2pa_manifest import read_manifest
from avatar_cam.recording import AHEAD_MS, SNAP_MS, Timeline
from avatar_cam.sinks import FileSink
from avatar_cam.types import AvatarFrame

W, H, FPS = 160, 96, 30.0
PERIOD_NS = int(1e9 / FPS)


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_CONFIG", str(tmp_path / "config"))  # a key of its own


def picture(n: int) -> np.ndarray:
    """Frame n (n < 50): a grey level that says n, and a bar that moves (motion to code)."""
    image = np.full((H, W, 3), 30 + 4 * n, np.uint8)
    x = (3 * n) % (W - 16)
    image[:, x:x + 16] = 230
    return image


def tone(n: int, hz: float = 1000.0, start: int = 0) -> np.ndarray:
    t = (start + np.arange(n)) / RATE
    return (0.4 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def decode(path: Path) -> tuple[list[tuple[float, np.ndarray]], np.ndarray, float]:
    """([(time s, BGR frame)], mono int16 sound from t = 0, the sound's first time s)."""
    with av.open(str(path)) as c:
        frames = [(float(f.time or 0.0), f.to_ndarray(format="bgr24"))
                  for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        first: float | None = None
        parts = []
        for f in c.decode(audio=0):
            if first is None:
                first = float(f.time or 0.0)
            parts.append(f.to_ndarray().reshape(-1))
    sound = (np.concatenate(parts) * 32767).astype(np.int16) if parts else np.zeros(0, np.int16)
    return frames, sound, first or 0.0


def send(sink: FileSink, n: int) -> int:
    t = time.monotonic_ns()
    sink.send(AvatarFrame(seq=n, t_capture_ns=t, image=picture(n)))
    return t


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[int(np.argmax(spectrum))])


def test_a_call_recording_holds_picture_and_sound(tmp_path: Path) -> None:
    """Frames and 20 ms chunks handed over live for 1.5 s, as in a call (the chunks
    stamped by the sink's clock, as a speaker's would be): two streams of the same length,
    the tone at its pitch, the frames as sent."""
    path = tmp_path / "call.mp4"
    frames = 45
    with FileSink(path, W, H, FPS) as sink:
        t0 = time.monotonic_ns()
        played = 0
        sent_at = []
        for n in range(frames):
            while time.monotonic_ns() < t0 + n * PERIOD_NS:
                time.sleep(0.001)
            t = send(sink, n)
            sent_at.append(t)
            while t0 + played * CHUNK * 1_000_000_000 // RATE <= t:  # the sound due by now
                sink.play(tone(CHUNK, start=played * CHUNK))
                played += 1
        assert sink.counts["sound_samples"] == played * CHUNK
    got, sound, _ = decode(path)
    with av.open(str(path)) as c:
        codecs = {s.type: s.codec_context.name for s in c.streams}
        duration = {s.type: float((s.duration or 0) * (s.time_base or 0)) for s in c.streams}
    assert sorted(codecs) == ["audio", "video"] and codecs["audio"] == "aac"
    assert codecs["video"] in ("h264", "mpeg4")
    # Each stream as long as what was handed over (a loaded machine may send late: the
    # picture then lasts as long as it took), within a frame, and a chunk plus one AAC
    # frame of 1024 samples (its padding).
    assert abs(duration["audio"] - played * CHUNK / RATE) < (CHUNK + 1024) / RATE, duration
    span = (sent_at[-1] - sent_at[0]) / 1e9 + 1 / FPS
    assert abs(duration["video"] - span) < 1 / FPS, (duration, span)
    assert len(got) == frames
    sent = np.stack([picture(n) for n in range(frames)]).astype(np.int16)
    for n, (_, image) in enumerate(got):  # each decoded frame is the one sent, in order
        error = np.abs(sent - image.astype(np.int16)).mean(axis=(1, 2, 3))
        assert int(np.argmin(error)) == n and error[n] < 4.0, (n, error[n])
    body = sound[RATE // 10:-RATE // 10]
    assert abs(dominant_hz(body) - 1000.0) < 5
    assert np.sqrt(np.mean(body.astype(np.float64) ** 2)) > 0.2 * 32767


def test_sound_lands_where_it_was_played_to_the_millisecond(tmp_path: Path) -> None:
    """A sharp onset played at the instant frame 20 was sent sits at that frame's time in
    the file (AAC's encoder delay and the copy into the mp4 taken into account)."""
    path = tmp_path / "onset.mp4"
    with FileSink(path, W, H, FPS) as sink:
        t0 = time.monotonic_ns()
        times = []
        for n in range(40):
            while time.monotonic_ns() < t0 + n * PERIOD_NS:
                time.sleep(0.001)
            times.append(send(sink, n))
        # Silence, then the tone from exactly frame 20's hand-off, as one seamless sound.
        lead = (times[20] - times[0]) * RATE // 1_000_000_000
        samples = np.concatenate([np.zeros(lead, np.int16), tone(RATE // 2)])
        for i in range(0, len(samples), CHUNK):
            sink.play(samples[i:i + CHUNK], times[0] + i * 1_000_000_000 // RATE)
    got, sound, first = decode(path)
    onset = first + int(np.argmax(np.abs(sound.astype(np.int32)) > 0.2 * 32767)) / RATE
    assert abs(onset - got[20][0]) < 0.0015, (onset, got[20][0])
    assert abs(got[20][0] - (times[20] - times[0]) / 1e9) < 0.001


def test_without_sound_the_file_is_picture_only_and_keeps_its_rate(tmp_path: Path) -> None:
    """Frames sent faster than real time (a clip rendered offline): one frame a period."""
    path = tmp_path / "quiet.mp4"
    with FileSink(path, W, H, FPS) as sink:
        for n in range(12):
            sink.send(AvatarFrame(seq=n, t_capture_ns=n, image=picture(n)))
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["video"]
        times = [float(f.time) for f in c.decode(video=0)]
    assert np.allclose(np.diff(times), 1 / FPS, atol=1e-4)
    assert not list(tmp_path.glob(".quiet.mp4*"))  # no side file left behind


def test_a_live_feed_that_stalls_keeps_its_frames_where_they_were_shown() -> None:
    timeline = Timeline(FPS)
    at = [0, PERIOD_NS, 2 * PERIOD_NS, 2 * PERIOD_NS + 500_000_000, 3 * PERIOD_NS + 500_000_000]
    ticks = [timeline.frame_ticks(1_000_000 + t) for t in at]
    assert ticks == [round(t * 90_000 / 1e9) for t in at]
    rendered = Timeline(FPS)  # an offline render: one frame a period
    assert [rendered.frame_ticks(5 + n) for n in range(4)] == [0, 3000, 6000, 9000]
    brisk = Timeline(FPS)  # a live feed a little over its rate: as shown, no drift
    at = [round(n * 0.95 * PERIOD_NS) for n in range(300)]
    assert [brisk.frame_ticks(t) for t in at] == [round(t * 90_000 / 1e9) for t in at]


def test_odd_sound_is_refused_or_counted_never_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    sink = FileSink(path, W, H, FPS)
    t0 = send(sink, 0)
    for bad in (np.zeros(CHUNK, np.float32), np.zeros((CHUNK, 2), np.int16), [0] * CHUNK,
                None):
        with pytest.raises(ValueError, match="int16 mono"):
            sink.play(bad)  # type: ignore[arg-type]
    sink.play(np.zeros(0, np.int16), t0)  # nothing to record: fine
    sink.play(tone(CHUNK), t0)
    sink.play(tone(CHUNK), t0 + 200_000_000)  # 180 ms gap: silence, counted
    assert sink.counts["sound_gaps"] == 1
    sink.play(tone(CHUNK), t0)  # handed over 200 ms before its place: too far, dropped
    assert sink.counts["sound_samples_dropped"] == CHUNK
    # Chunks handed over together (a burst) queue, as on a speaker, up to AHEAD_MS.
    queued = int(AHEAD_MS * RATE / 1000) // CHUNK
    for _ in range(queued):
        sink.play(tone(CHUNK), t0 + 200_000_000)
    assert sink.counts["sound_samples_dropped"] == CHUNK
    sink.play(tone(CHUNK), t0 + 200_000_000)
    assert sink.counts["sound_samples_dropped"] == 2 * CHUNK - (
        int(AHEAD_MS * RATE / 1000) - queued * CHUNK)
    # A gap within SNAP_MS is closed: no silence inserted.
    gaps = sink.counts["sound_gaps"]
    sink.play(tone(CHUNK), t0 + 200_000_000 + (queued + 1) * CHUNK * 1_000_000_000 // RATE
              + int(SNAP_MS / 2 * 1e6))
    assert sink.counts["sound_gaps"] == gaps
    sink.close()
    sink.play(tone(CHUNK))  # the call's last chunk racing the close
    assert sink.counts["sound_after_close"] == 1
    _, sound, _ = decode(path)
    assert len(sound) >= (0.2 * RATE + 2 * CHUNK) * 0.98


def test_a_recording_with_sound_carries_a_valid_manifest(tmp_path: Path) -> None:
    path = tmp_path / "signed.mp4"
    with FileSink(path, W, H, FPS) as sink:
        t0 = send(sink, 0)
        for i in range(10):
            sink.play(tone(CHUNK, start=i * CHUNK), t0 + i * CHUNK * 1_000_000_000 // RATE)
        send(sink, 1)
    assert sink.manifest_error is None
    report = read_manifest(path)
    assert report.present and report.valid and not report.failed, report.failures
    with av.open(str(path)) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]
