"""The CLI end to end: enrollment, a short run, and every bad input a user can cause
(one clear line naming the problem and the fix, exit status 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam.cli import main

CONSENT = "I am the person in this photo and I agree"


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {"AVATAR_CAM_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home),
           "AVATAR_CAM_CONFIG": str(home / "config")}
    return subprocess.run([sys.executable, "-m", "avatar_cam.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def _one_clear_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # MediaPipe's native threads write to stderr on their own (TFLite's "INFO: ..."), so
    # a line may carry a prefix of theirs: look for ours anywhere in the line.
    errors = [ln[ln.index("avatar-cam: error:"):] for ln in proc.stderr.splitlines()
              if "avatar-cam: error:" in ln]
    assert len(errors) == 1, proc.stderr
    for w in words:
        assert w in errors[0], errors[0]


def test_calibrate_stores_person(tmp_path: Path, astronaut_png: Path) -> None:
    # From one photo nothing is trained by default (issue 21: no pointless wait).
    proc = _cli(["calibrate", "alice", "--images", str(astronaut_png), "--consent",
                 "I am Alice and this is my photo", "--owner", "alice"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "calibration" / "alice"
    meta = json.loads((folder / "person.json").read_text())
    assert meta["name"] == "alice" and meta["crop_size"] == 512
    assert meta["enrollment"]["trained"] is False and "warp renderer" in meta["enrollment"]["why"]
    assert 0 < meta["enrollment"]["seconds"] < 120
    assert not (folder / "generator.safetensors").exists()
    assert "for the warp renderer" in proc.stderr and "--video or --camera" in proc.stderr
    assert meta["owner"] == "alice" and meta["consent"] == "I am Alice and this is my photo"
    assert (folder / "signature.json").is_file()
    assert (folder / "codec_basis.bin").is_file()  # the landmark codec's per-person basis
    neutral = np.load(folder / "neutral.npy")
    assert neutral.shape == (478, 3)
    assert cv2.imread(str(folder / "crop.png")).shape == (512, 512, 3)
    # The model loads (signature verified) and a tampered one is refused.
    from avatar_cam.errors import ModelError
    from avatar_cam.person import load_person

    assert load_person("alice", tmp_path / "calibration").owner.name == "alice"
    np.save(folder / "neutral.npy", neutral + 1.0)
    with pytest.raises(ModelError, match="modified after it was signed.*neutral.npy"):
        load_person("alice", tmp_path / "calibration")


def test_train_flags_that_cannot_be_met(tmp_path: Path, astronaut_png: Path) -> None:
    _one_clear_line(_cli(["calibrate", "x", "--images", str(astronaut_png), "--consent",
                          CONSENT, "--train", "--no-train"], tmp_path), "--train", "pick one")
    _one_clear_line(_cli(["calibrate", "x", "--video", str(tmp_path / "v.mp4"), "--consent",
                          CONSENT, "--train"], tmp_path), "--train is for photos")


def test_photo_without_face(tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    proc = _cli(["calibrate", "wall", "--images", str(blank), "--consent", CONSENT], tmp_path)
    _one_clear_line(proc, "no face found", "wall.png", "front-facing photo")
    assert not (tmp_path / "calibration" / "wall").exists()


def test_unreadable_photo(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    _one_clear_line(_cli(["calibrate", "x", "--images", str(bad), "--consent", CONSENT],
                         tmp_path), "notes.jpg", "not a readable image")
    _one_clear_line(_cli(["calibrate", "x", "--images", str(tmp_path / "nope.jpg"),
                          "--consent", CONSENT], tmp_path), "does not exist")


def test_enrolling_needs_consent(tmp_path: Path, astronaut_png: Path) -> None:
    proc = _cli(["calibrate", "x", "--images", str(astronaut_png)], tmp_path)
    assert proc.returncode == 2 and "--consent" in proc.stderr
    _one_clear_line(_cli(["calibrate", "x", "--images", str(astronaut_png), "--consent", "ok"],
                         tmp_path), "consent statement is too short")


def test_unknown_person(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    proc = _cli(["run", "--person", "ghost", "--video", str(video), "--sink", "null"], tmp_path)
    _one_clear_line(proc, "unknown person 'ghost'", "avatar-cam calibrate ghost")


def test_missing_camera(env_home: Path) -> None:
    proc = _cli(["run", "--person", "astro", "--camera", "/dev/video-none", "--sink", "null",
                 "--frames", "3"], env_home)
    _one_clear_line(proc, "camera", "/dev/video-none")


@pytest.mark.parametrize("kind", ["missing", "text", "empty"])
def test_bad_video(env_home: Path, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "clip.mp4"
    if kind == "text":
        path.write_text("this is not a video\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    proc = _cli(["run", "--person", "astro", "--video", str(path), "--sink", "null"], env_home)
    _one_clear_line(proc, "clip.mp4")


def test_bad_sink_spec(env_home: Path, tmp_path: Path) -> None:
    proc = _cli(["demo", "--person", "astro", "--sink", "printer", "--frames", "2"], env_home)
    _one_clear_line(proc, "printer")


def test_demo_writes_video_stats_and_preview(env_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    stats = tmp_path / "stats.json"
    code = main(["demo", "--person", "astro", "--frames", "20", "--out", str(out),
                 "--stats-json", str(stats), "--size", "640x360"])
    assert code == 0
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (360, 640, 3) and n == 20
    s = json.loads(stats.read_text())
    for key in ("fps", "frames", "dropped", "no_face"):
        assert key in s
    assert s["frames"] == 20
    assert set(s["latency_ms"]) == {"p50", "p95"}
    assert {"track", "drive", "render", "compose", "sink"} <= set(s["stages"])
    assert all(set(v) == {"p50_ms", "p95_ms"} for v in s["stages"].values())
    assert s["label"] is True and s["watermark"] is True
    preview = cv2.imread(str(out.with_suffix(".png")))
    assert preview is not None and preview.shape[0] > 100


def test_turning_the_label_off_is_recorded(env_home: Path, tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    code = main(["demo", "--person", "astro", "--frames", "3", "--sink", "null", "--no-label",
                 "--no-track", "--stats-json", str(stats), "--size", "320x180"])
    assert code == 0
    assert json.loads(stats.read_text())["label"] is False


def test_bad_label_size_is_a_usage_error(env_home: Path) -> None:
    proc = _cli(["demo", "--person", "astro", "--label-size", "3"], env_home)
    assert proc.returncode == 2 and "label size must be in" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_neural_renderer_runs_the_trained_demo(env_home: Path, tmp_path: Path) -> None:
    """The shipped demo identity has a trained generator: --renderer neural renders with it
    through the fastest backend here (ONNX Runtime on the CPU), its export cached."""
    stats = tmp_path / "stats.json"
    code = main(["demo", "--frames", "5", "--sink", "null", "--renderer", "neural",
                 "--no-track", "--size", "320x180", "--stats-json", str(stats)])
    assert code == 0
    s = json.loads(stats.read_text())
    assert s["renderer"] == "neural" and s["backend"]["name"].startswith("onnxruntime")
    assert list((env_home / "engines").glob("demo*"))  # the user's engines/, not the repo's


def test_neural_renderer_without_a_generator_is_a_clear_error(env_home: Path) -> None:
    proc = _cli(["demo", "--person", "astro", "--renderer", "neural", "--frames", "2"], env_home)
    _one_clear_line(proc, "no trained generator", "--renderer warp")
