"""The warp renderer's eyes: lids that slide over the eyeball, irises that follow the gaze.

A piecewise-affine warp moves texture with the mesh, and the mesh has no vertex inside
the eye opening (the iris points are left out: they fold on blinks). So as the lids
close, the open eye's picture, iris and all, is squashed between them, and the dark
lash band above it is stretched down over what the eye gave up: the eye still reads as
open (to MediaPipe as to a person), and the iris can only go where the lids drag it.

``Eyes`` builds three things once from the source picture, per eye:

- the eyeball, the source with the iris taken out (its disk, inside the lids, filled with
  the sclera's own colour sampled either side of it); the warp moves that picture;
- the iris, a patch of the source around the iris centre (alpha: the iris disk within
  the source's lids);
- the eye's frame: x from the outer to the inner corner, y across towards the lower lid,
  with the source lids as curves y(x) in it.

Per frame, for an eye whose target lids are closer than the source's (``paint``):

- the lids are redrawn as curtains: in the eye's frame (the source eye moved to the
  target corners by a similarity) the upper lid's own skin, from ``LID_REACH`` eye widths
  above its edge down to that edge, is stretched down to the target's upper lid; the
  lower lid likewise up; between them the eyeball stays where it is instead of being
  squashed. The lash line thus rides on the lid's edge and a shut eye shows lid skin;
- the iris is drawn at the TARGET iris centre, sized and turned with the eye corners
  (steadier than the iris ring, which MediaPipe shrinks on a blink) and clipped to the
  target's lids: gaze follows the driver, and a shut eye shows no iris.

All points follow MediaPipe (pixel ``i`` spans ``[i, i + 1)``) in the picture's pixels;
OpenCV calls get ``- 0.5``. An eye whose source is shut (or too small to hold an iris)
is left to the plain warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .. import mesh
from ..geometry import similarity_2x3
from .mouth import fill_polygon, polygon_area

# (lid contour, upper lid, lower lid, iris centre, iris ring, outer, inner corner) per eye.
_EyeIndex = tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, int, int]
_EYES: tuple[_EyeIndex, ...] = tuple(
    (np.array(contour[:-1], dtype=np.intp), np.array(upper, dtype=np.intp),
     np.array(lower, dtype=np.intp), centre, np.array(ring[:-1], dtype=np.intp), outer, inner)
    for contour, upper, lower, centre, ring, outer, inner in (
        (mesh.RIGHT_EYE, mesh.RIGHT_UPPER_LID, mesh.RIGHT_LOWER_LID, mesh.RIGHT_IRIS_CENTER,
         mesh.RIGHT_IRIS, mesh.RIGHT_EYE_OUTER, mesh.RIGHT_EYE_INNER),
        (mesh.LEFT_EYE, mesh.LEFT_UPPER_LID, mesh.LEFT_LOWER_LID, mesh.LEFT_IRIS_CENTER,
         mesh.LEFT_IRIS, mesh.LEFT_EYE_OUTER, mesh.LEFT_EYE_INNER)))
MIN_OPEN_PX2 = 4.0  # source opening (px^2) below which the eye is taken as shut
MIN_IRIS_PX = 1.0  # source iris radius below which there is no iris to move
IRIS_PAD = 1.1  # the iris disk taken: MediaPipe's ring sits a little inside the limbus
FILL_PAD = 1.25  # the disk filled with sclera: the dark limbal ring goes with the iris
SCALE_LIMITS = (0.2, 5.0)  # target/source eye size outside this: garbage, leave the eye
# How far (eye widths) above the upper / below the lower lid edge the curtain's skin is
# taken from: far enough that the lash band keeps about its width as the lid comes down
# (a short reach smears it into a dark stripe that reads as an open eye), short of the brow.
LID_REACH = (0.8, 0.5)
IRIS_HIDE = (0.15, 0.4)  # target / source opening area: iris hidden below, whole above
FULL_CLOSE = 0.05  # lid travel (eye widths) from which a column is all curtain


@dataclass(frozen=True)
class _EyeSource:
    corners: np.ndarray  # (2, 2) float64 outer, inner corner (source pixels)
    area: float  # the source opening, px^2
    centre: np.ndarray  # (2,) float64 source iris centre
    axes: np.ndarray  # (2, 2) rows: unit x (outer -> inner corner), unit y (towards the lower lid)
    width: float  # corner to corner, source pixels
    upper: np.ndarray  # (2, K) upper lid edge in the eye's frame: x ascending, y
    lower: np.ndarray  # (2, K) lower lid edge likewise
    origin: np.ndarray  # (2,) float64: the iris patch's top-left pixel in the source
    patch: np.ndarray  # (h, w, 4) float32: BGR premultiplied by alpha, alpha in [0, 1]


def _box(points: np.ndarray, margin: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) around (K, 2) MediaPipe-convention points, inside ``shape``."""
    lo = np.floor(points.min(axis=0) - margin)
    hi = np.ceil(points.max(axis=0) + margin)
    return (int(max(lo[0], 0)), int(max(lo[1], 0)),
            int(min(hi[0], shape[1])), int(min(hi[1], shape[0])))


