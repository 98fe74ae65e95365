"""A lip-sync test signal: a driving clip whose mouth opens at known instants, and a
sound file whose tone bursts start at exactly those instants.

Play the clip as the camera and the sound file as the microphone
(``--video clip.mp4 --mic file:tone.wav``); at the far end, each burst's onset against
the mouth opening that came with it is the call's audio-to-picture offset
(benchmarks/_sync_measure.py finds both, benchmarks/lipsync.py runs the calls).

The clip is the synthetic driver's footage (``footage.Footage``: a person's photo moved
by the warp renderer, framed like a webcam, so a tracker finds a real-looking face): the
jaw opens as a step, from shut to ``jaw`` in one frame, for ``open_s``, every
``period_s``, on a frame's instant; between, the mouth is shut and the head sways a few
degrees (slow, incommensurate sines) so nothing is trivially static. Each burst is a
``tone_hz`` sine from phase 0 at its onset sample (a step in loudness), ``tone_s``
long, ending with a 5 ms fade.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import motion
from .audio.chunk import RATE
from .footage import Footage
from .person import Person

FADE_S = 0.005  # the end of a burst (its start is a step: that is what is measured)


@dataclass(frozen=True)
class SyncSignal:
    """What ``make_signal`` wrote: onset instants are seconds from the clip's frame 0,
    which is the sound file's sample 0."""

    onsets_s: tuple[float, ...]
    fps: float
    frames: int
    period_s: float
    open_s: float
    tone_hz: float
    tone_s: float
    jaw: float

    def opening(self, t_s: float) -> float:
        """The jaw's opening (0..1) at clip time ``t_s``: ``jaw`` inside an opening."""
        k = math.floor((t_s - self.onsets_s[0]) / self.period_s + 1e-9) if self.onsets_s \
            else -1
        if 0 <= k < len(self.onsets_s):
            start = self.onsets_s[k]
            if start - 1e-9 <= t_s < start + self.open_s - 1e-9:
                return self.jaw
        return 0.0

    def motion_at(self, t_s: float) -> motion.Motion:
        return motion.Motion(
            yaw=5.0 * math.sin(2 * math.pi * t_s / 7.3),
            pitch=3.0 * math.sin(2 * math.pi * t_s / 5.1 + 1.0),
            roll=2.0 * math.sin(2 * math.pi * t_s / 9.7 + 0.4),
            jaw_open=self.opening(t_s),
            offset_x=0.02 * math.sin(2 * math.pi * t_s / 11.0),
        )

    def samples(self, level: float = 0.5) -> np.ndarray:
        """The sound file's (n,) int16 samples at 48 kHz, as long as the clip."""
        out = np.zeros(round(self.frames / self.fps * RATE), np.int16)
        n = round(self.tone_s * RATE)
        fade = round(FADE_S * RATE)
        burst = level * 32767 * np.sin(2 * np.pi * self.tone_hz * np.arange(n) / RATE)
        burst[n - fade:] *= np.linspace(1.0, 0.0, fade)
        for t in self.onsets_s:
            start = round(t * RATE)
            stop = min(start + n, len(out))
            out[start:stop] = burst[:stop - start].astype(np.int16)
        return out


def plan(seconds: float = 60.0, period_s: float = 1.0, *, open_s: float = 0.25,
         first_s: float = 0.5, fps: float = 30.0, tone_hz: float = 1000.0,
         tone_s: float = 0.2, jaw: float = 0.8) -> SyncSignal:
    """The signal's timing, checked: onsets on frame instants, bursts and openings shorter
    than the period."""
    if not (seconds > 0 and fps > 0 and period_s > 0):
        raise ValueError(f"seconds, fps and period_s must be positive, got {seconds}, {fps}, "
                         f"{period_s}")
    if not (0 < open_s < period_s and 0 < tone_s < period_s and tone_s > 2 * FADE_S):
        raise ValueError(f"open_s and tone_s must be within the period {period_s} s, got "
                         f"{open_s}, {tone_s}")
    if not (0 < jaw <= 1):
        raise ValueError(f"jaw must be in (0, 1], got {jaw}")
    frames = round(seconds * fps)
    onsets = []
    k = 0
    while True:
        frame = round((first_s + k * period_s) * fps)  # on a frame's instant
        if frame / fps + max(open_s, tone_s) > frames / fps:
            break
        onsets.append(frame / fps)
        k += 1
    return SyncSignal(tuple(onsets), float(fps), frames, float(period_s), float(open_s),
                      float(tone_hz), float(tone_s), float(jaw))


class _SyncFootage(Footage):
    signal: SyncSignal  # set after construction (Footage is a dataclass)

    def landmarks_at(self, t_s: float) -> np.ndarray:
        return motion.animate(self.person.neutral, self.signal.motion_at(t_s))


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def make_signal(path_video: str | Path, path_wav: str | Path, seconds: float = 60.0,
                period_s: float = 1.0, *, person: Person | None = None,
                size: tuple[int, int] = (640, 480), **timing: float) -> SyncSignal:
    """Write the driving clip (mp4, ``size``) and its sound file (WAV, 48 kHz mono);
    ``person`` acts it (default: the shipped demo identity). ``timing``: plan()'s keywords
    (open_s, first_s, fps, tone_hz, tone_s, jaw). About 15 ms a frame to render here."""
    from .person import load_person

    signal = plan(seconds, period_s, **timing)
    footage = _SyncFootage(person or load_person("demo"), size, signal.fps)
    footage.signal = signal
    footage.write(Path(path_video), signal.frames)
    write_wav(Path(path_wav), signal.samples())
    return signal
