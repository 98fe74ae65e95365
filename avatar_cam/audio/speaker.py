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
    """The peer's voice into a PulseAudio/PipeWire sink (``pulse.Play``). ``underruns``
    counts the times the feed left the server with nothing to play (a lower bound, from
    the feed's own timing)."""

    def __init__(self, device: str | None, latency_ms: int = 40) -> None:
        self._out = pulse.Play(device, latency_ms=latency_ms)

    def play(self, samples: np.ndarray) -> None:
        self._out.write(check_samples(samples))

    @property
    def samples_played(self) -> int:
        return self._out.samples_written

    @property
    def underruns(self) -> int:
        return self._out.underruns

    def close(self) -> None:
        self._out.close()


class RecordingSpeaker:
    """Keeps (time.monotonic_ns() at play, samples) of every chunk; rejects what is not
    48 kHz-style mono int16 (ValueError), as a real output would refuse it."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.closed = False
        self.samples_played = 0

    def play(self, samples: np.ndarray) -> None:
        if self.closed:
            raise ValueError("play() after close()")
        self.chunks.append((time.monotonic_ns(), check_samples(samples).copy()))
        self.samples_played += len(samples)

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
