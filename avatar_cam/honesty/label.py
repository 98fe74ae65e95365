"""A visible "AI avatar" badge in a corner of every output frame.

The badge (a rounded, semi-opaque dark box with white anti-aliased text) is rendered
once per frame size into a colour patch and an alpha mask; apply() is then one
alpha blend of a small rectangle (~0.05 ms at 1280x720).

The badge always fits inside the frame. When its text is too wide for the frame at the
asked size, the text shrinks a little (to SHRINK of that size, never under MIN_LINE_PX
a line), then wraps onto a second line, then shortens the owner's name with "..."; a
trailing note in parentheses ("(not verified)") is kept, and "AI avatar" itself is never
cut: only a frame too small for "AI avatar" alone gets no badge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

CORNERS = ("tl", "tr", "bl", "br")
DEFAULT_TEXT = "AI avatar"
SUPERSAMPLE = 4  # render at 4x and shrink: smooth edges at any size
MIN_LINE_PX = 12  # a text line's height (cap height half of it) never goes under this
SHRINK = 0.8  # the font may shrink to this share of the asked size before text wraps
MAX_WIDTH = 0.75  # of the frame's width: a longer text wraps rather than span the frame
LINE_PITCH = 0.8  # baseline to baseline of a two-line badge, in one-line badge heights
ELLIPSIS = "..."  # the Hershey fonts are ASCII-only: no single-glyph ellipsis
FONT = cv2.FONT_HERSHEY_COMPLEX  # serifs: "AI" cannot read as "Al"
_OWNER = DEFAULT_TEXT + " of "
_NOTE = re.compile(r"^(.*\S)\s+(\([^()]*\))$")  # "name (note)": the last bracketed group


@dataclass(frozen=True)
class Fit:
    """What the badge shows in one frame size: its lines and one line's height in px."""

    lines: tuple[str, ...]
    line_px: int


@dataclass(frozen=True)
class _Patch:
    x: int
    y: int
    color: np.ndarray  # (h, w, 3) uint8 BGR
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    inv_alpha: np.ndarray  # (h, w) float32, 1 - alpha
    fit: Fit


def _parts(text: str) -> tuple[str, str, str]:
    """(head, name, note) of a badge text: the head is never shortened ("AI avatar of "),
    the name may be (the owner's), the note (a trailing "(...)") is kept while any of
    the name is shown."""
    if text.startswith(_OWNER):
        head, rest = _OWNER, text[len(_OWNER):]
    elif text.startswith(DEFAULT_TEXT):
        return DEFAULT_TEXT, "", text[len(DEFAULT_TEXT):].strip()
    else:
        head, rest = "", text
    m = _NOTE.match(rest)
    return (head, m.group(1), m.group(2)) if m else (head, rest, "")


def _wordings(text: str) -> list[str]:
    """The texts the badge may show, most complete first."""
    head, name, note = _parts(text)
    tail = f" {note}" if note else ""
    out = [text]
    for n in range(len(name) - 1, 0, -1):
        kept = name[:n].rstrip(" ,.;:-(")
        if kept:
            out.append(f"{head}{kept}{ELLIPSIS}{tail}")
    if head and note:
        out.append(f"{DEFAULT_TEXT} {note}")
    out.append(DEFAULT_TEXT)
    return list(dict.fromkeys(out))  # in order, no repeats


def _scale(line_px: int) -> tuple[float, int]:
    """Font scale (at SUPERSAMPLE) and stroke thickness for a badge line ``line_px`` high:
    cap height about half the line."""
    scale = 0.5 * line_px * SUPERSAMPLE / cv2.getTextSize("A", FONT, 1.0, 1)[0][1]
    return scale, max(1, int(round(scale * 1.3)))


