"""A visible "AI avatar" badge in a corner of every output frame.

The badge (a rounded, semi-opaque dark box with white anti-aliased text) is rendered
once per frame size into a colour patch and an alpha mask; apply() is then one
alpha blend of a small rectangle (~0.05 ms at 1280x720).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CORNERS = ("tl", "tr", "bl", "br")
DEFAULT_TEXT = "AI avatar"
SUPERSAMPLE = 4  # render at 4x and shrink: smooth edges at any size


@dataclass(frozen=True)
class _Patch:
    x: int
    y: int
    color: np.ndarray  # (h, w, 3) uint8 BGR
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    inv_alpha: np.ndarray  # (h, w) float32, 1 - alpha


class Label:
    """apply(image) -> image: draw the badge in place.

    corner: tl | tr | bl | br. size: badge height as a fraction of the frame height
    (0.045: 32 px at 720p). opacity: of the box behind the text (the text is opaque).
    """

    def __init__(self, corner: str = "br", size: float = 0.045, text: str = DEFAULT_TEXT,
                 opacity: float = 0.6) -> None:
        if corner not in CORNERS:
            raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
        if not 0.02 <= size <= 0.25:
            raise ValueError(f"size must be 0.02..0.25 of the frame height, got {size}")
        if not text or not text.isprintable() or not text.isascii():
            raise ValueError(f"label text must be printable ASCII, got {text!r}")
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be in 0..1, got {opacity}")
        self.corner, self.size, self.text, self.opacity = corner, size, text, opacity
        self._patches: dict[tuple[int, int], _Patch | None] = {}

    def box(self, frame_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) the badge covers in a frame of ``frame_size`` (W, H); None if the
        frame is too small to hold it."""
        patch = self._patch(frame_size)
        if patch is None:
            return None
        h, w = patch.alpha.shape
        return patch.x, patch.y, w, h

    def _patch(self, frame_size: tuple[int, int]) -> _Patch | None:
        if frame_size not in self._patches:
            self._patches[frame_size] = self._render(frame_size)
        return self._patches[frame_size]

    def _render(self, frame_size: tuple[int, int]) -> _Patch | None:
        fw, fh = frame_size
        h = max(12, int(round(self.size * fh)))
        font = cv2.FONT_HERSHEY_COMPLEX  # serifs: "AI" cannot read as "Al"
        k = SUPERSAMPLE
        # Text height (cap height) about half the badge; thickness scales with it.
        scale = 0.5 * h * k / cv2.getTextSize("A", font, 1.0, 1)[0][1]
        thick = max(1, int(round(scale * 1.3)))
        (tw, th), _ = cv2.getTextSize(self.text, font, scale, thick)
        pad = h * k // 2
        w_big, h_big = tw + 2 * pad, h * k
        w = -(-w_big // k)
        margin = max(2, h // 3)
        if w + 2 * margin > fw or h + 2 * margin > fh:
            return None
        box = np.zeros((h_big, w * k), np.uint8)
        r = h_big // 3
        cv2.rectangle(box, (r, 0), (w * k - 1 - r, h_big - 1), (255,), -1)
        cv2.rectangle(box, (0, r), (w * k - 1, h_big - 1 - r), (255,), -1)
        for cx in (r, w * k - 1 - r):
            for cy in (r, h_big - 1 - r):
                cv2.circle(box, (cx, cy), r, (255,), -1, cv2.LINE_AA)
        ink = np.zeros_like(box)
        org = ((w * k - tw) // 2, (h_big + th) // 2)
        cv2.putText(ink, self.text, org, font, scale, (255,), thick, cv2.LINE_AA)
        box_a = cv2.resize(box, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        ink_a = cv2.resize(ink, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        alpha = np.maximum(box_a * self.opacity, ink_a)
        # Colour: white where the text is, near-black box elsewhere (premultiplied mix).
        white = np.divide(ink_a, alpha, out=np.zeros_like(alpha), where=alpha > 0)
        shade = (20 + 235 * white).astype(np.uint8)
        color = cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR)
        x = margin if self.corner[1] == "l" else fw - margin - w
        y = margin if self.corner[0] == "t" else fh - margin - h
        return _Patch(x, y, color, alpha.astype(np.float32),
                      (1.0 - alpha).astype(np.float32))

    def apply(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] != 3:
            raise ValueError("image must be an (H, W, 3) uint8 BGR array, got "
                             f"{getattr(image, 'shape', type(image).__name__)} "
                             f"{getattr(image, 'dtype', '')}")
        patch = self._patch((image.shape[1], image.shape[0]))
        if patch is None:
            return image
        h, w = patch.alpha.shape
        roi = image[patch.y:patch.y + h, patch.x:patch.x + w]
        roi[...] = cv2.blendLinear(patch.color, roi, patch.alpha, patch.inv_alpha)
        return image

    def close(self) -> None:
        self._patches.clear()

    def __enter__(self) -> Label:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
