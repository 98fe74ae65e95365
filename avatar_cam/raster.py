"""Landmarks -> conditioning image: the paper's coloured "sketch" of the face.

A landmark-only receiver runs this same function on the landmarks it receives, so the
output must be reproduced bit-exactly; anything that changes a single output byte for
some input must come with a new ``RASTER_VERSION`` (``tests/test_raster.py`` holds a
frozen checksum that fails when the drawing changes).

Specification of ``sketch-v1``
------------------------------
Canvas: ``(resolution, resolution, 3)`` uint8 BGR, all zeros (black).

Coordinates: a landmark ``(x, y)`` in pixels of an image of ``size = (w, h)`` uses the
MediaPipe convention (0 is the left/top *edge*, so pixel ``i`` spans ``[i, i + 1)``). It is
mapped to the canvas, each axis on its own (a non-square ``size`` is stretched; avatar
crops are square), and shifted by half a pixel to OpenCV's pixel-centre convention::

    u = x * resolution / w - 0.5        v = y * resolution / h - 0.5

both in float64, clipped to ``[-8 * resolution, 9 * resolution]`` (points that far out are
off the canvas anyway; the clip keeps fixed-point values small), then converted to 1/16-pixel
fixed point: ``U = floor(u * 16 + 0.5)`` (int32) and drawn with ``shift = 4``. z is ignored.

Lines: ``cv2.polylines(..., isClosed=False, lineType=cv2.LINE_8, shift=4)``. LINE_8 (no
anti-aliasing) because every pixel then carries exactly one part colour and because the
8-connected rasterizer is the oldest, most stable drawing path in OpenCV; LINE_AA's
coverage arithmetic is an implementation detail that may change between releases.
Thickness for every part: ``max(1, (resolution + 64) // 128)`` (1 up to 191 px, 2 at 256,
4 at 512, 16 at 2048).

Parts, in drawing order (later parts are drawn over earlier ones), each one colour
(B, G, R); the index polylines are those of ``avatar_cam.mesh``, closed contours already
repeat their first index at the end:

    face_oval    FACE_OVAL                 (255, 255, 255)
    right_brow   RIGHT_BROW (2 polylines)  (0, 128, 255)
    left_brow    LEFT_BROW (2 polylines)   (0, 255, 128)
    nose_bridge  NOSE_BRIDGE               (255, 0, 0)
    nose_wings   NOSE_WINGS (2 polylines)  (255, 128, 0)
    nose_bottom  NOSE_BOTTOM               (255, 0, 255)
    right_eye    RIGHT_EYE                 (0, 255, 255)
    left_eye     LEFT_EYE                  (255, 255, 0)
    right_iris   RIGHT_IRIS                (0, 0, 255)
    left_iris    LEFT_IRIS                 (128, 0, 255)
    lips_outer   LIPS_OUTER                (128, 128, 255)
    lips_inner   LIPS_INNER                (0, 160, 0)
"""

from __future__ import annotations

import cv2
import numpy as np

from . import mesh
from .types import check_points

RASTER_VERSION = "sketch-v1"
MIN_RESOLUTION, MAX_RESOLUTION = 32, 2048
SHIFT = 4  # fixed-point fraction bits: 1/16 pixel

Polylines = tuple[tuple[int, ...], ...]

# (name, polylines, BGR colour) in drawing order; the docstring above is the specification.
PARTS: tuple[tuple[str, Polylines, tuple[int, int, int]], ...] = (
    ("face_oval", (mesh.FACE_OVAL,), (255, 255, 255)),
    ("right_brow", mesh.RIGHT_BROW, (0, 128, 255)),
    ("left_brow", mesh.LEFT_BROW, (0, 255, 128)),
    ("nose_bridge", (mesh.NOSE_BRIDGE,), (255, 0, 0)),
    ("nose_wings", mesh.NOSE_WINGS, (255, 128, 0)),
    ("nose_bottom", (mesh.NOSE_BOTTOM,), (255, 0, 255)),
    ("right_eye", (mesh.RIGHT_EYE,), (0, 255, 255)),
    ("left_eye", (mesh.LEFT_EYE,), (255, 255, 0)),
    ("right_iris", (mesh.RIGHT_IRIS,), (0, 0, 255)),
    ("left_iris", (mesh.LEFT_IRIS,), (128, 0, 255)),
    ("lips_outer", (mesh.LIPS_OUTER,), (128, 128, 255)),
    ("lips_inner", (mesh.LIPS_INNER,), (0, 160, 0)),
)


def _layout() -> tuple[np.ndarray, list[tuple[list[tuple[int, int]], tuple[int, int, int]]]]:
    """Every index drawn, concatenated in order (one vectorized conversion serves all parts),
    and per part the [start, end) spans of its polylines in that array plus its colour."""
    order: list[int] = []
    slices = []
    for _, lines, colour in PARTS:
        spans = []
        for line in lines:
            spans.append((len(order), len(order) + len(line)))
            order.extend(line)
        slices.append((spans, colour))
    return np.array(order, dtype=np.intp), slices


_ORDER, _SLICES = _layout()


def line_thickness(resolution: int) -> int:
    """Line width in pixels for every part at ``resolution``."""
    return max(1, (resolution + 64) // 128)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """Return ``size`` as (w, h) ints; ValueError unless both are positive integers."""
    try:
        w, h = size
        ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in (w, h))
    except (TypeError, ValueError):
        ok = False
    if not ok or w <= 0 or h <= 0:
        raise ValueError(f"size must be (width, height) positive integers, got {size!r}")
    return int(w), int(h)


def check_resolution(resolution: int) -> int:
    if (not isinstance(resolution, int | np.integer) or isinstance(resolution, bool)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION):
        raise ValueError(
            f"resolution must be an integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], "
            f"got {resolution!r}"
        )
    return int(resolution)


def to_fixed(points: np.ndarray, size: tuple[int, int], resolution: int) -> np.ndarray:
    """(N, >=2) landmark pixels of ``size`` -> (N, 2) int32 canvas coordinates in 1/16 px."""
    w, h = size
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    scale = np.array([resolution / w, resolution / h])
    uv = np.clip(xy * scale - 0.5, -8.0 * resolution, 9.0 * resolution)
    return np.floor(uv * (1 << SHIFT) + 0.5).astype(np.int32)


def rasterize(points: np.ndarray, size: tuple[int, int], resolution: int) -> np.ndarray:
    """Draw the sketch of (478, 3) float32 ``points`` (pixels of ``size`` = (w, h)).

    Returns (resolution, resolution, 3) uint8 BGR; see the module docstring for exactly what
    is drawn. Raises TypeError/ValueError for malformed points, size or resolution.
    """
    check_points(points)
    size = check_size(size)
    resolution = check_resolution(resolution)
    fixed = to_fixed(points[_ORDER], size, resolution)
    canvas = np.zeros((resolution, resolution, 3), dtype=np.uint8)
    thickness = line_thickness(resolution)
    for spans, colour in _SLICES:
        lines = [fixed[a:b] for a, b in spans]
        cv2.polylines(canvas, lines, False, colour, thickness, cv2.LINE_8, SHIFT)
    return canvas