def _width(line: str, line_px: int) -> int:
    """Width in px of a badge holding ``line`` (text plus half a line's padding a side)."""
    scale, thick = _scale(line_px)
    tw = cv2.getTextSize(line, FONT, scale, thick)[0][0]
    return -(-(tw + 2 * (line_px * SUPERSAMPLE // 2)) // SUPERSAMPLE)


def _height(n_lines: int, line_px: int) -> int:
    return line_px + int(round((n_lines - 1) * LINE_PITCH * line_px))


def _split(wording: str, line_px: int) -> tuple[tuple[str, str], int] | None:
    """The two lines of ``wording`` (broken at a space, "AI avatar" whole on the first)
    with the narrowest badge, and that badge's width; None when it has no such space."""
    first = len(DEFAULT_TEXT) if wording.startswith(DEFAULT_TEXT) else 1
    best: tuple[tuple[str, str], int] | None = None
    for i, c in enumerate(wording):
        if c != " " or i < first:
            continue
        lines = (wording[:i].rstrip(), wording[i:].strip())
        if not all(lines):
            continue
        w = max(_width(line, line_px) for line in lines)
        if best is None or w < best[1]:
            best = lines, w
    return best


def fit_text(text: str, frame_size: tuple[int, int], line_px: int, margin: int
             ) -> Fit | None:
    """The most complete badge for ``text`` that fits in ``frame_size`` (W, H) with
    ``margin`` px to spare each side and no wider than MAX_WIDTH of it, its lines
    ``line_px`` high (or down to SHRINK of that, not under MIN_LINE_PX); None when not
    even "AI avatar" fits."""
    fw, fh = frame_size
    room_w, room_h = min(fw - 2 * margin, int(MAX_WIDTH * fw)), fh - 2 * margin
    smallest = max(MIN_LINE_PX, int(round(SHRINK * line_px)))
    sizes = list(range(line_px, min(smallest, line_px) - 1, -1))
    for wording in _wordings(text):
        for px in sizes:
            if _height(1, px) <= room_h and _width(wording, px) <= room_w:
                return Fit((wording,), px)
        for px in sizes:
            if _height(2, px) > room_h:
                continue
            split = _split(wording, px)
            if split is not None and split[1] <= room_w:
                return Fit(split[0], px)
    return None


class Label:
    """apply(image) -> image: draw the badge in place.

    corner: tl | tr | bl | br. size: badge height as a fraction of the frame height
    (0.045: 32 px at 720p). opacity: of the box behind the text (the text is opaque).
    text: "AI avatar", or "AI avatar of NAME", optionally with a note in brackets at the
    end; in a frame too narrow for it the badge shortens it (see the module docstring):
    ``fit(frame_size)`` says what it shows there.
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

    def fit(self, frame_size: tuple[int, int]) -> Fit | None:
        """The lines the badge shows in a frame of ``frame_size`` (W, H) and their height;
        None if the frame is too small to hold "AI avatar"."""
        patch = self._patch(frame_size)
        return None if patch is None else patch.fit

    def _patch(self, frame_size: tuple[int, int]) -> _Patch | None:
        if frame_size not in self._patches:
            self._patches[frame_size] = self._render(frame_size)
        return self._patches[frame_size]

    def _render(self, frame_size: tuple[int, int]) -> _Patch | None:
        fw, fh = frame_size
        line_px = max(MIN_LINE_PX, int(round(self.size * fh)))
        margin = max(2, line_px // 3)
        fit = fit_text(self.text, frame_size, line_px, margin)
        if fit is None:
            return None
        k, h = SUPERSAMPLE, fit.line_px
        scale, thick = _scale(h)
        w = max(_width(line, h) for line in fit.lines)
        h_out = _height(len(fit.lines), h)
        w_big, h_big, line_big = w * k, h_out * k, h * k
        box = np.zeros((h_big, w_big), np.uint8)
        r = line_big // 3
        cv2.rectangle(box, (r, 0), (w_big - 1 - r, h_big - 1), (255,), -1)
        cv2.rectangle(box, (0, r), (w_big - 1, h_big - 1 - r), (255,), -1)
        for cx in (r, w_big - 1 - r):
            for cy in (r, h_big - 1 - r):
                cv2.circle(box, (cx, cy), r, (255,), -1, cv2.LINE_AA)
        ink = np.zeros_like(box)
        cap = cv2.getTextSize("A", FONT, scale, thick)[0][1]
        for i, line in enumerate(fit.lines):
            (tw, th), _ = cv2.getTextSize(line, FONT, scale, thick)
            if len(fit.lines) == 1:  # as it always was: the line's own height centred
                base = (line_big + th) // 2
            else:  # one baseline pitch apart, the block centred like a single line
                base = (line_big + cap) // 2 + int(round(i * LINE_PITCH * line_big))
            cv2.putText(ink, line, ((w_big - tw) // 2, base), FONT, scale, (255,), thick,
                        cv2.LINE_AA)
        box_a = cv2.resize(box, (w, h_out), interpolation=cv2.INTER_AREA).astype(np.float32)
        ink_a = cv2.resize(ink, (w, h_out), interpolation=cv2.INTER_AREA).astype(np.float32)
        box_a /= 255
        ink_a /= 255
        alpha = np.maximum(box_a * self.opacity, ink_a)
        # Colour: white where the text is, near-black box elsewhere (premultiplied mix).
        white = np.divide(ink_a, alpha, out=np.zeros_like(alpha), where=alpha > 0)
        shade = (20 + 235 * white).astype(np.uint8)
        color = cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR)
        x = margin if self.corner[1] == "l" else fw - margin - w
        y = margin if self.corner[0] == "t" else fh - margin - h_out
        return _Patch(x, y, color, alpha.astype(np.float32),
                      (1.0 - alpha).astype(np.float32), fit)

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
