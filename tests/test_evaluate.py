"""`evaluate` on a freshly enrolled (tiny) person: the figures, the JSON and the PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam.calibrate import commands
from avatar_cam.calibrate.dataset import Clip, load_clip
from avatar_cam.calibrate.evaluate import evaluate_clip, face_mask, nme
from avatar_cam.errors import ModelError, PersonError
from avatar_cam.footage import Footage
from avatar_cam.person import load_person
from avatar_cam.render.neural import NeuralRenderer


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    if argv[0] == "calibrate" and "--consent" not in argv:
        argv = [*argv, "--consent", "test: synthetic footage of a public-domain portrait"]
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def enrolled(home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(AVATAR_CAM_HOME with 'eve' enrolled from a short clip, that clip)."""
    base = tmp_path_factory.mktemp("eval")
    clip = base / "eve.mp4"
    Footage(load_person("astro", home / "calibration"), (320, 240)).write(clip, 45)
    mp = pytest.MonkeyPatch()
    mp.setenv("AVATAR_CAM_HOME", str(base))
    try:
        args = _parse(["calibrate", "eve", "--video", str(clip), "--steps", "6", "--tiny",
                       "--resolution", "64", "--eval-every", "3", "--device", "cpu"])
        assert commands.calibrate(args) == 0
    finally:
        mp.undo()
    return base, clip


def test_evaluate_writes_json_and_side_by_side(enrolled: tuple[Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = enrolled
    monkeypatch.setenv("AVATAR_CAM_HOME", str(base))
    out = base / "report" / "eve.json"
    assert commands.evaluate(_parse(["evaluate", "eve", "--json", str(out)])) == 0
    report = json.loads(out.read_text())
    held = len(list((base / "calibration" / "eve" / "heldout").glob("*.png")))
    assert report["frames"] == held == 9
    for key in ("psnr", "ssim", "ms_ssim", "face_found", "render_ms"):
        assert isinstance(report[key], float), key
    assert 0 <= report["face_found"] <= 1
    # SSIM against a known case on the same held-out frames: the frames themselves moved
    # 3 px score about 0.30 (a flat grey guess 0.22); the 6-step generator measured 0.935.
    heldout = load_clip(base / "calibration" / "eve" / "heldout")
    truth = iter(heldout.crops)
    shifted = evaluate_clip(lambda _sketch: np.roll(next(truth), 3, axis=1), heldout)
    assert shifted["ssim"] < 0.5 < report["ssim"] < 0.99
    assert report["nme_real"] is not None and report["nme_real"] < 0.1  # tracker floor
    assert report["temporal"]["ratio"] is not None and report["temporal"]["ratio"] >= 0
    meta = json.loads((base / "calibration" / "eve" / "meta.json").read_text())
    seen = meta["source"]["split"]["rest_in_training"]  # calibrate's novelty figure
    assert report["rest_in_training"] == seen and 0.5 < seen <= 1.0
    png = cv2.imread(report["png"])
    assert png.shape == (4 * 64, 3 * 64, 3)


def test_evaluate_on_a_video(enrolled: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                             tmp_path: Path) -> None:
    base, clip = enrolled
    monkeypatch.setenv("AVATAR_CAM_HOME", str(base))
    out = tmp_path / "video.json"
    assert commands.evaluate(_parse(["evaluate", "eve", "--video", str(clip), "--json",
                                     str(out)])) == 0
    report = json.loads(out.read_text())
    assert report["frames"] >= 40 and report["on"] == str(clip)
    assert (tmp_path / "video.png").is_file()


def test_metrics_are_right_on_known_inputs() -> None:
    pts = np.zeros((478, 3), np.float32)
    pts[33, :2], pts[263, :2] = (10, 20), (30, 20)  # inter-ocular 20 px
    moved = pts.copy()
    moved[:, 0] += 2.0
    assert nme(moved, pts) == pytest.approx(0.1)
    crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    clip = Clip(crops, np.repeat(pts[None], 3, 0), np.arange(3, dtype=np.int32))
    frames = iter(crops)
    report = evaluate_clip(lambda _sketch: next(frames), clip)  # a perfect generator
    assert report["ssim"] == pytest.approx(1.0) and report["psnr"] > 90
    frames = iter(crops)
    moved = evaluate_clip(lambda _sketch: np.roll(next(frames), 1, axis=1), clip)
    assert moved["ssim"] < 0.1  # noise moved by a pixel is uncorrelated with itself
    assert report["temporal"]["ratio"] == pytest.approx(1.0)
    assert report["face_found"] == 0.0 and report["nme"] is None  # noise has no face
    assert report["ssim_face"] == pytest.approx(1.0) and report["ssim_outside"] == \
        pytest.approx(1.0)
    # An imperfect generator: whole-crop SSIM is the area-weighted mean of the face part
    # (the landmarks' hull, here the triangle 0,0 - 10,20 - 30,20) and the rest.
    one = clip.take(slice(0, 1))
    blurred = cv2.GaussianBlur(crops[0], (5, 5), 0)
    blurred[:20, :30] = crops[0][:20, :30]  # the face's corner exact, the rest blurred
    rep = evaluate_clip(lambda _sketch: blurred, one)
    inside = face_mask(pts, 64)
    area = inside.mean()
    assert 0.05 < area < 0.5
    assert rep["ssim_face"] > rep["ssim_outside"]
    assert rep["ssim"] == pytest.approx(area * rep["ssim_face"]
                                        + (1 - area) * rep["ssim_outside"], abs=1e-5)


def test_evaluate_without_a_generator(home: Path) -> None:
    with pytest.raises(ModelError, match="has no neural generator.*--renderer warp"):
        NeuralRenderer(load_person("astro", home / "calibration"))
    with pytest.raises(PersonError, match="unknown person"):
        load_person("nobody", home / "calibration")


def test_damaged_generator_in_a_person_folder(enrolled: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    import shutil

    base, _ = enrolled
    folder = tmp_path / "calibration" / "eve"
    shutil.copytree(base / "calibration" / "eve", folder)
    weights = folder / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelError, match="corrupt.*re-run `avatar-cam calibrate`"):
        NeuralRenderer(folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["rasterizer"] = "sketch-v0"
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="sketch-v0"):
        NeuralRenderer(folder)
