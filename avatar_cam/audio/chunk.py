"""The unit of sound the call moves: 20 ms of 48 kHz mono int16, stamped with its capture
time on the same clock as the video frames (``time.monotonic_ns()``)."""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from ..errors import AvatarCamError

RATE = 48000
CHUNK = 960  # 20 ms


class AudioError(AvatarCamError):
    """A microphone, speaker or sound file that cannot be used."""


@dataclass
class AudioChunk:
    samples: np.ndarray  # (n,) int16, mono, RATE
    t_capture_ns: int  # when its first sample was captured


def check_samples(samples: object) -> np.ndarray:
    """``samples`` as (n,) int16, or ValueError saying what is wrong."""
    if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
        shape = getattr(samples, "shape", None)
        dtype = getattr(samples, "dtype", type(samples).__name__)
        raise ValueError(f"audio must be (n,) int16 mono at {RATE} Hz, got {dtype} {shape}")
    return samples


class MonoResampler:
    """Decoded sound of any rate, layout and sample format -> (n,) int16 mono at RATE:
    the one conversion every decoder here (files, devices, Opus, RTP voice) goes
    through. It keeps the resampler's state between frames of one stream."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)

    def __call__(self, frame: av.AudioFrame | None) -> np.ndarray:
        parts = [out.to_ndarray().reshape(-1) for out in self._resampler.resample(frame)]
        return np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
