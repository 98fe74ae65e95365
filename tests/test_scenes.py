"""Scenes: each training frame's warp render is made from a frame of its own scene.

The clip is real MediaPipe tracking of the astronaut photo acting the motion script
(``clip64``); a second scene is made from it by a change of light (the crops' colour
channels swapped) or by a gap in the frame numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_cam.calibrate import batches as batches_mod
from avatar_cam.calibrate.batches import Batches
from avatar_cam.calibrate.dataset import Clip, split
from avatar_cam.calibrate.scenes import Scenes, by_scene, find, starts
from avatar_cam.calibrate.train import fit
from avatar_cam.calibrate.train_common import TrainConfig
from avatar_cam.model.config import tiny_config
from avatar_cam.render.condition import Conditioner


def relit(clip: Clip, first: int) -> Clip:
    """``clip`` with the frames from position ``first`` on under another light."""
    crops = clip.crops.copy()
    crops[first:] = crops[first:, :, :, ::-1]
    return Clip(crops, clip.points, clip.index, dict(clip.stats))


def test_scenes_begin_at_a_change_of_light_or_a_gap(clip64: Clip) -> None:
    assert starts(clip64).tolist() == [int(clip64.index[0])]  # one take, one light
    half = len(clip64) // 2
    assert starts(relit(clip64, half)).tolist() == [int(clip64.index[0]),
                                                    int(clip64.index[half])]
    gap = Clip(clip64.crops, clip64.points, clip64.index + 40 * (np.arange(len(clip64)) >= half),
               clip64.stats)
    assert starts(gap).tolist() == [int(gap.index[0]), int(gap.index[half])]
    short = Clip(clip64.crops, clip64.points, clip64.index + 15 * (np.arange(len(clip64)) >= half),
                 clip64.stats)  # half a second missing (no face, blurred): the same scene
    assert len(starts(short)) == 1


def test_scenes_are_checked() -> None:
    with pytest.raises(ValueError, match="one reference per scene"):
        Scenes(np.array([0, 5]), [])
    with pytest.raises(ValueError, match="ascend"):
        Scenes(np.array([5, 5]), [(np.zeros((8, 8, 3), np.uint8), np.zeros((478, 3)))] * 2)


def test_find_pairs_and_conditions_frames_by_scene(clip64: Clip) -> None:
    clip = relit(clip64, len(clip64) // 3)
    train, val, test = split(clip)
    photo = (clip.crops[0], clip.points[0])
    scenes = find(clip, train, photo, int(clip.index[0]))
    assert len(scenes) == 2 and scenes.references[0] is photo
    crop, points = scenes.references[1]
    k = int(np.flatnonzero([np.array_equal(crop, c) for c in train.crops])[0])
    assert scenes.of(train.index[k:k + 1])[0] == 1  # a training frame of the lit scene
    assert not any(np.array_equal(crop, c) for c in test.crops)  # never a held-out one
    assert np.array_equal(points, train.points[k])
    cond = by_scene(scenes, val)
    which = scenes.of(val.index)
    assert set(which) == {0, 1}
    for s, ref in enumerate(scenes.references):
        with Conditioner(clip.resolution, True, ref) as c:
            assert np.array_equal(cond[which == s], c.batch(val.points[which == s]))
    # A clip with the photo in the second scene: the first scene warps its own frame.
    late = int(train.index[-1])
    moved = find(clip, train, photo, late)
    assert moved.references[1] is photo and moved.references[0] is not photo


def test_batches_warp_each_sample_from_its_scene(clip64: Clip) -> None:
    clip = relit(clip64, len(clip64) // 2)
    train, _, _ = split(clip)
    photo = (clip.crops[0], clip.points[0])
    scenes = find(clip, train, photo, int(clip.index[0]))
    tc = TrainConfig(batch=16)
    with Conditioner(64, True, photo) as c:
        with Batches(train, c, photo, tc, np.random.default_rng(3), 0, scenes) as b:
            crops, cond = b.next()
        d = batches_mod.draw(np.random.default_rng(3), len(train), 16, 64, 478, tc)
        scene = scenes.of(train.index[d.idx])
        assert set(scene) == {0, 1}
        with Conditioner(64, True, scenes.references[1]) as c1:
            for i, k in enumerate(scene):
                one = batches_mod.Draw(d.idx[i:i + 1], d.mats[i:i + 1], d.scales[i:i + 1],
                                       d.noise[i:i + 1])
                exp_c, exp = batches_mod.make([(c, c1)[k]], train.crops[d.idx[i:i + 1]],
                                              train.points[d.idx[i:i + 1]], one)
                assert np.array_equal(crops[i], exp_c[0]) and np.array_equal(cond[i], exp[0])


def test_scenes_train_the_same_in_worker_processes(clip64: Clip) -> None:
    """A GPU makes batches in worker processes: with scenes too, bit for bit as inline.
    A clip of one scene trains exactly as the photo alone does."""
    clip = relit(clip64, len(clip64) // 2)
    train, val, _ = split(clip)
    photo = (clip.crops[0], clip.points[0])
    scenes = find(clip, train, photo, int(clip.index[0]))
    one = Scenes(np.array([clip.index[0]]), [photo])
    cfg = tiny_config(64, "realtime", "sketch+warp")
    runs = [fit(cfg, train, val, TrainConfig(steps=4, batch=3, eval_every=2, adv_start=2,
                                             workers=w), reference=photo, progress=False,
                scenes=s) for w, s in ((0, scenes), (2, scenes), (0, None), (0, one))]
    inline, pooled, plain, single = (r.generator.state_dict() for r in runs)
    assert all(torch.equal(inline[k], pooled[k]) for k in inline)
    assert not all(torch.equal(inline[k], plain[k]) for k in inline)  # scenes did something
    assert all(torch.equal(single[k], plain[k]) for k in plain)
    assert [h["val_ssim"] for h in runs[0].history] == [h["val_ssim"] for h in runs[1].history]
