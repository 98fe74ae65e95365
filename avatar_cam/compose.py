"""Compositor: the rendered face square into the output frame (default 1280x720).

Two layouts. ``frame_layout`` is the avatar's: the enrollment photo frames the output as
it frames the person (scaled to cover the frame, centred), but zoomed out where that
would cut the head (hair included) and zoomed in where the face would be tiny; wherever
the photo does not reach, it is extended by blurring its stretched border (never
mirrored). The background (``photo``, ``blur``, ``plain``) is built once over a margin
beyond the frame, so that a ``Placement`` from the framer (the whole picture moved and
zoomed about the head, as auto-framing moves a camera) only shifts or warps it. The face
square is blended in through ``matte.HeadMatte``: a soft matte of head and hair that
fades to nothing before the square's border, so no straight edge of the render square
shows. ``blur`` and ``plain`` keep the person (MediaPipe's selfie segmentation of the
photo) sharp, as call apps' background blur does.

``make_layout`` is the plain square layout (a face square of ``face_height`` of the frame,
centred, feathered square mask) for driver footage (footage.py) and the receiver's sketch
view.

``Compositor`` then draws the label and embeds the watermark it was given, the mark last
so it sits on the final pixels. The avatar's output (``live.compositor_for``, and the
receiver's look of the peer) is given both: the visible "AI avatar" label (unless turned
off) and the invisible watermark, always, since we make synthetic faces and every frame
says so. The sketch view gets the label only (a sketch carries no model); driver footage,
the input of tests and benchmarks, neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from . import mesh
from .framing import Placement
from .matte import HeadMatte, edge_falloff, extend_with_blur, head_box, person_mask
from .types import AvatarFrame

_OVAL = list(mesh.FACE_OVAL[:-1])

BACKGROUNDS = ("photo", "blur", "plain")
MOVE_MARGIN = 0.5  # of the output's longer side: background kept beyond the frame for moves


@dataclass(frozen=True)
class Layout:
    """Where the face square goes at rest: ``side`` px at (x, y) (it may overhang)."""

    background: np.ndarray  # (H, W, 3) uint8 BGR, the output at rest
    x: int
    y: int
    side: int
    # For placements: the background beyond the frame at output scale, with output pixel
    # (0, 0) at ``origin`` in it; the head (hair included) at rest, (x0, y0, x1, y1) in
    # output pixels: placements pivot on its centre and keep it inside.
    source: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)
    head: tuple[float, float, float, float] | None = None
    matte: HeadMatte | None = None

    @property
    def pivot(self) -> tuple[float, float]:
        if self.head is None:
            return (self.x + self.side / 2, self.y + self.side / 2)
        return ((self.head[0] + self.head[2]) / 2, (self.head[1] + self.head[3]) / 2)


def _check(background: str, out_size: tuple[int, int]) -> None:
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if out_size[0] < 16 or out_size[1] < 16:
        raise ValueError(f"output size must be at least 16x16, got {out_size}")


def _canvas(photo: np.ndarray, photo_to_out: np.ndarray, size: tuple[int, int],
            origin: tuple[int, int]) -> np.ndarray:
    """The photo under ``photo_to_out`` on a (size) canvas whose (0, 0) is output pixel
    -origin; where the photo does not reach, its border stretched and blurred."""
    k = float(np.sqrt(abs(np.linalg.det(photo_to_out[:, :2]))))
    m = photo_to_out.copy()
    m[:, 2] += origin
    if k < 1.0:  # shrink first: the padding and its blur then cost what the output does
        photo = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        m[:, :2] /= k
    inv = cv2.invertAffineTransform(m)
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ inv.T
    ph, pw = photo.shape[:2]
    pad = (int(np.ceil(max(0.0, -corners[:, 1].min()))) + 2,
           int(np.ceil(max(0.0, corners[:, 1].max() - ph))) + 2,
           int(np.ceil(max(0.0, -corners[:, 0].min()))) + 2,
           int(np.ceil(max(0.0, corners[:, 0].max() - pw))) + 2)
    big = extend_with_blur(photo, pad)
    m[:, 2] += m[:, :2] @ np.array([pad[2], pad[0]], np.float64) * -1.0
    return cv2.warpAffine(big, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def make_layout(
    photo: np.ndarray,
    crop_to_photo: np.ndarray,
    crop_size: int,
    out_size: tuple[int, int] = (1280, 720),
    background: str = "photo",
    face_height: float = 0.9,
    plain_color: tuple[int, int, int] = (60, 60, 60),
) -> Layout:
    """The square layout: the crop centred at ``face_height`` of the frame height."""
    _check(background, out_size)
    w, h = out_size
    side = max(16, int(round(face_height * h)))
    x, y = (w - side) // 2, (h - side) // 2
    # crop -> output: scale side/crop_size, then shift; photo -> output composes with its inverse.
    k = side / crop_size
    crop_to_out = np.array([[k, 0.0, x], [0.0, k, y]])
    photo_to_out = _compose_affine(crop_to_out, cv2.invertAffineTransform(crop_to_photo))
    bg: np.ndarray
    if background == "plain":
        bg = np.empty((h, w, 3), np.uint8)
        bg[:] = plain_color
    else:
        bg = _canvas(photo, photo_to_out, (w, h), (0, 0))
        if background == "blur":
            bg = cv2.GaussianBlur(bg, (0, 0), max(2.0, h / 40))
    return Layout(bg, x, y, side)


def frame_layout(
    photo: np.ndarray,
    crop_to_photo: np.ndarray,
    crop_size: int,
    neutral: np.ndarray,
    out_size: tuple[int, int] = (1280, 720),
    background: str = "photo",
    margin: float = 0.05,
    min_face: float = 0.3,
    plain_color: tuple[int, int, int] = (60, 60, 60),
    segment: bool = True,
) -> Layout:
    """The avatar's layout (see the module docstring). ``neutral``: (478, 3) landmarks in
    crop pixels; ``margin``: of the frame height, kept between the head and the frame's
    edges; ``min_face``: the least face-oval height, as a share of the frame height;
    ``segment``: find the person in the photo (else the ring alone mattes the head)."""
    _check(background, out_size)
    w, h = out_size
    c2p = np.asarray(crop_to_photo, np.float64)
    k_c = float(np.sqrt(abs(np.linalg.det(c2p[:, :2]))))  # crop px -> photo px
    pts = np.asarray(neutral, np.float64)[:, :2] @ c2p[:, :2].T + c2p[:, 2]  # photo px
    hx0, hy0, hx1, hy1 = head_box(pts)
    oval_h = float(np.ptp(pts[_OVAL, 1]))
    ph, pw = photo.shape[:2]
    m = margin * h
    k_fit = min((w - 2 * m) / max(hx1 - hx0, 1e-6), (h - 2 * m) / max(hy1 - hy0, 1e-6))
    k = min(k_fit, max(w / pw, h / ph, min_face * h / max(oval_h, 1e-6)))
    ox, oy = (w - k * pw) / 2, (h - k * ph) / 2
    if k * pw >= w:
        ox = min(0.0, max(w - k * pw, ox))
    if k * ph >= h:
        oy = min(0.0, max(h - k * ph, oy))
    # The head with its margin inside the frame wins over covering the frame.
    ox += max(0.0, m - (k * hx0 + ox)) - max(0.0, (k * hx1 + ox) - (w - m))
    oy += max(0.0, m - (k * hy0 + oy)) - max(0.0, (k * hy1 + oy) - (h - m))
    photo_to_out = np.array([[k, 0.0, ox], [0.0, k, oy]])
    crop_to_out = _compose_affine(photo_to_out, c2p)
    side = max(16, int(round(k * k_c * crop_size)))
    x, y = int(round(crop_to_out[0, 2])), int(round(crop_to_out[1, 2]))
    pad = int(MOVE_MARGIN * max(w, h))
    origin = (pad, pad)
    size = (w + 2 * pad, h + 2 * pad)
    seg = person_mask(photo) if segment else None
    source = _canvas(photo, photo_to_out, size, origin)
    if background != "photo":
        plate = (np.empty_like(source) if background == "plain"
                 else cv2.GaussianBlur(source, (0, 0), max(2.0, h / 40)))
        if background == "plain":
            plate[:] = plain_color
        if seg is not None:
            moved = photo_to_out.copy()
            moved[:, 2] += origin
            alpha = cv2.warpAffine(seg, moved, size, flags=cv2.INTER_LINEAR)[..., None]
            plate = (alpha * source + (1.0 - alpha) * plate + 0.5).astype(np.uint8)
        source = plate
    matte_seg = None
    if seg is not None:
        to_crop = cv2.invertAffineTransform(c2p)
        matte_seg = cv2.warpAffine(seg, to_crop, (crop_size, crop_size), flags=cv2.INTER_LINEAR)
    head = (k * hx0 + ox, k * hy0 + oy, k * hx1 + ox, k * hy1 + oy)
    bg = np.ascontiguousarray(source[pad:pad + h, pad:pad + w])
    return Layout(bg, x, y, side, source, origin, head,
                  HeadMatte(neutral, crop_size, matte_seg))


def _compose_affine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a o b) for 2x3 affines: apply b, then a."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def feather_mask(side: int, feather: float) -> np.ndarray:
    """(side, side) float32 in [0, 1]: 1 inside, a smooth ramp to 0 over the outer band
    (``feather`` of the side): the square layout's mask, the head matte's falloff."""
    return edge_falloff(side, feather)


class _Label(Protocol):
    def apply(self, image: np.ndarray) -> np.ndarray: ...


class _Marker(Protocol):
    def set_payload(self, bits: int) -> None: ...
    def embed(self, image: np.ndarray) -> np.ndarray: ...


class Compositor:
    """compose(face, ..., placement) -> AvatarFrame: blend a rendered face square into the
    layout (moved by ``placement``, the framer's move of the whole picture), then the
    label and the watermark. ``payload()`` gives the watermark's current payload (it
    changes each minute; the marker rebuilds its pattern only then). A layout without a
    head matte (``make_layout``) blends the square through a feathered square mask."""

    def __init__(self, layout: Layout, feather: float = 0.08, label: _Label | None = None,
                 marker: _Marker | None = None,
                 payload: Callable[[], int] | None = None) -> None:
        self.layout = layout
        self.label, self.marker, self.payload = label, marker, payload
        self.feather = feather
        h, w = layout.background.shape[:2]
        x0, y0 = max(0, layout.x), max(0, layout.y)
        x1, y1 = min(w, layout.x + layout.side), min(h, layout.y + layout.side)
        if x1 <= x0 or y1 <= y0:
            raise ValueError("the face square lies entirely outside the output frame")
        self._square = feather_mask(layout.side, feather) if layout.matte is None else None

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.layout.background.shape[:2]
        return (w, h)

    def _background(self, p: Placement) -> tuple[np.ndarray, float, float, float]:
        """The background under ``p``, where the resting square's corner went and the
        scale it was drawn at (``p.k`` up to the rounding of a whole-pixel crop)."""
        lay = self.layout
        if lay.source is None or p.identity:
            return lay.background.copy(), float(lay.x), float(lay.y), 1.0
        w, h = self.size
        cx, cy = lay.pivot
        ox, oy = lay.origin
        sh, sw = lay.source.shape[:2]
        # output = pivot + k (rest - pivot) + d, rest = source - origin: the output is the
        # source's rectangle from (sx, sy), (w / k, h / k) large, scaled by k.
        tx, ty = (1 - p.k) * cx + p.dx, (1 - p.k) * cy + p.dy
        sx, sy = int(round(ox - tx / p.k)), int(round(oy - ty / p.k))
        rw, rh = max(1, int(round(w / p.k))), max(1, int(round(h / p.k)))
        if sx >= 0 and sy >= 0 and sx + rw <= sw and sy + rh <= sh:
            roi = lay.source[sy:sy + rh, sx:sx + rw]
            # A crop and a resize (separable, far cheaper than a general warp); the
            # square goes where the same rounded mapping puts it.
            bg = roi.copy() if (rw, rh) == (w, h) else cv2.resize(
                roi, (w, h), interpolation=cv2.INTER_LINEAR)
            kx = w / rw
            return bg, (lay.x + ox - sx) * kx, (lay.y + oy - sy) * (h / rh), kx
        m = np.array([[p.k, 0.0, tx - p.k * ox], [0.0, p.k, ty - p.k * oy]])
        bg = cv2.warpAffine(lay.source, m, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        return bg, p.k * lay.x + tx, p.k * lay.y + ty, p.k

    def compose(self, face: np.ndarray, seq: int, t_capture_ns: int,
                face_found: bool = True, placement: Placement | None = None) -> AvatarFrame:
        t0 = time.perf_counter()
        if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8 \
                or face.shape[0] != face.shape[1]:
            raise ValueError(f"face must be (R, R, 3) uint8 BGR, got {face.shape} {face.dtype}")
        p = placement if placement is not None else Placement()
        out, fx, fy, k = self._background(p)
        side = max(16, int(round(self.layout.side * k)))
        x, y = int(round(fx)), int(round(fy))
        h, w = out.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + side), min(h, y + side)
        if x1 > x0 and y1 > y0:
            if face.shape[0] == side:
                scaled = face
            else:  # upscaling: cubic keeps edges cleaner than bilinear
                interp = cv2.INTER_CUBIC if side > face.shape[0] else cv2.INTER_AREA
                scaled = cv2.resize(face, (side, side), interpolation=interp)
            if self.layout.matte is not None:
                mask = self.layout.matte.at(p.head, side)
            elif self._square is not None and self._square.shape[0] == side:
                mask = self._square
            else:
                mask = feather_mask(side, self.feather)
            sx, sy = x0 - x, y0 - y
            part = np.ascontiguousarray(mask[sy:sy + y1 - y0, sx:sx + x1 - x0])
            out[y0:y1, x0:x1] = cv2.blendLinear(
                np.ascontiguousarray(scaled[sy:sy + y1 - y0, sx:sx + x1 - x0]),
                np.ascontiguousarray(out[y0:y1, x0:x1]), part, 1.0 - part)
        if self.label is not None:
            self.label.apply(out)
        if self.marker is not None:  # last: the mark must sit on the final pixels
            if self.payload is not None:
                self.marker.set_payload(self.payload())
            self.marker.embed(out)
        ms = (time.perf_counter() - t0) * 1e3
        return AvatarFrame(seq, t_capture_ns, out, face_found, {"compose": ms},
                           face_box=(x, y, x + side, y + side))

    def close(self) -> None:
        pass

    def __enter__(self) -> Compositor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
