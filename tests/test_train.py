"""Enrollment training end to end on a short clip (synthetic driver + warp renderer of a
real photo, tracked by real MediaPipe), meta-learning on synthetic identities, and every
bad input: clear errors and nothing half-written in calibration/NAME."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avatar_cam.calibrate import commands
from avatar_cam.calibrate.dataset import Clip, split
from avatar_cam.calibrate.train import fit
from avatar_cam.calibrate.train_common import TrainConfig
from avatar_cam.errors import ModelError, NoFaceError, VideoError
from avatar_cam.footage import Footage
from avatar_cam.model import losses
from avatar_cam.model.config import tiny_config
from avatar_cam.model.generator import load_generator
from avatar_cam.person import load_person
from avatar_cam.render.condition import Conditioner
from avatar_cam.render.neural import NeuralRenderer
from avatar_cam.types import Landmarks

FAST = ["--tiny", "--resolution", "64", "--eval-every", "5", "--preview-every", "10",
        "--adv-start", "10", "--device", "cpu"]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    if argv[0] == "calibrate" and "--consent" not in argv:
        argv = [*argv, "--consent", "test: synthetic footage of a public-domain portrait"]
    return parser.parse_args(argv)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_clip_is_tracked_aligned_and_split(clip64: Clip) -> None:
    assert clip64.crops.shape[1:] == (64, 64, 3) and clip64.points.shape[1:] == (478, 3)
    assert clip64.stats["with_face"] >= 58 and len(clip64) >= 50
    assert clip64.stats["people"] == 1 and clip64.stats["other_people"] == 0
    train, val, test = split(clip64)
    # Held-out = the last 20% in time, contiguous; validation every 10th frame before it;
    # the photo (warp source) is never a held-out frame.
    assert test.index.min() > max(val.index.max(), train.index.max())
    assert len(test) == round(0.2 * len(clip64))
    assert np.all(np.diff(test.index) == 1)
    assert set(val.index) & set(train.index) == set()
    assert np.all(np.diff(val.index) == 10) and len(train) + len(val) + len(test) == len(clip64)
    assert clip64.stats["photo_frame"] < test.index.min()
    # Faces are centred in the crop: the nose tip sits near the middle.
    nose = clip64.points[:, 1, :2]
    assert np.all(np.abs(nose - 32) < 16)


def test_losses_fall_and_resume_continues(clip64: Clip, tmp_path: Path) -> None:
    train, val, _ = split(clip64)
    tc = TrainConfig(steps=30, batch=4, eval_every=5, preview_every=10, checkpoint_every=10,
                     adv_start=15, patience=100)
    cfg = tiny_config(64)
    work = tmp_path / "work"
    first = fit(cfg, train, val, replace_steps(tc, 20), work=work, progress=False)
    hist = first.history
    assert hist[-1]["val_l1"] < 0.95 * hist[0]["val_l1"], hist
    assert hist[-1]["val_ssim"] > hist[0]["val_ssim"]
    assert (work / "preview.png").is_file() and (work / "ckpt.safetensors").is_file()
    assert cv2.imread(str(work / "preview.png")).shape == (4 * 64, 3 * 64, 3)
    logs: list[str] = []
    second = fit(cfg, train, val, tc, work=work, progress=False, log=logs.append)
    assert any("resuming from step 20" in m for m in logs)
    assert second.steps_run == 30 and len(second.history) == 6
    assert "d" in second.history[-1] and "fm" in second.history[-1]  # adversarial ran


def test_batch_workers_train_exactly_as_inline(clip64: Clip) -> None:
    """On a GPU the batches are made in worker processes, steps ahead; the random choices
    stay in the trainer, so the same seed trains the same generator, bit for bit."""
    train, val, _ = split(clip64)
    cfg = tiny_config(64, "realtime", "sketch+warp")
    reference = (train.crops[0], train.points[0])
    runs = [fit(cfg, train, val, TrainConfig(steps=6, batch=3, eval_every=3, adv_start=3,
                                             workers=w), reference=reference, progress=False)
            for w in (0, 2)]
    inline, pooled = (r.generator.state_dict() for r in runs)
    assert inline.keys() == pooled.keys()
    assert all(torch.equal(inline[k], pooled[k]) for k in inline)
    assert runs[0].history == [
        {**h, "seconds": runs[0].history[i]["seconds"]} for i, h in enumerate(runs[1].history)]


def test_watching_a_slice_records_it_and_changes_nothing(clip64: Clip) -> None:
    """``watch`` (a benchmark's held-out slice) is judged at every evaluation and never
    steers training: the same seed trains the same generator with it or without."""
    train, val, test = split(clip64)
    tc = TrainConfig(steps=6, batch=3, eval_every=3, adv_start=3)
    runs = [fit(tiny_config(64), train, val, tc, progress=False, watch=w)
            for w in (None, test, val)]
    plain, watched, self_watched = (r.generator.state_dict() for r in runs)
    assert all(torch.equal(plain[k], watched[k]) and torch.equal(plain[k], self_watched[k])
               for k in plain)
    assert "watch_ssim" not in runs[0].history[0]
    assert [h["val_ssim"] for h in runs[0].history] == [h["val_ssim"] for h in runs[1].history]
    assert [h["watch_ssim"] for h in runs[2].history] == [h["val_ssim"] for h in runs[2].history]
    # The recorded figure is the SSIM of the generator at that step on the watched frames:
    # recomputed here for the one fit() returned (the best step's, folded).
    chosen = runs[1]
    at_best = next(h for h in chosen.history if h["step"] == chosen.best_step)
    cond = Conditioner(64, False).batch(test.points)
    with torch.no_grad():
        fake = chosen.generator.eval()(torch.from_numpy(cond).permute(0, 3, 1, 2).float() / 255)
    real = torch.from_numpy(test.crops).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    assert at_best["watch_ssim"] == pytest.approx(float(losses.ssim(fake, real).mean()),
                                                  abs=1e-4)
    assert [h["watch_ssim"] for h in runs[1].history] != [h["val_ssim"] for h in runs[1].history]


def test_calibrate_workers_option() -> None:
    base = ["calibrate", "x", "--video", "a.mp4"]
    assert commands.train_config(_parse(base)).workers is None  # auto: by device
    assert commands.train_config(_parse([*base, "--workers", "3"])).workers == 3
    assert _parse(base).references == "scenes"
    assert _parse([*base, "--references", "photo"]).references == "photo"
    with pytest.raises(SystemExit):
        _parse([*base, "--workers", "-1"])


def replace_steps(tc: TrainConfig, steps: int) -> TrainConfig:
    from dataclasses import replace

    return replace(tc, steps=steps)


def test_calibrate_from_a_clip_writes_a_working_person(
        clip_mp4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))
    args = _parse(["calibrate", "bob", "--video", str(clip_mp4), "--steps", "12", *FAST])
    assert commands.calibrate(args) == 0
    root = tmp_path / "calibration"
    assert _leftovers(root) == ["bob"]  # no build, work or old folders left behind
    folder = root / "bob"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["resolution"] == 64 and meta["rasterizer"] == "sketch-v1"
    assert np.asarray(meta["neutral"]).shape == (478, 3)
    assert meta["training"]["steps"] == 12 and "created" in meta
    assert meta["training"]["references"] == "1 scene(s)"  # one take: the photo warps
    assert meta["source"]["split"]["held_out"] == len(list((folder / "heldout").glob("*.png")))
    assert np.load(folder / "heldout" / "points.npy").shape[1:] == (478, 3)
    person = load_person("bob", root)  # verifies the signature over every file
    assert person.owner is not None and person.owner.is_local
    assert "generator.safetensors" in json.loads((folder / "signature.json").read_text())["files"]
    with NeuralRenderer(person) as renderer:
        face = renderer.render(Landmarks(0, 0, person.neutral, (64, 64)))
    assert face.shape == (64, 64, 3) and face.dtype == np.uint8
    with pytest.raises(RuntimeError, match="closed"):
        renderer.render(Landmarks(0, 0, person.neutral, (64, 64)))
    g, extra = load_generator(folder / "generator.safetensors")
    assert extra["person"] == "bob" and g.cfg.resolution == 64


def _synthetic_identities(home: Path, videos: Path, count: int = 3) -> None:
    """Several identities from one real photo: recoloured and reshaped crops, each acting
    random motions under the warp renderer, written as mp4 clips (person/clip.mp4)."""
    from dataclasses import replace

    from avatar_cam.calibrate.dataset import widen_photos

    base = load_person("astro", home / "calibration")
    looks = [lambda c: c, lambda c: c[:, :, [1, 2, 0]].copy(),
             lambda c: cv2.convertScaleAbs(c, alpha=0.7, beta=40)]
    for i in range(count):
        person = replace(base, crop=looks[i](base.crop))
        train, _ = widen_photos(person, 192, count=14, held=1, seed=i)
        folder = videos / f"id{i}"
        folder.mkdir(parents=True)
        writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                 30.0, (192, 192))
        for img in train.crops:
            writer.write(img)
        writer.release()


@pytest.fixture(scope="module")
def meta_ckpt(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("meta")
    _synthetic_identities(home, base / "videos")
    assert commands.prepare(_parse(["prepare", str(base / "videos"), str(base / "data"),
                                    "--resolution", "64"])) == 0
    out = base / "init.safetensors"
    args = _parse(["metatrain", str(base / "data"), "--out", str(out), "--steps", "4",
                   "--batch", "2", "--shots", "2", *FAST[:3], "--adv-start", "2",
                   "--eval-every", "2", "--device", "cpu"])
    assert commands.metatrain(args) == 0
    return out


def test_metatrain_runs_episodes_and_inits_enrollment(
        meta_ckpt: Path, clip64: Clip, tmp_path: Path) -> None:
    from avatar_cam.calibrate.metatrain import load_meta

    meta = load_meta(meta_ckpt, 64)
    assert meta.cfg.resolution == 64
    from safetensors import safe_open

    with safe_open(str(meta_ckpt), framework="pt") as f:  # type: ignore[no-untyped-call]
        info = json.loads(f.metadata()["info"])
    assert info["people"] == ["id0", "id1", "id2"] and info["steps"] == 4
    assert info["seconds_per_step"] > 0
    train, val, _ = split(clip64)
    assert meta.cfg.condition == "sketch+warp"  # metatrain's default, as calibrate's
    res = fit(meta.cfg, train, val, TrainConfig(steps=4, batch=2, eval_every=2),
              init=meta_ckpt, progress=False, reference=(train.crops[0], train.points[0]))
    assert res.steps_run == 4
    # psi started at P e (not zero): the personalized scales differ from 1.
    scales = [m.scale for m in res.generator.modules() if hasattr(m, "scale")]
    assert any(not torch.allclose(s, torch.ones_like(s)) for s in scales)


def test_init_of_another_resolution_or_corrupt_is_refused(
        meta_ckpt: Path, clip_mp4: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))
    fast128 = [a if a != "64" else "128" for a in FAST]
    args = _parse(["calibrate", "carl", "--video", str(clip_mp4), "--steps", "2",
                   "--init", str(meta_ckpt), *fast128])
    with pytest.raises(ModelError, match="is for 64 px, not 128 px"):
        commands.calibrate(args)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(meta_ckpt.read_bytes()[:1000])
    args = _parse(["calibrate", "carl", "--video", str(clip_mp4), "--steps", "2",
                   "--init", str(bad), *FAST])
    with pytest.raises(ModelError, match="corrupt"):
        commands.calibrate(args)
    assert not (tmp_path / "calibration" / "carl").exists()
    assert [n for n in _leftovers(tmp_path / "calibration") if "carl" in n] == []


def test_clip_without_a_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))
    path = tmp_path / "wall.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    with pytest.raises(NoFaceError, match="no face found in any of the 20 frames"):
        commands.calibrate(_parse(["calibrate", "wall", "--video", str(path), *FAST]))
    assert _leftovers(tmp_path / "calibration") == []


def test_clip_with_too_few_usable_frames(home: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))
    path = tmp_path / "short.mp4"
    Footage(load_person("astro", home / "calibration"), (320, 240)).write(path, 6)
    with pytest.raises(VideoError, match="only 6 usable frames.*at least 12"):
        commands.calibrate(_parse(["calibrate", "short", "--video", str(path), *FAST]))
    assert _leftovers(tmp_path / "calibration") == []
    with pytest.raises(VideoError, match="does not exist"):
        commands.calibrate(_parse(["calibrate", "x", "--video", str(tmp_path / "no.mp4"),
                                   *FAST]))


def test_calibrate_a_clip_with_no_train_enrolls_for_the_warp_renderer(
        clip_mp4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))
    args = _parse(["calibrate", "dora", "--video", str(clip_mp4), "--no-train", *FAST])
    assert commands.calibrate(args) == 0
    root = tmp_path / "calibration"
    assert _leftovers(root) == ["dora"]
    folder = root / "dora"
    assert not (folder / "generator.safetensors").exists()
    meta = json.loads((folder / "person.json").read_text())
    assert meta["enrollment"] == {"trained": False, "seconds": meta["enrollment"]["seconds"],
                                  "why": "--no-train"}
    person = load_person("dora", root)  # signed, with the clip's codec basis
    assert (folder / "codec_basis.bin").is_file() and person.crop_size == 64
