"""Voice in calls: two real aiortc peers in one process, a WAV file as each microphone and
a recording speaker on each end that checks what it receives (the machine has no sound
hardware), in video mode (Opus over RTP) and in landmark-only mode (Opus frames in the
landmark bundles, played on the picture's clock)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from call_helpers import RecordingSink, _call, _hang_up, _local, _setup_loop

from avatar_cam.audio.chunk import RATE
from avatar_cam.audio.mic import open_mic
from avatar_cam.audio.speaker import RecordingSpeaker
from avatar_cam.person import Person, load_person
from avatar_cam.webrtc.basis import ExpressionBasis
from avatar_cam.webrtc.enroll import learn_basis


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


def tone_wav(path: Path, hz: float, seconds: float, level: float = 0.3) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    samples = (level * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


def dominant_hz(samples: np.ndarray) -> float:
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[int(np.argmax(spectrum))])


def heard(speaker: RecordingSpeaker) -> np.ndarray:
    return np.concatenate([s for _, s in speaker.chunks]) if speaker.chunks else np.zeros(0)


async def _voice_call(person: Person, tmp_path: Path, opts: Any,
                      basis: ExpressionBasis | None) -> dict[str, Any]:
    _setup_loop()
    mics = [open_mic("file:" + str(tone_wav(tmp_path / f"{hz}.wav", hz, 20.0)))
            for hz in (440.0, 880.0)]
    la, lb = (_local(person, opts, basis, mic=m) for m in mics)
    runs = [asyncio.ensure_future(x.run()) for x in (la, lb)]
    spa, spb = RecordingSpeaker(), RecordingSpeaker()
    from avatar_cam.webrtc.peer import Peer

    a, b = Peer(la, RecordingSink(), opts, spa), Peer(lb, RecordingSink(), opts, spb)
    try:
        await _call(a, b, 30.0, lambda: min(spa.duration_s, spb.duration_s) >= 2.0)
        return {"a": spa, "b": spb, "stats_a": a.stats(), "stats_b": b.stats()}
    finally:
        await _hang_up((a, b), (la, lb), runs)


def _check_heard(got: dict[str, Any]) -> None:
    # Each end hears the other's tone: 880 Hz at a, 440 Hz at b.
    for end, hz in (("a", 880.0), ("b", 440.0)):
        speaker: RecordingSpeaker = got[end]
        samples = heard(speaker)
        assert speaker.duration_s >= 2.0, (end, speaker.duration_s, got[f"stats_{end}"])
        tail = samples[-RATE:]  # the last second: past any start-up silence
        assert np.sqrt(np.mean(tail.astype(np.float64) ** 2)) > 2000  # ~0.3 full scale sent
        assert abs(dominant_hz(tail) - hz) < 10, (end, dominant_hz(tail))


def test_video_call_carries_voice_both_ways(person: Person, tmp_path: Path) -> None:
    from avatar_cam.webrtc.options import PeerOptions

    got = asyncio.run(_voice_call(person, tmp_path, PeerOptions(out_size=(320, 240)), None))
    _check_heard(got)


def test_landmark_call_carries_voice_in_the_bundles(person: Person, tmp_path: Path) -> None:
    from avatar_cam.webrtc.options import PeerOptions

    basis = ExpressionBasis.from_bytes(
        learn_basis(person.neutral, (person.crop_size, person.crop_size)).to_bytes())
    opts = PeerOptions(landmarks_only=True, out_size=(320, 240), bundle_frames=3)
    got = asyncio.run(_voice_call(person, tmp_path, opts, basis))
    _check_heard(got)
    for end in ("a", "b"):
        stats = got[f"stats_{end}"]
        assert stats.get("bundle_malformed", 0) == 0
        assert stats.get("voice_samples_played", 0) >= 2 * RATE


def test_a_peer_that_sends_no_voice_is_a_silent_call_not_an_error(person: Person,
                                                                   tmp_path: Path) -> None:
    """b has no microphone: a hears nothing (its speaker gets no samples), b hears a."""
    from avatar_cam.webrtc.options import PeerOptions
    from avatar_cam.webrtc.peer import Peer

    async def main() -> tuple[RecordingSpeaker, RecordingSpeaker, dict[str, Any]]:
        _setup_loop()
        opts = PeerOptions(out_size=(320, 240))
        la = _local(person, opts, mic=open_mic("file:" + str(
            tone_wav(tmp_path / "a.wav", 440.0, 20.0))))
        lb = _local(person, opts)
        runs = [asyncio.ensure_future(x.run()) for x in (la, lb)]
        spa, spb = RecordingSpeaker(), RecordingSpeaker()
        sa = RecordingSink()
        a, b = Peer(la, sa, opts, spa), Peer(lb, RecordingSink(), opts, spb)
        try:
            await _call(a, b, 20.0, lambda: spb.duration_s >= 1.0 and sa.count > 30)
            return spa, spb, a.stats()
        finally:
            await _hang_up((a, b), (la, lb), runs)

    spa, spb, stats_a = asyncio.run(main())
    assert spb.duration_s >= 1.0
    assert spa.duration_s == 0.0
    assert stats_a.get("frames_received", 0) > 30  # the picture still came


def test_missing_or_unreadable_microphone_files_are_one_clear_line(tmp_path: Path) -> None:
    from avatar_cam.errors import AvatarCamError
    from avatar_cam.webrtc.commands import open_voice_input

    (tmp_path / "noise.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    for spec in (f"file:{tmp_path / 'missing.wav'}", f"file:{tmp_path / 'noise.wav'}"):
        with pytest.raises(AvatarCamError) as caught:
            open_voice_input(spec)
        assert "\n" not in str(caught.value).strip()
    assert open_voice_input("none") is None
