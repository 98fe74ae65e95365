"""BankRenderer: each frame warped from the nearest real frames of the reference bank.

Every bank frame (avatar_cam/bank.py) is its own warp source: one WarpRenderer per
frame, built from that frame's crop and landmarks. Per target:

1. the target's pose and expression features (``bank.shape_features`` against the
   neutral, the photo frame's landmarks, as the bank's frames are described), divided by
   the bank's standardizing spread: the distance ``d`` to each frame;
2. the K nearest frames (K = 2) get weights ``((d_(K+1) - d_i) / (d_i + EPS)) ** 2``,
   normalized: the (K+1)-th nearest is the cut-off, so a frame's weight falls to zero
   exactly when it stops being among the K nearest (and a new one comes in at zero):
   the blend changes continuously with the target, no frame pops in or out. A frame
   driven by its own landmarks has d = 0: its weight is ~1 and the render is that
   frame's own warp (the identity warp of its crop, bar the drawn eyes and mouth);
3. the K frames are warped onto the target and blended with those weights; a weight
   under ``MIN_WEIGHT`` is dropped (the others renormalized) to save its warp: at most
   that share of a frame's difference, a grey level or two, ever changes at once.

4. over time the weights are smoothed (``smoothing``: each frame's weights are
   ``alpha * new + (1 - alpha) * previous`` over the whole bank, then the K largest
   kept): tracking noise near a cross-over otherwise makes two references of different
   shoulders or light alternate (on franck.mp4's first 120 held-out frames the output
   changed 1.07x as much as the real video frame to frame without it, 0.97x with
   alpha 0.5). A cut (``Landmarks.cut``) or ``reset()`` starts afresh, so the first frame
   is the unsmoothed blend.

Deterministic for the same sequence of inputs; starts no threads. Cost: K warps (each
about what one WarpRenderer.render costs) plus a blend.
"""

from __future__ import annotations

from types import TracebackType

import cv2
import numpy as np

from ..bank import N_SHAPE, Bank, shape_features
from ..types import Landmarks, check_points
from .warp import MouthMode, WarpRenderer

K_NEAREST = 2
SMOOTHING = 0.5  # alpha: the new frame's share of the blend weights
EPS = 0.25  # standardized units: how sharply the nearest frame takes over near it
MIN_WEIGHT = 0.02


def blend_weights(dist: np.ndarray, k: int = K_NEAREST) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights summing to 1) of the ``k`` nearest of (N,) distances ``dist``;
    see the module docstring. Ties are broken by index (stable), so it is deterministic."""
    order = np.argsort(dist, kind="stable")
    k = min(k, len(dist))
    near = order[:k]
    cut = float(dist[order[k]]) if len(dist) > k else float(dist.max()) + 1.0
    w = ((cut - dist[near]) / (dist[near] + EPS)) ** 2
    total = float(w.sum())
    if not np.isfinite(total) or total <= 0:  # all k tie with the cut-off: share equally
        w = np.ones(k)
        total = float(k)
    w = w / total
    keep = w >= MIN_WEIGHT
    keep[0] = True
    return near[keep], w[keep] / w[keep].sum()


class BankRenderer:
    """Renders target landmarks from the bank's nearest frames (see module docstring).

    bank: a Bank (crops (N, S, S, 3) uint8 BGR, points (N, 478, 3) float32 in their
    pixels); neutral: (478, 3) float32 landmarks of the photo frame in the same pixels
    (the person's ``neutral``), the pose origin the features are measured from;
    resolution: the output side. Same interface as WarpRenderer: ``render(lm)`` ->
    (resolution, resolution, 3) uint8 BGR, ``close()``, context manager. Not reentrant.
    """

    def __init__(self, bank: Bank, neutral: np.ndarray, resolution: int = 256,
                 k: int = K_NEAREST, mouth: MouthMode = "auto",
                 smoothing: float = SMOOTHING) -> None:
        check_points(neutral)
        if len(bank) == 0:
            raise ValueError("the bank holds no frames")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        self.resolution, self.k, self.smoothing = resolution, k, float(smoothing)
        self._smooth: np.ndarray | None = None  # the previous frame's weights, per frame
        self._neutral = neutral.astype(np.float64)
        self._scale = bank.scale[:N_SHAPE].astype(np.float64)
        if self._scale.shape != (N_SHAPE,) or not (self._scale > 0).all():
            raise ValueError(f"bank scale must hold {N_SHAPE} positive spreads")
        self._features = np.stack([shape_features(p, self._neutral) for p in bank.points])
        self._warps = [WarpRenderer(c, p, resolution, mouth)
                       for c, p in zip(bank.crops, bank.points, strict=True)]
        self._acc = np.empty((resolution, resolution, 3), np.float32)
        self.last: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.intp), np.zeros(0))
        self._closed = False

    def __len__(self) -> int:
        return len(self._warps)

    def nearest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bank indices, weights) the render of (478, 3) ``points`` blends."""
        f = shape_features(points, self._neutral)
        dist = np.linalg.norm((self._features - f) / self._scale, axis=1)
        return blend_weights(dist, self.k)

    def render(self, lm: Landmarks) -> np.ndarray:
        """(resolution, resolution, 3) uint8 BGR: the nearest bank frames on ``lm``."""
        if self._closed:
            raise RuntimeError("BankRenderer is closed")
        check_points(lm.points)
        idx, w = self._blend(lm)
        self.last = (idx, w)
        if len(idx) == 1:
            return self._warps[int(idx[0])].render(lm)
        acc = self._acc
        acc[...] = 0.0
        for i, wi in zip(idx.tolist(), w.tolist(), strict=True):
            cv2.scaleAdd(self._warps[i].render(lm).astype(np.float32), wi, acc, dst=acc)
        return np.clip(acc + 0.5, 0, 255).astype(np.uint8)

    def reset(self) -> None:
        """Forget the smoothed weights: the next frame is blended afresh."""
        self._smooth = None

    def _blend(self, lm: Landmarks) -> tuple[np.ndarray, np.ndarray]:
        idx, w = self.nearest(lm.points)
        full = np.zeros(len(self._warps))
        full[idx] = w
        if self._smooth is not None and not lm.cut:
            full = self.smoothing * full + (1.0 - self.smoothing) * self._smooth
        self._smooth = full
        top = np.argsort(-full, kind="stable")[:self.k]
        ws = full[top] / full[top].sum()
        keep = ws >= MIN_WEIGHT
        keep[0] = True
        return top[keep], ws[keep] / ws[keep].sum()

    def close(self) -> None:
        for warp in self._warps:
            warp.close()
        self._closed = True

    def __enter__(self) -> BankRenderer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
