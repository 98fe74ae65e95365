"""Depth parallax under a head turn: what a flat or warped picture does not do.

Landmarks alone cannot tell a head from a picture of one. A flat photo moved, tilted or
turned in front of the camera maps the face by a homography, and ``planar_residual``
catches that (every mesh point fits one homography to within MediaPipe's noise). But a
piecewise-affine warp of one photo driven by 3D-rotated landmarks (our warp renderer,
and our generator, trained on its renders) puts every landmark where a real turn would,
and MediaPipe's z follows it: measured on the demo identity, a 25 degree warp turn reads
as 18 degrees of 3D yaw from MediaPipe's own z. So the depth evidence is taken from the
pixels, in two ways, and a turn counts as a real head's when either shows:

- ``shading_score``: a real head turns under a fixed light, so the brightness of each
  patch changes with its normal; for a Lambertian surface the change of log-brightness
  with the turn has a gradient across the face whose sign is opposite to the turn
  (d/dphi of -tan(phi - light) < 0 for every lit patch). A warp carries each patch's
  brightness along unchanged. Measured per turn (benchmarks/liveness.py, the reference
  frame within 0.03 of the frontal pose): 0.21-0.25 on the Pexels woman, 0.06-0.07 on
  franck, at most 0.055 on warp and generator renders; a diffusely lit home webcam
  (cap12) shows none (-0.06..-0.01), hence the second measure.
- ``outline_parallax``: the nose swings in front of the head's outline (hair, ears), which
  a real head turns inside of; a warp moves the outline with a similarity of the face, so
  the nose's shift against the outline is hardly more than against the face's centre.
  The ratio of the two: 2.7-3.4 on cap12's turns, 2.8-3.5 on franck's, 1.5-1.9 on the
  renders; but only 2.0-2.2 on the Pexels woman, who carries her head and shoulders along.

A replay of a recording of a real person is real 3D motion and passes both; it is
rejected, if at all, by the random prompt order (see liveness.py).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .. import mesh

_NOT_SKIN = (set(mesh.RIGHT_EYE) | set(mesh.LEFT_EYE) | set(mesh.LIPS_OUTER)
             | set(mesh.LIPS_INNER) | {i for b in mesh.RIGHT_BROW + mesh.LEFT_BROW for i in b}
             | set(mesh.FACE_OVAL))
# Skin points where shading is read: not eyes, lips or brows (they move on their own),
# not the oval (half background).
SKIN = np.array([i for i in range(468) if i not in _NOT_SKIN], dtype=np.intp)
_RIGID = list(mesh.RIGID)
_BLUR = 0.08  # brightness read over a blur of this many inter-ocular distances
_EPS = 4.0  # grey levels added before the log: dark pixels' noise stays small


def _check(image: np.ndarray, points: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) \
            else type(image).__name__
        raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {got}")
    if not isinstance(points, np.ndarray) or points.ndim != 2 or points.shape[0] < 468 \
            or points.shape[1] < 2:
        raise ValueError(f"points must be (478, 3) landmarks, got {getattr(points, 'shape', None)}")


def face_shading(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(len(SKIN),) float32 log-brightness of the face's skin points in one frame."""
    _check(image, points)
    iod = max(mesh.inter_ocular(points), 1.0)
    p = points[:, :2].astype(np.float64)
    lo = np.floor(p[:468].min(axis=0) - 2 * iod * _BLUR - 2).astype(int)
    hi = np.ceil(p[:468].max(axis=0) + 2 * iod * _BLUR + 2).astype(int)
    h, w = image.shape[:2]
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.full(len(SKIN), np.nan, np.float32)
    grey = cv2.GaussianBlur(
        cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32),
        (0, 0), max(0.5, _BLUR * iod))
    xy = (p[SKIN] - (x0, y0) - 0.5).astype(np.float32)  # MediaPipe pixel i spans [i, i+1)
    v = cv2.remap(grey, xy[:, :1], xy[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.log(v.ravel() + _EPS).astype(np.float32)


def _face_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Centre, unit axis from the subject's right eye to the left, its normal, and iod."""
    p = points[:, :2].astype(np.float64)
    ax = p[mesh.LEFT_EYE_OUTER] - p[mesh.RIGHT_EYE_OUTER]
    iod = float(np.linalg.norm(ax))
    ax = ax / max(iod, 1e-6)
    return p[_RIGID].mean(axis=0), ax, np.array([-ax[1], ax[0]]), max(iod, 1e-6)


def shading_score(ref_points: np.ndarray, ref_shading: np.ndarray, shading: np.ndarray,
                  turn: float) -> float:
    """The change of log-brightness from the frontal reference, its gradient along the
    eye line (per inter-ocular distance, a global gain and a vertical gradient taken
    out), signed so that a real turn under a fixed light gives a positive value."""
    d = (shading - ref_shading).astype(np.float64)
    ok = np.isfinite(d)
    if ok.sum() < 20 or turn == 0:
        return math.nan
    c, ax, up, iod = _face_axes(ref_points)
    q = ref_points[SKIN, :2].astype(np.float64) - c
    a = np.stack([np.ones(len(q)), q @ ax / iod, q @ up / iod], axis=1)[ok]
    coef, *_ = np.linalg.lstsq(a, d[ok], rcond=None)
    return float(-coef[1] * math.copysign(1.0, turn))


def planar_residual(ref_points: np.ndarray, points: np.ndarray) -> float:
    """RMS distance (inter-ocular distances) of the face points from the best homography
    of the reference: near 0 for a flat picture however it is moved or tilted."""
    a = ref_points[:468, :2].astype(np.float32)
    b = points[:468, :2].astype(np.float32)
    h, _ = cv2.findHomography(a, b, 0)
    if h is None or not np.isfinite(h).all():
        return math.nan
    fit = cv2.perspectiveTransform(a[None], h)[0]
    rms = float(np.sqrt(((fit - b) ** 2).sum(axis=1).mean()))
    return rms / max(mesh.inter_ocular(points), 1e-6)


def outline_centre(mask: np.ndarray, points: np.ndarray) -> float:
    """x of the middle of the head's outline (the person mask's extent on rows from the
    eyes to the nose tip, through the nose), median over rows; NaN if not found."""
    p = points[:, :2].astype(np.float64)
    h, w = mask.shape
    y0 = int(p[[mesh.RIGHT_EYE_OUTER, mesh.LEFT_EYE_OUTER], 1].mean())
    y1 = int(p[mesh.NOSE_TIP, 1])
    x = int(np.clip(p[mesh.NOSE_TIP, 0], 0, w - 1))
    centres = []
    for y in range(max(min(y0, y1), 0), min(max(y0, y1) + 1, h)):
        row = mask[y]
        if not row[x]:
            continue
        # The run of person pixels through the nose's column, both ways to its ends.
        left = np.flatnonzero(~row[:x][::-1])
        right = np.flatnonzero(~row[x + 1:])
        lo = x - (int(left[0]) if len(left) else x)
        hi = x + (int(right[0]) if len(right) else w - 1 - x)
        centres.append(0.5 * (lo + hi))
    return float(np.median(centres)) if centres else math.nan


def outline_parallax(ref_points: np.ndarray, ref_outline: float, points: np.ndarray,
                     outline: float) -> float:
    """The nose tip's shift against the head's outline over its shift against the face's
    centre (the rigid points' mean), both since the frontal reference."""
    c0, ax, _up, iod = _face_axes(ref_points)
    c1 = points[_RIGID, :2].astype(np.float64).mean(axis=0)
    nose = (points[mesh.NOSE_TIP, :2] - ref_points[mesh.NOSE_TIP, :2]).astype(np.float64)
    d_nose = float(nose @ ax) / iod
    d_centre = float((c1 - c0) @ ax) / iod
    d_outline = (outline - ref_outline) * ax[0] / iod
    against_centre = d_nose - d_centre
    if not math.isfinite(d_outline) or abs(against_centre) < 0.02:
        return math.nan
    return (d_nose - d_outline) / against_centre


class Outliner:
    """mask(image) -> (H, W) bool: the person, by MediaPipe's selfie segmentation (its
    model ships in the pinned wheel), one graph kept open for a stream of frames."""

    def __init__(self) -> None:
        from ..tracking import MediaPipeStart, import_mediapipe

        self._start = MediaPipeStart()  # its log lines dropped until the first result
        try:
            self._seg: Any = import_mediapipe().solutions.selfie_segmentation \
                .SelfieSegmentation(model_selection=0)
        except BaseException:
            self._start.release()
            raise

    def mask(self, image: np.ndarray) -> np.ndarray:
        result = self._seg.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        self._start.release()
        m = result.segmentation_mask
        if m is None:
            return np.zeros(image.shape[:2], bool)
        return np.asarray(m) > 0.5

    def close(self) -> None:
        self._start.release()
        self._seg.close()

    def __enter__(self) -> Outliner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
