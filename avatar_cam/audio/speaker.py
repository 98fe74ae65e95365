"""Speakers: where the peer's voice plays.

``open_speaker(spec)``: ``"default"`` (or None) the default output, ``"device:NAME"`` a
named one, ``"none"`` nowhere (None). ``play(samples)`` takes 48 kHz mono int16 chunks and
may block for a moment (the caller runs it in its executor). Linux plays through
PulseAudio/PipeWire (``pulse.Play``); other systems have no speaker here yet: record the
call with ``--sink file:call.mp4`` (sound included) instead.

``RecordingSpeaker`` keeps what it is given, checked, with the time it came: the speaker
of tests and benchmarks on machines without sound hardware.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

import numpy as np

from . import pulse
from .chunk import RATE, AudioError, check_samples


class Speaker(Protocol):
    def play(self, samples: np.ndarray) -> None: ...
    def close(self) -> None: ...


class PulseSpeaker:
    def __init__(self, device: str | None) -> None:
        self._out = pulse.Play(device)
        self.samples_played = 0

    def play(self, samples: np.ndarray) -> None:
        self._out.write(check_samples(samples))
        self.samples_played += len(samples)

    def close(self) -> None:
        self._out.close()


class RecordingSpeaker:
    """Keeps (time.monotonic_ns() at play, samples) of every chunk; rejects what is not
    48 kHz-style mono int16 (ValueError), as a real output would refuse it."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.closed = False

    def play(self, samples: np.ndarray) -> None:
        if self.closed:
            raise ValueError("play() after close()")
        self.chunks.append((time.monotonic_ns(), check_samples(samples).copy()))

    @property
    def duration_s(self) -> float:
        return sum(len(s) for _, s in self.chunks) / RATE

    def rms(self) -> float:
        if not self.chunks:
            return 0.0
        x = np.concatenate([s for _, s in self.chunks]).astype(np.float64)
        return float(np.sqrt(np.mean(x ** 2)))

    def close(self) -> None:
        self.closed = True


def open_speaker(spec: str | None) -> Speaker | None:
    spec = spec or "default"
    if spec == "none":
        return None
    if spec != "default" and not (spec.startswith("device:") and spec[7:]):
        raise AudioError(f"--speaker {spec!r} is not a speaker",
                         "use default, device:NAME or none")
    if not sys.platform.startswith("linux"):
        raise AudioError(f"no speaker output on {sys.platform} yet",
                         "record the call with --sink file:call.mp4 (it keeps the sound), "
                         "or --speaker none")
    return PulseSpeaker(spec[7:] if spec.startswith("device:") else None)
