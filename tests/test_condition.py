"""The generator's conditioning image: the sketch, and for a sketch+warp generator the warp
render of the person's crop, made alike for training (jittered) and live."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam import motion
from avatar_cam.calibrate.batches import augment, conditions
from avatar_cam.calibrate.train_common import TrainConfig
from avatar_cam.errors import ModelError
from avatar_cam.person import load_person
from avatar_cam.raster import rasterize
from avatar_cam.render.condition import Conditioner, for_folder, read_reference
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks

R = 64


def test_sketch_and_warp_channels(home: Path) -> None:
    person = load_person("astro", home / "calibration")
    s = person.crop_size
    pts = motion.animate(person.neutral, motion.script(0.7))
    with Conditioner(R, warp=False) as plain:
        sketch = plain(pts, (s, s))
    assert sketch.shape == (R, R, 3) and np.array_equal(sketch, rasterize(pts, (s, s), R))
    with for_folder(person.folder, R, warp=True) as both, \
            WarpRenderer(person.crop, person.neutral, R) as warp:
        cond = both.render(Landmarks(0, 0, pts, (s, s)))
        assert cond.shape == (R, R, 6) and cond.dtype == np.uint8
        assert np.array_equal(cond[:, :, :3], sketch)
        assert np.array_equal(cond[:, :, 3:], warp.render(Landmarks(0, 0, pts, (s, s))))
    with pytest.raises(ValueError, match="no warp render"):
        plain.warped(pts)
    with pytest.raises(ValueError, match="needs the person's crop"):
        Conditioner(R, warp=True)


def test_jittered_warp_moves_with_the_crop(home: Path) -> None:
    """In training the warp render is made on the un-jittered landmarks and moved by the
    crop's own jitter, so conditioning and target agree everywhere, background included."""
    person = load_person("astro", home / "calibration")
    crop = cv2.resize(person.crop, (R, R), interpolation=cv2.INTER_AREA)
    pts = (person.neutral * np.float32(R / person.crop_size))[None].repeat(3, 0)
    crops = crop[None].repeat(3, 0)
    tc = TrainConfig(landmark_noise=0.0)
    moved, moved_pts, mats = augment(crops, pts, tc, np.random.default_rng(0))
    with Conditioner(R, True, (crop, pts[0])) as c:
        cond = conditions(c, moved_pts, pts, mats)
        for i in range(3):
            assert np.array_equal(cond[i, :, :, :3], c.sketch(moved_pts[i]))
            # The neutral warped onto itself is the crop; jittered like the target crop.
            assert np.abs(cond[i, :, :, 3:].astype(int) - moved[i].astype(int)).mean() < 4
        plain = conditions(c, moved_pts)  # no transforms: rendered on the moved landmarks
        assert plain.shape == cond.shape


def test_unreadable_reference_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "astro"
    shutil.copytree(home / "calibration" / "astro", folder)
    crop, neutral = read_reference(folder)
    assert crop.shape[0] == crop.shape[1] and neutral.shape == (478, 3)
    (folder / "neutral.npy").write_bytes(b"not numpy")
    with pytest.raises(ModelError, match="neutral.npy"):
        read_reference(folder)
    np.save(folder / "neutral.npy", np.full((478, 3), np.nan, np.float32))
    with pytest.raises(ModelError, match="no usable"):
        for_folder(folder, R, warp=True)
    (folder / "crop.png").unlink()
    with pytest.raises(ModelError, match="re-run"):
        read_reference(folder)


def test_a_sketch_warp_generator_trains_only_with_the_photo(home: Path) -> None:
    from avatar_cam.calibrate.dataset import Clip
    from avatar_cam.calibrate.train import fit
    from avatar_cam.model.config import tiny_config

    person = load_person("astro", home / "calibration")
    pts = (person.neutral * np.float32(R / person.crop_size))[None].repeat(4, 0)
    clip = Clip(np.zeros((4, R, R, 3), np.uint8), pts, np.arange(4, dtype=np.int32))
    with pytest.raises(ValueError, match="reference"):
        fit(tiny_config(R, condition="sketch+warp"), clip, clip, TrainConfig(steps=1),
            progress=False)