def _disk(shape: tuple[int, int], centre: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a disk (centre in OpenCV pixel coordinates)."""
    mask = np.zeros(shape, dtype=np.uint8)
    c = (int(round(centre[0] * 16)), int(round(centre[1] * 16)))
    cv2.circle(mask, c, max(int(round(radius * 16)), 1), (255,), -1, cv2.LINE_AA, 4)
    return mask.astype(np.float32) * (1.0 / 255.0)


def _sclera(pixels: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The sclera's colour among (N, 3) eye-opening pixels: the median of the brighter
    half (the rest is lashes, the lids' shadow, the corner's caruncle)."""
    if len(pixels) < 4:
        return fallback
    luma = pixels @ np.array([0.114, 0.587, 0.299])
    return np.asarray(np.median(pixels[luma >= np.median(luma)], axis=0))


def _curve(points: np.ndarray) -> np.ndarray:
    """(K, 2) eye-frame points -> (2, K) sorted by x, as np.interp wants them."""
    order = np.argsort(points[:, 0], kind="stable")
    return np.ascontiguousarray(points[order].T)


def _eye_source(image: np.ndarray, points: np.ndarray, index: _EyeIndex) -> _EyeSource | None:
    """One eye's frame and iris patch, its iris taken out of ``image`` (in place); None
    if the eye is shut or degenerate."""
    contour_idx, upper_idx, lower_idx, centre_idx, ring_idx, outer, inner = index
    contour, centre = points[contour_idx], points[centre_idx]
    radius = float(np.linalg.norm(points[ring_idx] - centre, axis=1).mean())
    corners = points[[outer, inner]]
    width = float(np.linalg.norm(corners[1] - corners[0]))
    if polygon_area(contour) < MIN_OPEN_PX2 or radius < MIN_IRIS_PX or width < 2.0:
        return None
    ux = (corners[1] - corners[0]) / width
    uy = np.array([-ux[1], ux[0]])
    if (points[lower_idx].mean(axis=0) - points[upper_idx].mean(axis=0)) @ uy < 0:
        uy = -uy  # the left eye runs right to left: y must still point to the lower lid
    axes = np.stack([ux, uy])
    disk = np.vstack([contour, centre - FILL_PAD * radius, centre + FILL_PAD * radius])
    x0, y0, x1, y1 = _box(disk, 2.0, (image.shape[0], image.shape[1]))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    shape = (y1 - y0, x1 - x0)
    at = np.array([x0 + 0.5, y0 + 0.5])  # box pixel (0, 0) centre, continuous coords
    # The lids' contour runs along the lash line; the visible opening reaches a pixel
    # past it, and what lies there must move with the iris, not stay on the lid.
    opening = cv2.dilate(fill_polygon(shape, contour - at), np.ones((3, 3), np.uint8))
    roi = image[y0:y1, x0:x1].astype(np.float32)
    alpha = _disk(shape, centre - at, IRIS_PAD * radius) * opening
    patch = np.dstack([roi * alpha[..., None], alpha])

    # Sclera either side of the iris, blended across it: one side is often in shadow.
    outside = (opening > 0.5) & (_disk(shape, centre - at, FILL_PAD * radius + 1.0) == 0)
    cols = np.arange(shape[1], dtype=np.float64)[None, :].repeat(shape[0], 0) + at[0]
    seen = opening > 0.5
    fallback = np.median(roi[seen], axis=0) if seen.any() else roi.mean(axis=(0, 1))
    left = _sclera(roi[outside & (cols < centre[0])], fallback)
    right = _sclera(roi[outside & (cols >= centre[0])], fallback)
    t = np.clip((cols - (centre[0] - radius)) / (2.0 * radius), 0.0, 1.0)[..., None]
    fill = left * (1 - t) + right * t
    cover = cv2.GaussianBlur(_disk(shape, centre - at, FILL_PAD * radius) * opening, (3, 3), 0)
    cover = cover[..., None]
    image[y0:y1, x0:x1] = np.clip(roi * (1 - cover) + fill * cover + 0.5, 0, 255).astype(np.uint8)
    frame = (points - corners[0]) @ axes.T
    return _EyeSource(corners, polygon_area(contour), centre, axes, width, _curve(frame[upper_idx]),
                      _curve(frame[lower_idx]), np.array([x0, y0], dtype=np.float64),
                      patch.astype(np.float32))


class Eyes:
    """Both eyes of one source picture.

    image: (R, R, 3) uint8 BGR, the picture the warp samples; points: (478, >=2) its
    landmarks in its pixels. ``eyeball`` is ``image`` with the irises taken out (warp
    that); ``paint(out, target)`` redraws the eyes of a warped picture (R', R', 3) uint8
    for its (478, >=2) target landmarks: closing lids, irises inside them.
    """

    def __init__(self, image: np.ndarray, points: np.ndarray) -> None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] != 3:
            raise ValueError("image must be an (H, W, 3) uint8 BGR picture")
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != 478 or p.shape[1] < 2 or not np.isfinite(p).all():
            raise ValueError(f"points must be finite (478, >=2), got {p.shape}")
        self.eyeball = image.copy()
        self._eyes = [_eye_source(self.eyeball, p[:, :2], index) for index in _EYES]

    @property
    def found(self) -> int:
        """How many source eyes are open enough to be redrawn."""
        return sum(e is not None for e in self._eyes)

    def paint(self, image: np.ndarray, points: np.ndarray) -> None:
        """Redraw the eyes (in place) of ``image`` for (478, >=2) target ``points``."""
        p = np.asarray(points, dtype=np.float64)[:, :2]
        for index, eye in zip(_EYES, self._eyes, strict=True):
            if eye is not None:
                _paint_eye(image, self.eyeball, eye, p, index)


