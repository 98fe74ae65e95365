"""Mattes: where the rendered head replaces the background, and photos extended without
mirrored copies.

- ``person_mask``: MediaPipe's selfie segmentation (its model ships in the pinned
  mediapipe wheel) run once on the enrollment photo: the person, hair and shoulders, as a
  soft mask. It makes the ``blur`` and ``plain`` backgrounds keep the person sharp, and it
  keeps the head matte to the head and hair rather than the wall beside them.
- ``HeadMatte``: per frame, the soft region of the render square that shows the rendered
  head: the ring around the face that the warp renderer moves with the head (face oval
  pushed out by ``RING_SCALE``, where hair and neck are), at its resting place and where the
  head is now (so the photo's own head never peeks out behind a turned one), cut to the
  person (the segmentation, moved alike), the face oval always in, feathered, and faded to
  zero before the square's border, so that no straight edge of the render square can show
  at any size.
- ``extend_with_blur``: a picture padded by stretching its border and blurring the
  stretch, so moving or zooming the output never reveals a mirrored copy of anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from . import mesh

RING_SCALE = mesh.RING_SCALE  # the warp renderer's ring: the oval pushed out over hair
EDGE_BAND = 0.1  # of the square side: the matte fades to 0 over this band at the border
FEATHER = 0.025  # of the square side: the matte's soft edge (Gaussian sigma)
MATTE_RES = 128  # the matte is built at this size, then scaled to the square
_OVAL = np.array(mesh.FACE_OVAL[:-1], dtype=np.intp)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def edge_falloff(side: int, band: float = EDGE_BAND) -> np.ndarray:
    """(side, side) float32: 0 on the square's border, 1 inside a band of ``band * side``,
    smoothstep between (no visible kink at the band's inner edge)."""
    r = (np.arange(side, dtype=np.float32) + 0.5) / max(band * side, 1.0)
    ramp = _smoothstep(np.minimum(r, r[::-1]))
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def person_mask(image: np.ndarray, max_side: int = 512) -> np.ndarray | None:
    """(H, W) float32 in [0, 1]: the person in a BGR ``image`` (MediaPipe selfie
    segmentation, general model), or None when MediaPipe finds nobody."""
    from .tracking import MediaPipeStart, import_mediapipe

    h, w = image.shape[:2]
    k = min(1.0, max_side / max(h, w))
    small = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))),
                       interpolation=cv2.INTER_AREA) if k < 1.0 else image
    with MediaPipeStart(), import_mediapipe().solutions.selfie_segmentation \
            .SelfieSegmentation(model_selection=0) as seg:
        result = seg.process(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    mask = getattr(result, "segmentation_mask", None)
    if mask is None or not np.isfinite(mask).all() or float(mask.max()) < 0.5:
        return None
    mask = np.clip(mask.astype(np.float32), 0.0, 1.0)
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) if k < 1.0 else mask


def ring_polygon(points: np.ndarray) -> np.ndarray:
    """(36, 2) the face oval of (478, >=2) points pushed out by RING_SCALE about its centre."""
    oval = np.asarray(points, dtype=np.float64)[_OVAL, :2]
    centre = oval.mean(axis=0)
    return np.asarray(centre + RING_SCALE * (oval - centre))


