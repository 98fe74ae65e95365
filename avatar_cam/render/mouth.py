"""Mouth geometry and the painted mouth interior used by the warp renderer.

All points follow MediaPipe's convention (pixel ``i`` spans ``[i, i + 1)``) in the image
being painted; OpenCV calls get ``- 0.5``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .. import mesh

SHIFT = 4  # fixed-point bits for OpenCV drawing
_INNER = np.array(mesh.LIPS_INNER[:-1], dtype=np.intp)  # closed contour, first not repeated
_UPPER = np.array(mesh.UPPER_INNER_LIP, dtype=np.intp)  # 78 -> 308 over the top
_LOWER = np.array(mesh.LOWER_INNER_LIP, dtype=np.intp)  # 78 -> 308 along the bottom


def mouth_width(face: np.ndarray) -> float:
    """Distance between the inner mouth corners of (>=468, >=2) points."""
    return float(np.linalg.norm(face[_UPPER[-1], :2] - face[_UPPER[0], :2]))


def _mouth_normal(face: np.ndarray) -> np.ndarray:
    """Unit vector across the mouth, towards the chin (perpendicular to the corner line)."""
    axis = face[_UPPER[-1], :2] - face[_UPPER[0], :2]
    norm = float(np.linalg.norm(axis))
    return np.array([0.0, 1.0]) if norm < 1e-9 else np.array([-axis[1], axis[0]]) / norm


def mouth_gap(face: np.ndarray) -> float:
    """Largest inner-lip opening of (>=468, >=2) points, across the mouth, in their units."""
    n = _mouth_normal(face)
    return float(((face[_LOWER, :2] - face[_UPPER, :2]) @ n).max())



CAVITY_TOP, CAVITY_BOTTOM = (22.0, 18.0, 50.0), (40.0, 44.0, 100.0)  # BGR: dark red-brown
UPPER_TEETH, TONGUE = (200.0, 218.0, 236.0), (72.0, 78.0, 150.0)  # warm off-white, pink-red


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def fill_polygon(shape: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a polygon in OpenCV pixel coordinates."""
    mask = np.zeros(shape, dtype=np.uint8)
    fixed = np.floor(poly * (1 << SHIFT) + 0.5).astype(np.int32)
    cv2.fillPoly(mask, [fixed], (255,), cv2.LINE_AA, SHIFT)
    return mask.astype(np.float32) * (1.0 / 255.0)


