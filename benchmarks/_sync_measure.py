"""Lip sync at a receiver, from what it produced: the tone bursts' onsets in the sound
against the mouth openings MediaPipe finds in the pictures (avatar_cam.sync_signal made
the pair the sender played).

- Sound: energy (x^2) averaged over one tone period (1 ms at 1 kHz: no ripple), centred;
  a burst starting as a step crosses half its level exactly at its first sample, so the
  onset is that crossing, interpolated between samples (well under 0.1 ms on the clean
  signal; each sample's time from the chunk it came in).
- Picture: the inner-lip gap (landmarks 13-14) over the eye-corner distance, raw
  MediaPipe (no smoothing, which would delay it). A display holds each frame until the
  next, so an opening shows at the time of the first frame whose gap is past halfway
  between shut and open (10th and 90th percentiles): resolution one frame, exact for
  the signal, whose mouth opens in one frame on the instant its burst starts. An
  opening counts only if it is held ``HELD_FRAMES`` frames (the signal holds it 0.25 s):
  on a small received face MediaPipe reads a shut mouth half open for a frame or two
  now and then (seen at 320x240 on the demo avatar, 0.3-0.4 s before a burst), and such
  a flicker taken for the onset hid the true one (within ``min_gap_s`` of it) and read
  as sound 350-420 ms late.
- Pairs: each sound onset with the nearest mouth onset within half a period; offset =
  sound - picture (positive: the sound comes after the picture).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from avatar_cam import mesh
from avatar_cam.audio.chunk import RATE

AHEAD_MS, BEHIND_MS = 30.0, 60.0  # the target: audio at most this far ahead / behind, p95
HELD_FRAMES = 3  # frames a mouth must stay open to count as an opening


def audio_onsets(samples: np.ndarray, times_s: np.ndarray, tone_hz: float = 1000.0,
                 min_gap_s: float = 0.5) -> np.ndarray:
    """Onset times (s) of the bursts in (n,) int16 ``samples`` whose sample i sounded at
    ``times_s[i]`` (see the module docstring)."""
    x = samples.astype(np.float64) / 32768.0
    if len(x) < RATE // 10:
        return np.zeros(0)
    width = max(1, round(RATE / tone_hz))
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    half = width // 2
    energy = np.zeros_like(x)
    idx = np.arange(half, len(x) - (width - half))
    energy[idx] = (c[idx + width - half] - c[idx - half]) / width
    loud = float(np.percentile(energy, 99.5))
    if loud <= 1e-6:
        return np.zeros(0)
    rough = np.flatnonzero((energy[1:] >= 0.1 * loud) & (energy[:-1] < 0.1 * loud)) + 1
    found: list[float] = []
    last = -np.inf
    body = round(0.005 * RATE), round(0.05 * RATE)
    for i in rough:
        if times_s[i] - last < min_gap_s:
            continue
        level = float(np.median(energy[i + body[0]:i + body[1]])) if i + body[1] < len(x) \
            else loud
        j = i + body[0]
        while j > 0 and energy[j - 1] >= 0.5 * level:  # back to the half-level crossing
            j -= 1
        if j == 0:
            continue
        e0, e1 = energy[j - 1], energy[j]
        frac = (0.5 * level - e0) / (e1 - e0) if e1 > e0 else 0.0
        t = times_s[j - 1] + frac * (times_s[j] - times_s[j - 1])
        found.append(float(t))
        last = t
    return np.asarray(found)


def mouth_apertures(frames: Iterable[tuple[float, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(times s, inner-lip gap / eye-corner distance; NaN where MediaPipe finds no face)."""
    from avatar_cam.tracking import MediaPipeTracker
    from avatar_cam.types import Frame

    times, gaps = [], []
    with MediaPipeTracker(smoothing=None) as tracker:
        for n, (t, image) in enumerate(frames):
            lm = tracker.track(Frame(n, round(t * 1e9), np.ascontiguousarray(image)))
            times.append(t)
            if lm is None:
                gaps.append(np.nan)
                continue
            p = lm.points[:, :2].astype(np.float64)
            gap = np.linalg.norm(p[mesh.UPPER_LIP_INNER_MID] - p[mesh.LOWER_LIP_INNER_MID])
            gaps.append(float(gap) / mesh.inter_ocular(p))
    return np.asarray(times), np.asarray(gaps)


