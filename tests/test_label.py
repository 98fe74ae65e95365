"""The visible "AI avatar" badge: in the chosen corner, readable, nowhere else."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_cam.honesty.label import CORNERS, Label


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
