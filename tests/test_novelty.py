"""Novelty of a held-out slice (``calibrate.novelty``) on the real astronaut portrait: a
slice that training shows scores 1, a slice with a background training never showed
scores low, and the figure reaches calibrate's meta.json and evaluate's report."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar_cam.calibrate.dataset import Clip
from avatar_cam.calibrate.evaluate import face_mask
from avatar_cam.calibrate.novelty import rest_in_training
from avatar_cam.model import losses
from avatar_cam.person import load_person


@pytest.fixture(scope="module")
def portrait(home: object) -> tuple[np.ndarray, np.ndarray]:
    """(256 x 256 crop, its 478 landmarks in crop pixels) of the enrolled astronaut."""
    from pathlib import Path

    person = load_person("astro", Path(str(home)) / "calibration")
    k = 256 / person.crop_size
    crop = cv2.resize(person.crop, (256, 256), interpolation=cv2.INTER_AREA)
    points = person.neutral.astype(np.float32) * np.float32(k)
    return crop, points


def _clip(crops: list[np.ndarray], points: np.ndarray) -> Clip:
    return Clip(np.stack(crops), np.repeat(points[None], len(crops), axis=0),
                np.arange(len(crops), dtype=np.int32))


def _new_background(crop: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The crop with everything outside the face replaced by a pattern it never shows."""
    h = losses.WINDOW // 2
    inside = np.zeros((256, 256), bool)
    inside[h:256 - h, h:256 - h] = face_mask(points, 256)
    yy, xx = np.mgrid[0:256, 0:256]
    stripes = ((np.sin(xx / 3.0) * np.cos(yy / 5.0) + 1) * 127).astype(np.uint8)
    out = np.repeat(stripes[:, :, None], 3, axis=2)
    out[inside] = crop[inside]
    return out


def test_a_slice_that_training_shows_scores_one(portrait: tuple[np.ndarray, np.ndarray]
                                               ) -> None:
    crop, points = portrait
    train = _clip([crop, cv2.GaussianBlur(crop, (9, 9), 3), np.clip(crop * 0.8, 0, 255)
                   .astype(np.uint8)], points)
    seen = rest_in_training(train, _clip([crop], points))
    assert seen["mean"] == pytest.approx(1.0, abs=1e-4)
    assert seen["frames"] == 1 and seen["near"] == 16
    assert seen["ceiling"] == pytest.approx(1.0, abs=1e-4)


def test_a_background_training_never_showed_scores_low(
        portrait: tuple[np.ndarray, np.ndarray]) -> None:
    crop, points = portrait
    train = _clip([crop, cv2.GaussianBlur(crop, (9, 9), 3)], points)
    new = _new_background(crop, points)
    one = rest_in_training(train, _clip([new], points))
    alone, share = one["mean"], one["face_share"]
    assert alone < 0.3
    # A perfect face on the best training frame's rest: the face's share of the crop at
    # SSIM 1, the rest at what training shows of it.
    inside = np.zeros((256, 256), np.uint8)
    cv2.fillConvexPoly(inside, cv2.convexHull(points[:, :2].astype(np.int32)), 1)
    assert share == pytest.approx(inside.mean(), abs=0.02) and 0.1 < share < 0.6
    assert one["ceiling"] == pytest.approx(share + (1 - share) * alone, abs=1e-6)
    half = rest_in_training(train, _clip([new, crop], points))  # one new, one seen
    assert half["mean"] == pytest.approx((alone + 1) / 2, abs=1e-4)


def test_most_spreads_the_frames_it_judges(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    crop, points = portrait
    train = _clip([crop], points)
    assert rest_in_training(train, _clip([crop] * 10, points), most=4)["frames"] == 4
    with pytest.raises(ValueError, match="needs training and held-out frames"):
        rest_in_training(train, train.take(slice(0, 0)))