def mouth_onsets(times: np.ndarray, gaps: np.ndarray, min_gap_s: float = 0.5,
                 held: int = HELD_FRAMES) -> np.ndarray:
    """Times (s) of the first frame of each opening held ``held`` frames (see the module
    docstring)."""
    ok = np.isfinite(gaps)
    if ok.sum() < 10:
        return np.zeros(0)
    shut, wide = np.percentile(gaps[ok], [10, 90])
    if wide - shut < 0.02:  # no opening to speak of
        return np.zeros(0)
    mid = (shut + wide) / 2
    is_open = np.where(ok, gaps > mid, False)
    starts = np.flatnonzero(is_open[1:] & ~is_open[:-1]) + 1
    found: list[float] = []
    for i in starts:
        if i + held > len(is_open) or not is_open[i:i + held].all():
            continue  # a flicker, not an opening
        if found and times[i] - found[-1] < min_gap_s:
            continue
        found.append(float(times[i]))
    return np.asarray(found)


def pair(sound: np.ndarray, picture: np.ndarray, period_s: float) -> np.ndarray:
    """Offsets (ms) sound - picture of each sound onset with its nearest mouth onset
    within half a period."""
    if not len(sound) or not len(picture):
        return np.zeros(0)
    out = []
    for t in sound:
        k = int(np.argmin(np.abs(picture - t)))
        if abs(picture[k] - t) < period_s / 2:
            out.append((t - picture[k]) * 1000.0)
    return np.asarray(out)


def summarise(offsets_ms: np.ndarray, expected: int) -> dict[str, Any]:
    if not len(offsets_ms):
        return {"pairs": 0, "expected": expected}
    p5, p50, p95 = np.percentile(offsets_ms, [5, 50, 95])
    inside = (offsets_ms >= -AHEAD_MS) & (offsets_ms <= BEHIND_MS)
    return {"pairs": int(len(offsets_ms)), "expected": int(expected),
            "p5_ms": round(float(p5), 1), "p50_ms": round(float(p50), 1),
            "p95_ms": round(float(p95), 1),
            "min_ms": round(float(offsets_ms.min()), 1),
            "max_ms": round(float(offsets_ms.max()), 1),
            "within_target": round(float(inside.mean()), 3),
            "meets_target": bool(p5 >= -AHEAD_MS and p95 <= BEHIND_MS)}


def measure(frames: Iterable[tuple[float, np.ndarray]], samples: np.ndarray,
            sample_times_s: np.ndarray, period_s: float, expected: int,
            tone_hz: float = 1000.0) -> dict[str, Any]:
    """The whole measurement from frames (time s, BGR image) and the sound with each
    sample's time (s) on the same clock."""
    times, gaps = mouth_apertures(frames)
    picture = mouth_onsets(times, gaps, period_s / 2)
    sound = audio_onsets(samples, sample_times_s, tone_hz, period_s / 2)
    offsets = pair(sound, picture, period_s)
    return summarise(offsets, expected) | {
        "sound_onsets": int(len(sound)), "mouth_onsets": int(len(picture)),
        "face_found": round(float(np.isfinite(gaps).mean()) if len(gaps) else 0.0, 3),
        "offsets_ms": [round(float(v), 2) for v in offsets]}


def chunk_times(chunks: Sequence[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Speaker chunks (play time ns, samples) -> (samples, each sample's time s): a chunk
    sounds from when it was played."""
    if not chunks:
        return np.zeros(0, np.int16), np.zeros(0)
    samples = np.concatenate([s for _, s in chunks])
    times = np.concatenate([t / 1e9 + np.arange(len(s)) / RATE for t, s in chunks])
    return samples, times


def mp4_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield float(f.time or 0.0), f.to_ndarray(format="bgr24")


def mp4_sound(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first audio stream as 48 kHz mono int16 and each sample's time (s)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    parts: list[np.ndarray] = []
    first: float | None = None
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return np.zeros(0, np.int16), np.zeros(0)
        for frame in c.decode(audio=0):
            if first is None:
                first = float(frame.time or 0.0)
            parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    samples = np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
    return samples, (first or 0.0) + np.arange(len(samples)) / RATE


def measure_mp4(path: Path, period_s: float, expected: int,
                tone_hz: float = 1000.0) -> dict[str, Any]:
    """The measurement on an mp4 with both streams (a FileSink recording)."""
    samples, times = mp4_sound(path)
    return measure(mp4_frames(path), samples, times, period_s, expected, tone_hz)
