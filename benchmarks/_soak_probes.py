"""What the soak benchmark puts at the ends of a call to measure it, in bounded memory.

- ``burst_wav``: the microphone: a 1 kHz tone burst at the start of every second (the
  file is a whole number of seconds, looped, so burst k starts exactly k periods after
  the file's sample 0, which the call stamps as its first frame's capture instant).
- ``StampedMic``: the file microphone, noting that instant (``t0_ns``) when the call
  starts it.
- ``BurstSpeaker``: the receiving side's speaker, a recording fake: it refuses what a real
  output would (not (n,) int16), counts every sample, and finds each burst's onset in what
  it is handed (the first sample over a quarter of the burst's level after at least
  ``QUIET_S`` under it), timed as the chunk's hand-over instant plus the sample's place in
  it (the chunk sounds from when it is handed over). Nothing else is kept.
- ``ArrivalSink``: the receiving side's video sink: per frame its arrival instant, and in
  video mode the frame number stamped in its corner (``PeerOptions.stamp``), looked up
  in the sender's ``FrameSlot.sent_at`` for its capture instant; in landmark mode the
  sender instant the receiver showed (``JitterSource.shown``) and the landmark encoder's
  t0. Live frames: in video mode every frame (nothing comes when nothing arrives); in
  landmark mode a frame whose shown instant is no later than the newest landmark frame
  that had arrived (``LandmarkReceiver.arrivals``, newest last): drawn from data, not
  held, extrapolated or eased towards rest. The sampler drains its per-second lists.
- ``SentPoints`` / ``ShownPoints``: the landmarks the sender encoded (by sender ms) and
  the ones the receiver drew (by frame), the last few of each, for the quality probe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from avatar_cam.audio.chunk import RATE, check_samples
from avatar_cam.sync_signal import write_wav
from avatar_cam.types import AvatarFrame, Landmarks
from avatar_cam.webrtc.tracks import read_stamp

PERIOD_S = 1.0
TONE_HZ, TONE_S, LEVEL = 1000.0, 0.1, 0.5  # burst: frequency, length, peak / full scale
QUIET_S = 0.3  # silence before an onset counts


def burst_wav(path: Path, seconds: int = 10) -> Path:
    n = np.arange(int(TONE_S * RATE))
    burst = LEVEL * 32767 * np.sin(2 * np.pi * TONE_HZ * n / RATE)
    burst[-int(0.005 * RATE):] *= np.linspace(1, 0, int(0.005 * RATE))  # 5 ms fade out
    samples = np.zeros(int(seconds * PERIOD_S * RATE))
    for k in range(seconds):
        start = int(k * PERIOD_S * RATE)
        samples[start:start + len(burst)] = burst
    write_wav(path, samples.astype(np.int16))
    return path


class StampedMic:
    """A microphone that notes the instant the call gives its sample 0."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.t0_ns: int | None = None

    def start(self, t0_ns: int | None = None) -> None:
        self.t0_ns = time.monotonic_ns() if t0_ns is None else t0_ns
        self.inner.start(self.t0_ns)

    def read(self) -> Any:
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


class BurstSpeaker:
    """See the module docstring."""

    def __init__(self) -> None:
        self.samples_played = 0
        self.closed = False
        self._lock = threading.Lock()
        self._onsets: list[int] = []  # ns, drained by ``take_onsets``
        self._last_loud = -10**12  # sample index (of all played) of the last loud sample
        self._threshold = 0.25 * LEVEL * 32767

    def play(self, samples: np.ndarray) -> None:
        if self.closed:
            raise ValueError("play() after close()")
        now = time.monotonic_ns()
        x = check_samples(samples)
        loud = np.flatnonzero(np.abs(x.astype(np.int32)) >= self._threshold)
        if len(loud):
            gaps = np.diff(np.concatenate([[self._last_loud - self.samples_played], loud]))
            starts = loud[gaps >= QUIET_S * RATE]
            with self._lock:
                self._onsets.extend(now + int(i * 1e9 / RATE) for i in starts)
            self._last_loud = self.samples_played + int(loud[-1])
        self.samples_played += len(x)

    def take_onsets(self) -> list[int]:
        with self._lock:
            out, self._onsets = self._onsets, []
        return out

    def close(self) -> None:
        self.closed = True


