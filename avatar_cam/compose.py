"""Compositor: the rendered face crop into the output frame (default 1280x720).

The layout maps the person's square face crop to a square of ``face_height`` times the
output height, centred; the background is the enrollment photo under the same
transform (so the crop's edges line up with it), that photo blurred, or a plain colour.
The crop is blended in with a feathered square mask so its border never shows. Then
every frame gets the visible "AI avatar" label (unless turned off) and the invisible
watermark (always): we make synthetic faces, so every frame says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .framing import Placement
from .types import AvatarFrame

BACKGROUNDS = ("photo", "blur", "plain")


@dataclass(frozen=True)
class Layout:
    """Where the face crop goes: a square of ``side`` px at (x, y); may overhang the frame."""

    background: np.ndarray  # (H, W, 3) uint8 BGR, the output size
    x: int
    y: int
    side: int


def make_layout(
    photo: np.ndarray,
    crop_to_photo: np.ndarray,
    crop_size: int,
    out_size: tuple[int, int] = (1280, 720),
    background: str = "photo",
    face_height: float = 0.9,
    plain_color: tuple[int, int, int] = (60, 60, 60),
) -> Layout:
    """Place the crop centred at ``face_height`` of the frame height and build the background."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    w, h = out_size
    if w < 16 or h < 16:
        raise ValueError(f"output size must be at least 16x16, got {out_size}")
    side = max(16, int(round(face_height * h)))
    x, y = (w - side) // 2, (h - side) // 2
    # crop -> output: scale side/crop_size, then shift; photo -> output composes with its inverse.
    k = side / crop_size
    crop_to_out = np.array([[k, 0.0, x], [0.0, k, y]])
    photo_to_crop = cv2.invertAffineTransform(crop_to_photo)
    photo_to_out = _compose_affine(crop_to_out, photo_to_crop)
    bg: np.ndarray
    if background == "plain":
        bg = np.empty((h, w, 3), np.uint8)
        bg[:] = plain_color
    else:
        bg = cv2.warpAffine(photo, photo_to_out, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        if background == "blur":
            sigma = max(2.0, h / 40)
            bg = cv2.GaussianBlur(bg, (0, 0), sigma)
    return Layout(bg, x, y, side)


def _compose_affine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a o b) for 2x3 affines: apply b, then a."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def feather_mask(side: int, feather: float) -> np.ndarray:
    """(side, side) float32 in [0, 1]: 1 inside, a smooth ramp to 0 over the outer band."""
    band = max(1.0, feather * side)
    r = np.arange(side, dtype=np.float32) + 0.5
    edge = np.minimum(r, side - r) / band
    ramp = np.clip(edge, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible kink at the band's inner edge
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


class _Label(Protocol):
    def apply(self, image: np.ndarray) -> np.ndarray: ...


class _Marker(Protocol):
    def set_payload(self, bits: int) -> None: ...
    def embed(self, image: np.ndarray) -> np.ndarray: ...


class Compositor:
    """compose(face) -> AvatarFrame: blend a rendered face crop into the layout, then the
    label and the watermark. ``payload()`` gives the watermark's current payload (it
    changes each minute; the marker rebuilds its pattern only then)."""

    def __init__(self, layout: Layout, feather: float = 0.08, label: _Label | None = None,
                 marker: _Marker | None = None,
                 payload: Callable[[], int] | None = None) -> None:
        self.layout = layout
        self.label, self.marker, self.payload = label, marker, payload
        h, w = layout.background.shape[:2]
        # Visible part of the face square (it may overhang the frame edges).
        self._dst = (max(0, layout.x), max(0, layout.y),
                     min(w, layout.x + layout.side), min(h, layout.y + layout.side))
        x0, y0, x1, y1 = self._dst
        if x1 <= x0 or y1 <= y0:
            raise ValueError("the face square lies entirely outside the output frame")
        self._src = (x0 - layout.x, y0 - layout.y, x1 - layout.x, y1 - layout.y)
        sx0, sy0, sx1, sy1 = self._src
        mask = feather_mask(layout.side, feather)[sy0:sy1, sx0:sx1]
        self._mask = np.ascontiguousarray(mask)
        self._inv_mask = np.ascontiguousarray(1.0 - mask)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.layout.background.shape[:2]
        return (w, h)

    def compose(self, face: np.ndarray, seq: int, t_capture_ns: int,
                face_found: bool = True, placement: Placement | None = None) -> AvatarFrame:
        t0 = time.perf_counter()
        if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8 \
                or face.shape[0] != face.shape[1]:
            raise ValueError(f"face must be (R, R, 3) uint8 BGR, got {face.shape} {face.dtype}")
        side = self.layout.side
        scaled = face if face.shape[0] == side else cv2.resize(
            face, (side, side), interpolation=cv2.INTER_LINEAR)
        sx0, sy0, sx1, sy1 = self._src
        x0, y0, x1, y1 = self._dst
        out = self.layout.background.copy()
        roi = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = cv2.blendLinear(scaled[sy0:sy1, sx0:sx1], roi,
                                            self._mask, self._inv_mask)
        if self.label is not None:
            self.label.apply(out)
        if self.marker is not None:  # last: the mark must sit on the final pixels
            if self.payload is not None:
                self.marker.set_payload(self.payload())
            self.marker.embed(out)
        ms = (time.perf_counter() - t0) * 1e3
        return AvatarFrame(seq, t_capture_ns, out, face_found, {"compose": ms})

    def close(self) -> None:
        pass

    def __enter__(self) -> Compositor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