def draw_mouth(image: np.ndarray, face: np.ndarray, source: np.ndarray | None = None,
               to_source: np.ndarray | None = None, trim: float = 0.0) -> None:
    """Paint an open mouth's interior (in place) inside the inner-lip contour of ``face``
    ((>=468, 2) points in ``image`` pixels, MediaPipe convention): a dark red-brown cavity,
    a hint of tongue on the lower lip and upper teeth hanging from the upper lip, their
    height growing with the opening; the sides fall into shadow.

    With ``source`` ((H, W, 4) uint8 BGRA, alpha marking a real mouth interior) and
    ``to_source`` (affine [a, b, c, d, e, f] from ``image`` to ``source`` coordinates, both
    MediaPipe convention), the real interior is shown where it reaches instead of the
    drawn teeth, less ``trim`` pixels at its lower edge, and the drawn cavity fills the
    rest."""
    poly = face[_INNER]
    up, lo = face[_UPPER], face[_LOWER]
    width = mouth_width(face)
    if polygon_area(poly) < 1.0 or width < 1.0:
        return
    n = _mouth_normal(face)
    u = np.array([n[1], -n[0]])  # along the mouth, corner 78 -> corner 308
    opening = np.maximum((lo - up) @ n, 0.0)  # per lip column, 0 at the corners

    h_img, w_img = image.shape[:2]
    x0 = max(int(np.floor(poly[:, 0].min())) - 2, 0)
    y0 = max(int(np.floor(poly[:, 1].min())) - 2, 0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + 2, w_img)
    y1 = min(int(np.ceil(poly[:, 1].max())) + 2, h_img)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    shape = (y1 - y0, x1 - x0)
    origin = np.array([x0 + 0.5, y0 + 0.5])  # patch pixel (0, 0) centre, continuous coords
    alpha = fill_polygon(shape, poly - origin)

    # Per pixel: position along the mouth (-1 .. 1, corner to corner) and depth below the
    # middle of the upper lip relative to the widest opening.
    jj, ii = np.meshgrid(np.arange(shape[1], dtype=np.float32) + np.float32(origin[0]),
                         np.arange(shape[0], dtype=np.float32) + np.float32(origin[1]))
    along = ((jj - up[0][0]) * u[0] + (ii - up[0][1]) * u[1]) / (0.5 * width) - 1.0
    below = (jj * n[0] + ii * n[1] - up[len(up) // 2] @ n) / max(float(opening.max()), 1.0)
    side = np.clip(1.0 - 0.6 * along * along, 0.25, 1.0)[..., None]

    t = np.clip(below, 0.0, 1.0)[..., None]
    patch = (np.array(CAVITY_TOP) * (1 - t) + np.array(CAVITY_BOTTOM) * t) * side
    # Tongue: a soft ellipse resting on the lower lip, shows once the mouth is well open.
    k = len(lo) // 2
    gap = float(opening[k])
    centre = lo[k] - 0.35 * gap * n - origin
    axes = (max(0.3 * width, 1.0), max(0.3 * gap, 1.0))
    angle = float(np.degrees(np.arctan2(u[1], u[0])))
    tongue = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(tongue, (int(round(centre[0] * 16)), int(round(centre[1] * 16))),
                (int(axes[0] * 16), int(axes[1] * 16)), angle, 0, 360, (255,), -1, cv2.LINE_AA,
                SHIFT)
    cover = cv2.GaussianBlur(tongue, (5, 5), 0).astype(np.float32)[..., None] * (0.6 / 255.0)
    patch = patch * (1 - cover) + np.array(TONGUE) * side * cover
    if source is None or to_source is None:
        # Upper teeth hang from the upper lip; they fade out before the corners and have
        # faint gaps between them (incisors about a tenth of the mouth width).
        height = np.minimum(0.4 * opening, 0.2 * width)
        band = np.concatenate([up, (up + height[:, None] * n)[::-1]]) - origin
        fade = np.clip((0.92 - np.abs(along)) / 0.3, 0.0, 1.0)
        dist = np.abs(np.abs(along) - np.round(np.abs(along) / 0.2) * 0.2) * (0.5 * width)
        gaps = 1.0 - 0.12 * np.clip(1.0 - dist, 0.0, 1.0)
        cover = (fill_polygon(shape, band) * fade)[..., None]
        shade = ((1.0 - 0.3 * along * along) * gaps)[..., None]
        patch = patch * (1 - cover) + np.array(UPPER_TEETH) * shade * cover
    patch = cv2.GaussianBlur(patch.astype(np.float32), (3, 3), 0)
    roi = image[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    if source is not None and to_source is not None:
        # Patch pixel (0, 0) is at ``origin``; OpenCV wants pixel-centre coordinates.
        m = to_source.reshape(2, 3)
        offset = m[:, :2] @ origin + m[:, 2] - 0.5
        real = cv2.warpAffine(source, np.hstack([m[:, :2], offset[:, None]]),
                              (shape[1], shape[0]),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        cov = real[..., 3].astype(np.float32) * (1.0 / 255.0)
        if trim > 0:  # keep a pixel only if the one ``trim`` below is interior too
            below_ = np.array([[1, 0, trim * n[0]], [0, 1, trim * n[1]]], np.float32)
            cov = np.minimum(cov, cv2.warpAffine(cov, below_, (shape[1], shape[0]),
                                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
        cov = cov[..., None]
        patch = patch * (1 - cov) + real[..., :3].astype(np.float32) * cov
    image[y0:y1, x0:x1] = np.clip(roi * (1 - a) + patch * a + 0.5, 0, 255).astype(np.uint8)