def _paint_eye(image: np.ndarray, eyeball: np.ndarray, eye: _EyeSource, p: np.ndarray,
               index: _EyeIndex) -> None:
    contour_idx, upper_idx, lower_idx, centre_idx, _, outer, inner = index
    # m, t: the source eye onto the target's corners (source pixel s -> m s + t).
    fit = similarity_2x3(eye.corners, p[[outer, inner]]).reshape(2, 3)
    m, t = fit[:, :2], fit[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(m))))
    if not SCALE_LIMITS[0] <= scale <= SCALE_LIMITS[1]:
        return
    inv = np.linalg.inv(m)
    # Target pixel q -> the eye's frame: k @ q + k0.
    k = eye.axes @ inv
    k0 = -eye.axes @ (inv @ t + eye.corners[0])
    _curtain(image, eyeball, eye, p, upper_idx, lower_idx, k, k0)
    # A lid that has come most of the way down hides the iris behind its lashes; drawn
    # in the slit, it would read as an open eye.
    shown = polygon_area(p[contour_idx]) / (eye.area * scale * scale)
    cover = float(np.clip((shown - IRIS_HIDE[0]) / (IRIS_HIDE[1] - IRIS_HIDE[0]), 0.0, 1.0))
    _iris(image, eye, p[contour_idx], p[centre_idx], inv, cover)


