"""Who is in a clip: sort a clip's faces into people, so enrollment learns one.

Enrollment is from a clip of the person, but real clips can hold someone else (a film
that cuts between two characters, a colleague who leans into the picture). A
``sketch+warp`` generator trained on both would learn to turn the person's warp render
into the other face whenever the landmarks look like theirs; the Megamind clip of the
quality benchmark is such a clip (two characters, about half each).

No face-recognition weights can be downloaded, so identity is judged from the colours
inside the face oval (skin, eyes, brows, glasses, beard): ``colours`` is the square root of
the normalized hue/saturation histogram there (a Hellinger embedding, distances in
[0, sqrt 2]). ``people`` then works in two steps:

1. segments: the clip is cut where one usable frame's colours jump from the previous
   one's by more than ``CUT_RATIO`` times the clip's median jump (and at least
   ``CUT_MIN``). A face changes colour gradually under a webcam's auto exposure; a jump
   is a cut to another shot or another face.
2. people: segments whose mean colours lie within ``SAME`` of each other (single
   linkage) are one person; people are numbered by their frame count, most first.

This is a colour heuristic, not face recognition: two people of like skin and hair in
like light count as one, and one person under a sudden change of light can count as
two (then only the larger part trains; nothing wrong is learned). The thresholds were
set on the Megamind clip, where the two characters' shots lie 0.28 to 0.37 apart and a
character's two shots 0.12 and 0.18.
"""

from __future__ import annotations

import numpy as np

from ..colours import BINS, colours

CUT_RATIO = 3.0
CUT_MIN = 0.2
SAME = 0.23
__all__ = ["BINS", "colours", "people", "segments"]


def segments(desc: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)) runs of ``desc`` (N, D) in time order, cut at colour jumps."""
    n = len(desc)
    if n < 2:
        return [(0, n)]
    jump = np.linalg.norm(np.diff(desc.astype(np.float64), axis=0), axis=1)
    limit = max(CUT_RATIO * float(np.median(jump)), CUT_MIN)
    cuts = [0, *(np.flatnonzero(jump > limit) + 1).tolist(), n]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def people(desc: np.ndarray) -> np.ndarray:
    """(N,) int person label per frame of (N, D) ``colours`` in time order: 0 is the
    person with the most frames, 1 the next, ..."""
    runs = segments(desc)
    means = np.stack([desc[a:b].astype(np.float64).mean(0) for a, b in runs])
    group = list(range(len(runs)))  # union-find over segments, single linkage

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    near = np.linalg.norm(means[:, None] - means[None], axis=-1) <= SAME
    for i, j in zip(*np.nonzero(np.triu(near, 1)), strict=True):
        group[root(int(i))] = root(int(j))
    label = np.empty(len(desc), np.int64)
    for k, (a, b) in enumerate(runs):
        label[a:b] = root(k)
    ids, counts = np.unique(label, return_counts=True)
    rank = {int(i): r for r, i in enumerate(ids[np.argsort(-counts, kind="stable")])}
    return np.array([rank[int(v)] for v in label], np.int64)