class ArrivalSink:
    """See the module docstring. ``sent_at`` (video) or ``shown``/``t0_ms`` (landmarks)
    are set by the benchmark once the call has them."""

    def __init__(self) -> None:
        self.frames_sent = 0
        self.sent_at: dict[int, int] | None = None  # video: stamp -> capture ns
        self.shown: dict[int, float] | None = None  # landmarks: frame -> sender ms shown
        self.t0_ms: int | None = None  # landmarks: the sender ms of its first frame
        self.arrivals: dict[int, int] | None = None  # landmarks: sender ms -> arrival ns
        self.unmatched = 0
        self.live = 0  # frames drawn from live data
        self._lock = threading.Lock()
        self._arrived: list[int] = []
        self._latency_ms: list[float] = []

    def send(self, frame: AvatarFrame) -> None:
        now = time.monotonic_ns()
        captured: float | None = None
        live = True
        if self.sent_at is not None:
            number = read_stamp(frame.image)
            captured = self.sent_at.get(number) if number is not None else None
        elif self.shown is not None and self.t0_ms is not None:
            t = self.shown.get(frame.seq)
            captured = (self.t0_ms + t) * 1e6 if t is not None and np.isfinite(t) else None
            arrivals = self.arrivals
            newest = next(reversed(arrivals), None) if arrivals else None
            live = t is not None and newest is not None and t <= newest
        with self._lock:
            self.frames_sent += 1
            self.live += live
            self._arrived.append(now)
            if captured is not None:
                self._latency_ms.append((now - captured) / 1e6)
            else:
                self.unmatched += 1

    def take(self) -> tuple[list[int], list[float]]:
        """Arrivals (ns) and latencies (ms) since the last call."""
        with self._lock:
            out = self._arrived, self._latency_ms
            self._arrived, self._latency_ms = [], []
        return out

    def close(self) -> None:
        pass


class SentPoints:
    """The sender's landmark encoder, remembering what it encoded: the last ``keep``
    frames' points by sender ms (the encoder's clock), handed to the real encoder."""

    def __init__(self, inner: Any, keep: int = 256) -> None:
        self.inner = inner
        self.keep = keep
        self.points: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, points: np.ndarray, t_ms: int, face: bool = True) -> bytes:
        packet: bytes = self.inner.encode(points, t_ms, face)
        with self._lock:
            self.points[t_ms - self.inner.t0_ms] = np.array(points, np.float32)
            while len(self.points) > self.keep:
                self.points.popitem(last=False)
        return packet

    def at(self, t_ms: float) -> np.ndarray | None:
        """The sender's points at sender instant ``t_ms``, interpolated between the two
        frames around it (None unless both are kept and at most 40 ms apart)."""
        with self._lock:
            times = list(self.points)
            if not times or not times[0] <= t_ms <= times[-1]:
                return None
            i = int(np.searchsorted(times, t_ms))
            if times[i] == t_ms:
                return self.points[times[i]]
            ta, tb = times[i - 1], times[i]
            if tb - ta > 40:
                return None
            u = (t_ms - ta) / (tb - ta)
            return self.points[ta] + u * (self.points[tb] - self.points[ta])


class ShownPoints:
    """The receiving pipeline's adapter stage (a pass-through there), remembering the
    landmarks of its last ``keep`` frames by frame number."""

    def __init__(self, inner: Any, keep: int = 64) -> None:
        self.inner = inner
        self.keep = keep
        self.points: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def drive(self, lm: Landmarks | None, seq: int, t_capture_ns: int) -> Landmarks:
        out: Landmarks = self.inner.drive(lm, seq, t_capture_ns)
        with self._lock:
            self.points[seq] = np.array(out.points, np.float32)
            while len(self.points) > self.keep:
                self.points.popitem(last=False)
        return out

    def newest(self) -> list[tuple[int, np.ndarray]]:
        with self._lock:
            return list(reversed(self.points.items()))

    def close(self) -> None:
        self.inner.close()