def _curtain(image: np.ndarray, eyeball: np.ndarray, eye: _EyeSource, p: np.ndarray,
             upper_idx: np.ndarray, lower_idx: np.ndarray, k: np.ndarray,
             k0: np.ndarray) -> None:
    """Slide the source lids (in place) to the target's where they are closer."""
    w = eye.width
    up_t, lo_t = _curve(p[upper_idx] @ k.T + k0), _curve(p[lower_idx] @ k.T + k0)
    # Only closing is drawn (a lid opening wider than the source's has no skin to give),
    # so the eye's region is the source's, plus the curtains' reach.
    reach_up, reach_lo = LID_REACH[0] * w, LID_REACH[1] * w
    span = np.array([[0.0, eye.upper[1].min() - reach_up], [w, eye.upper[1].min() - reach_up],
                     [w, eye.lower[1].max() + reach_lo], [0.0, eye.lower[1].max() + reach_lo]])
    kinv = np.linalg.inv(k)
    corners = (span - k0) @ kinv.T
    x0, y0, x1, y1 = _box(corners, 1.0, (image.shape[0], image.shape[1]))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    jj, ii = np.meshgrid(np.arange(x0, x1, dtype=np.float64) + 0.5,
                         np.arange(y0, y1, dtype=np.float64) + 0.5)
    ex = k[0, 0] * jj + k[0, 1] * ii + k0[0]
    ey = k[1, 0] * jj + k[1, 1] * ii + k0[1]
    xs = np.clip(ex, 0.0, w)
    u_s, l_s = np.interp(xs, *eye.upper), np.interp(xs, *eye.lower)
    u_t = np.maximum(np.interp(xs, *up_t), u_s)
    l_t = np.minimum(np.interp(xs, *lo_t), l_s)
    meet = 0.5 * (u_t + l_t)  # lids that cross meet halfway
    u_t, l_t = np.where(u_t > l_t, meet, u_t), np.where(u_t > l_t, meet, l_t)
    top, bottom = u_s - reach_up, l_s + reach_lo
    # Upper curtain [top, u_t] <- source [top, u_s]; lower [l_t, bottom] <- [l_s, bottom];
    # the eyeball between the target lids stays where it is.
    sy = np.where(ey < u_t, top + (ey - top) * (u_s - top) / (u_t - top),
                  np.where(ey > l_t, bottom - (bottom - ey) * (bottom - l_s) / (bottom - l_t),
                           ey))
    travel = np.maximum(u_t - u_s, l_s - l_t)
    alpha = np.clip(travel / (FULL_CLOSE * w), 0.0, 1.0) \
        * np.clip(np.minimum(ex, w - ex) / (0.1 * w), 0.0, 1.0) \
        * np.clip((ey - top) / (0.5 * reach_up), 0.0, 1.0) \
        * np.clip((bottom - ey) / (0.5 * reach_lo), 0.0, 1.0)
    if not (alpha > 0).any():
        return
    # Back from the eye's frame to source pixels (OpenCV pixel centres for remap).
    src = eye.corners[0] + ex[..., None] * eye.axes[0] + sy[..., None] * eye.axes[1] - 0.5
    sampled = cv2.remap(eyeball, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    a = alpha[..., None].astype(np.float32)
    roi = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.clip(roi * (1 - a) + sampled * a + 0.5, 0, 255).astype(np.uint8)


def _iris(image: np.ndarray, eye: _EyeSource, contour: np.ndarray, centre: np.ndarray,
          inv: np.ndarray, cover: float) -> None:
    """Draw the source iris (in place) at the target ``centre``, inside ``contour``, at
    opacity ``cover``."""
    if polygon_area(contour) < 0.25 or cover <= 0.0:
        return  # shut: nothing of the iris shows
    x0, y0, x1, y1 = _box(contour, 1.0, (image.shape[0], image.shape[1]))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    shape = (y1 - y0, x1 - x0)
    at = np.array([x0 + 0.5, y0 + 0.5])
    # Output point q shows source point eye.centre + inv (q - centre), patch pixel
    # (that - origin - 0.5); for box pixel (j, i), q = at + (j, i).
    shift = eye.centre + inv @ (at - centre) - eye.origin - 0.5
    warped = cv2.warpAffine(eye.patch, np.hstack([inv, shift[:, None]]), (shape[1], shape[0]),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    # Dilated like the source's opening, so the iris pixels the source shows just past
    # the lash line come back instead of the sclera fill under them.
    clip = cv2.dilate(fill_polygon(shape, contour - at), np.ones((3, 3), np.uint8)) \
        * np.float32(cover)
    alpha = (warped[..., 3] * clip)[..., None]
    roi = image[y0:y1, x0:x1].astype(np.float32)
    out = roi * (1 - alpha) + warped[..., :3] * clip[..., None]
    image[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
