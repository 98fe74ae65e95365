"""The visible "AI avatar" badge: in the chosen corner, readable, nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
from honesty_checks import label_visible

from avatar_cam.honesty.label import CORNERS, Fit, Label


@pytest.fixture
def frame(astronaut: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(astronaut, (1280, 720))


@pytest.mark.parametrize("corner", CORNERS)
def test_badge_lands_in_its_corner_only(frame: np.ndarray, corner: str) -> None:
    label = Label(corner)
    out = label.apply(frame.copy())
    changed = np.argwhere((out != frame).any(axis=2))
    assert len(changed) > 500
    box = label.box((1280, 720))
    assert box is not None
    x, y, w, h = box
    ys, xs = changed[:, 0], changed[:, 1]
    assert ys.min() >= y and ys.max() < y + h and xs.min() >= x and xs.max() < x + w
    # In the named corner, within a few percent of the edges.
    cx, cy = x + w / 2, y + h / 2
    assert (cx < 640) == (corner[1] == "l") and (cy < 360) == (corner[0] == "t")
    assert min(x, 1280 - x - w) < 40 and min(y, 720 - y - h) < 40


def test_badge_is_readable(frame: np.ndarray) -> None:
    """Bright text on a dark box: strong contrast inside, whatever the background."""
    for background in (frame, np.full_like(frame, 255), np.zeros_like(frame)):
        label = Label("br", size=0.05)
        out = label.apply(background.copy())
        box = label.box((1280, 720))
        assert box is not None
        x, y, w, h = box
        luma = out[y:y + h, x:x + w].mean(axis=2)
        assert luma.max() > 200 and np.percentile(luma, 30) < 130
        assert 30 <= h <= 40 and w > 3 * h  # 5% of 720 px, wide enough for "AI avatar"


def test_size_is_relative_to_the_frame() -> None:
    small, big = Label(size=0.05).box((640, 360)), Label(size=0.05).box((1920, 1080))
    assert small is not None and big is not None
    assert big[3] == pytest.approx(3 * small[3], abs=2)


def test_tiny_frame_is_left_alone_and_bad_arguments_fail() -> None:
    tiny = np.zeros((20, 30, 3), np.uint8)
    assert (Label().apply(tiny.copy()) == 0).all()
    with pytest.raises(ValueError, match="corner"):
        Label("middle")
    with pytest.raises(ValueError, match="size"):
        Label(size=0.9)
    with pytest.raises(ValueError, match="uint8"):
        Label().apply(np.zeros((720, 1280, 3), np.float32))


LONG_NAME = "Maximilian Alexander Bartholomew von Hohenzollern-Sigmaringen"  # 61 characters
NORMAL_NAMES = ("Bob", "Eileen O'Connor", "avatar-cam project (demo)", "Jean-Baptiste Dupont")


def _ink(image: np.ndarray) -> np.ndarray:
    """The badge's text drawn on mid grey: how far above the grey each pixel is."""
    return np.clip(image[..., 1].astype(np.float32) - 128, 0, None)


@pytest.mark.parametrize("size", [(320, 240), (640, 480)])
@pytest.mark.parametrize("note", ["", " (liveness not verified)"])
@pytest.mark.parametrize("corner", ["br", "tl"])
def test_a_long_owner_name_stays_inside_the_frame(astronaut: np.ndarray,
                                                  size: tuple[int, int], note: str,
                                                  corner: str) -> None:
    """The issue's "AI avatar of avatar-cam project (demo" ran off the picture: now the
    badge shrinks, wraps or shortens the name, and every pixel it draws is in the frame."""
    import cv2

    fw, fh = size
    label = Label(corner, text=f"AI avatar of {LONG_NAME}{note}")
    fit, box = label.fit(size), label.box(size)
    assert fit is not None and box is not None
    x, y, w, h = box
    margin = 2
    assert margin <= x and x + w <= fw - margin and margin <= y and y + h <= fh - margin
    assert w <= 0.75 * fw  # a badge, not a banner across the picture
    for background in (cv2.resize(astronaut, size), np.zeros((fh, fw, 3), np.uint8)):
        out = label.apply(background.copy())
        changed = np.argwhere((out != background).any(axis=2))
        ys, xs = changed[:, 0], changed[:, 1]
        assert ys.min() >= y and ys.max() < y + h and xs.min() >= x and xs.max() < x + w
        assert label_visible(out, label)
    # No glyph is clipped by the badge's edge: the text's ink stays off its border.
    ink = _ink(label.apply(np.full((fh, fw, 3), 128, np.uint8)))[y:y + h, x:x + w]
    assert ink.max() > 60  # text brighter than 188 on the grey
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    assert border.max() < 10
    # "AI avatar" starts the first line, at a legible size, and its line's ink is at least
    # as wide as a badge that says only "AI avatar" at that line height draws.
    assert fit.lines[0].startswith("AI avatar") and fit.line_px >= 12
    if note:  # the note survives whatever happens to the name
        assert " ".join(fit.lines).endswith(note.strip())
    alone = Label(corner, size=fit.line_px / fh)
    assert alone.fit(size) == Fit(("AI avatar",), fit.line_px)
    ax, ay, aw, ah = alone.box(size) or (0, 0, 0, 0)
    word = _ink(alone.apply(np.full((fh, fw, 3), 128, np.uint8)))[ay:ay + ah, ax:ax + aw]
    line = ink[:fit.line_px]
    assert _span(line) >= _span(word) - 1
    assert line.sum() > word.sum()


def _span(ink: np.ndarray) -> int:
    cols = np.nonzero((ink > 20).any(axis=0))[0]
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("size", [(320, 240), (640, 480)])
def test_normal_names_are_written_in_full(size: tuple[int, int]) -> None:
    for name in NORMAL_NAMES:
        for note in ("", " (liveness not verified)"):
            text = f"AI avatar of {name}{note}"
            fit = Label(text=text).fit(size)
            assert fit is not None and " ".join(fit.lines) == text, (size, text, fit)
    fit = Label(text="AI avatar of avatar-cam project (demo)").fit(size)
    assert fit is not None and len(fit.lines) == 1  # the demo's owner: one line


def test_only_the_name_is_shortened() -> None:
    """Too long a name loses its end to "...": "AI avatar of" and the note stay."""
    fit = Label(text=f"AI avatar of {'X' * 60} (liveness not verified)").fit((320, 240))
    assert fit is not None
    text = " ".join(fit.lines)
    assert text.startswith("AI avatar of XXXXXXXXXX") and "X..." in text
    assert text.endswith("(liveness not verified)")
    # A frame that cannot hold any of the name still says "AI avatar".
    tiny = Label(text=f"AI avatar of {LONG_NAME} (not verified)").fit((100, 80))
    assert tiny is not None and tiny.lines[0].startswith("AI avatar")


def test_the_badge_fits_every_frame_size() -> None:
    """From a thumbnail to 4K, wide or tall: inside the frame, or none when "AI avatar"
    alone could not be drawn legibly (a line under 12 px)."""
    label = Label(text=f"AI avatar of {LONG_NAME} (liveness not verified)")
    for fw, fh in [(64, 48), (80, 60), (96, 72), (120, 90), (160, 120), (240, 320),
                   (480, 640), (854, 480), (1280, 720), (1920, 1080), (3840, 2160)]:
        box, fit = label.box((fw, fh)), label.fit((fw, fh))
        if box is None:
            assert Label().box((fw, fh)) is None and fw < 80
            continue
        x, y, w, h = box
        assert fit is not None and fit.lines[0].startswith("AI avatar") and fit.line_px >= 12
        assert x > 0 and x + w < fw and y > 0 and y + h < fh