def head_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) around the head, hair included (the ring's extent), in the
    points' pixels."""
    ring = ring_polygon(points)
    (x0, y0), (x1, y1) = ring.min(axis=0), ring.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _fill(poly: np.ndarray, res: int) -> np.ndarray:
    mask = np.zeros((res, res), np.float32)
    cv2.fillPoly(mask, [np.round(poly * 16 - 8).astype(np.int32)], (1.0,), cv2.LINE_AA, 4)
    return mask


class HeadMatte:
    """``at(head, side)``: the (side, side) float32 matte of the rendered head.

    neutral: (478, 3) the avatar's neutral landmarks in crop pixels; crop_size: the crop's
    side; person: the selfie segmentation of the crop (crop_size square), or None (the ring
    alone then). ``head`` is the 2x3 similarity (crop pixels) that moved the neutral head
    to where it is rendered now, None for the resting place.
    """

    def __init__(self, neutral: np.ndarray, crop_size: int, person: np.ndarray | None = None,
                 resolution: int = MATTE_RES) -> None:
        if crop_size < 8:
            raise ValueError(f"crop_size must be >= 8, got {crop_size}")
        self.resolution = r = resolution
        self._k = r / crop_size  # crop pixels -> matte pixels
        pts = np.asarray(neutral, dtype=np.float64)[:, :2] * self._k
        self._ring = _fill(ring_polygon(pts), r)
        self._oval = _fill(pts[_OVAL], r)
        if person is not None:
            if person.shape != (crop_size, crop_size):
                raise ValueError(f"person mask must be ({crop_size}, {crop_size}), got "
                                 f"{person.shape}")
            seg = cv2.resize(person.astype(np.float32), (r, r), interpolation=cv2.INTER_AREA)
            # A segmentation that misses most of the face is not to be trusted.
            covered = float((seg * self._oval).sum()) / max(float(self._oval.sum()), 1.0)
            self._seg: np.ndarray | None = seg if covered > 0.5 else None
        else:
            self._seg = None
        self._sigma = max(0.5, FEATHER * r)
        self._falloff = edge_falloff(r)
        self._rest = self._compose(self._ring, self._oval, self._seg)

    def _compose(self, ring: np.ndarray, oval: np.ndarray, seg: np.ndarray | None
                 ) -> np.ndarray:
        matte = ring if seg is None else ring * seg
        matte = np.maximum(matte, oval)
        matte = cv2.GaussianBlur(matte, (0, 0), self._sigma)
        return np.asarray(matte * self._falloff, dtype=np.float32)

    def at(self, head: Sequence[float] | np.ndarray | None, side: int) -> np.ndarray:
        matte = self._rest
        if head is not None:
            m = np.asarray(head, dtype=np.float64).reshape(2, 3).copy()
            m[:, 2] *= self._k  # the similarity in matte pixels (same linear part)
            r = self.resolution

            def moved(a: np.ndarray) -> np.ndarray:
                return cv2.warpAffine(a, m, (r, r), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))

            ring = np.maximum(self._ring, moved(self._ring))
            oval = np.maximum(self._oval, moved(self._oval))
            seg = None if self._seg is None else np.maximum(self._seg, moved(self._seg))
            matte = self._compose(ring, oval, seg)
        if side == matte.shape[0]:
            return matte
        return cv2.resize(matte, (side, side), interpolation=cv2.INTER_LINEAR)


def extend_with_blur(image: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """``image`` padded by (top, bottom, left, right) pixels: its border stretched outwards
    and blurred more the further out, blended in over a short ramp. Never a mirror."""
    top, bottom, left, right = (max(0, int(v)) for v in pad)
    if not (top or bottom or left or right):
        return image
    h, w = image.shape[:2]
    stretched = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE)
    sigma = max(4.0, 0.04 * max(h, w))
    # Blur a small copy (a wide blur at full size costs a lot; the result is smooth anyway).
    k = min(1.0, 256.0 / max(stretched.shape[:2]))
    small = cv2.resize(stretched, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma * k)
    blurred = cv2.resize(small, (stretched.shape[1], stretched.shape[0]),
                         interpolation=cv2.INTER_LINEAR)
    ramp = max(2.0, 0.02 * max(h, w))
    inside = np.zeros(stretched.shape[:2], np.float32)
    inside[top:top + h, left:left + w] = 1.0
    dist = cv2.distanceTransform((inside > 0).astype(np.uint8), cv2.DIST_L2, 3)
    alpha = _smoothstep(dist / ramp)[..., None]
    out = alpha * stretched.astype(np.float32) + (1.0 - alpha) * blurred.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
