"""`avatar-cam verify`: exit 0 on marked files, 1 on unmarked, 2 on errors (like grep)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam.errors import ImageError, VideoError
from avatar_cam.footage import Footage
from avatar_cam.honesty import watermark as wm
from avatar_cam.honesty.c2pa_manifest import Provenance
from avatar_cam.honesty.credentials import CA_CERT_FILE
from avatar_cam.honesty.signing import config_dir
from avatar_cam.honesty.verify import add_verify_args, verify_main, verify_path
from avatar_cam.person import load_person
from avatar_cam.sinks import FileSink
from avatar_cam.types import AvatarFrame

PAYLOAD = wm.make_payload(0xC0FFEE, wm.minute_now(1_790_000_000))


def demo_frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """Every other frame of the demo identity's footage, ``count`` of them."""
    footage = Footage(load_person("demo"), size, face_height=0.9)
    return [footage.frame(n)[0] for n in range(0, 2 * count, 2)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("verify")
    frames = demo_frames((1280, 720), 12)
    marker = wm.Watermarker(PAYLOAD)
    out = {}
    for name, mark in (("marked", True), ("plain", False)):
        path = folder / f"{name}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30, (1280, 720))
        for frame in frames:
            writer.write(marker.embed(frame.copy()) if mark else frame)
        writer.release()
        out[name] = path
        jpg = folder / f"{name}.jpg"
        image = marker.embed(frames[0].copy()) if mark else frames[0]
        cv2.imwrite(str(jpg), image, [cv2.IMWRITE_JPEG_QUALITY, 70])
        out[name + "_jpg"] = jpg
    out["garbage"] = folder / "garbage.mp4"
    out["garbage"].write_bytes(b"\x00not a video" * 100)
    out["broken_png"] = folder / "broken.png"
    out["broken_png"].write_bytes(b"\x89PNG broken")
    return out


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="avatar-cam")
    add_verify_args(parser)
    return verify_main(parser.parse_args(argv))


def test_marked_video_and_image_exit_0(files: dict[str, Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(files["marked"])]) == 0
    text = capsys.readouterr().out
    assert "MARKED" in text and "c0ffee" in text and "12 frame(s)" in text
    assert run([str(files["marked_jpg"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["found"] and report["fingerprint"] == "c0ffee"
    assert report["minute"] == wm.split_payload(PAYLOAD)[1] and report["kind"] == "image"
    assert report["made_at"].startswith("2026-09-21")  # 1_790_000_000 s after the epoch


def test_unmarked_exit_1(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(files["plain"])]) == 1
    assert "no avatar-cam mark" in capsys.readouterr().out
    assert run([str(files["plain_jpg"]), "-q"]) == 1
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["garbage", "broken_png", "missing"])
def test_errors_exit_2_with_a_message(files: dict[str, Path], name: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = files.get(name, tmp_path / "missing.mp4")
    assert run([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avatar-cam: error:") and str(path) in err and "Traceback" not in err


def test_verify_path_report_and_errors(files: dict[str, Path]) -> None:
    report = verify_path(files["marked"], max_frames=5)
    assert report.found and report.frames_examined == 5 and report.payload == PAYLOAD
    assert report.exit_code == 0 and len(report.frame_scores) == 5
    with pytest.raises(ImageError):
        verify_path(files["broken_png"])
    with pytest.raises(VideoError):
        verify_path(files["garbage"])


def test_camera_that_does_not_exist_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--camera", "/dev/video-none"]) == 2
    assert "cannot open camera" in capsys.readouterr().err


def test_arguments() -> None:
    with pytest.raises(SystemExit):
        run([])  # a file or --camera is required
    assert run(["x.mp4", "--frames", "0"]) == 2


# ---- the C2PA manifest, reported beside the watermark ----------------------------------

def _recorded(folder: Path, name: str, frames: list[np.ndarray],
              provenance: Provenance | None) -> Path:
    """Frames through the real file sink, which signs the mp4 when it closes."""
    path = folder / f"{name}.mp4"
    h, w = frames[0].shape[:2]
    with FileSink(path, w, h, 30.0, provenance) as sink:
        for n, image in enumerate(frames):
            sink.send(AvatarFrame(seq=n, t_capture_ns=n, image=image))
    return path


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("signed")
    frames = demo_frames((640, 360), 8)
    marker = wm.Watermarker(PAYLOAD)
    marked = [marker.embed(f.copy()) for f in frames]
    who = Provenance(person="demo", model_fingerprint="c0ffee", owner="Demo Owner",
                     owner_key="ed25519:00112233445566aa", liveness="verified")
    out = {"marked": _recorded(folder, "marked", marked, who),
           "unmarked": _recorded(folder, "unmarked", frames, who),
           "other_model": _recorded(folder, "other", marked,
                                    Provenance(model_fingerprint="abcdef"))}
    data = bytearray(out["marked"].read_bytes())
    data[data.find(b"mdat") + 4000] ^= 0x10  # one bit of a coded picture
    out["tampered"] = folder / "tampered.mp4"
    out["tampered"].write_bytes(bytes(data))
    return out


def test_a_signed_recording_reports_mark_and_manifest(
        signed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(signed["marked"])]) == 0
    text = capsys.readouterr().out
    assert "MARKED" in text and "c0ffee" in text
    assert "C2PA manifest: valid" in text and "signer not on a trust list" in text
    assert "liveness verified" in text and "owner Demo Owner" in text
    assert "trainedAlgorithmicMedia" in text and "this machine's key" in text
    assert run([str(signed["marked"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    m = report["manifest"]
    assert report["found"] and m["present"] and m["valid"] and not m["trusted"]
    assert m["model_fingerprint"] == report["fingerprint"] == "c0ffee"
    assert m["owner"] == "Demo Owner" and m["liveness"] == "verified" and m["state"] == "Valid"


def test_trust_anchors_make_the_signer_trusted(signed: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ca = config_dir() / CA_CERT_FILE
    assert run([str(signed["marked"]), "--trust", str(ca), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["state"] == "Trusted"
    assert run([str(signed["marked"]), "--trust", str(ca.with_name("nowhere.pem"))]) == 2
    assert "trust anchors" in capsys.readouterr().err
    assert run(["--camera", "0", "--trust", str(ca)]) == 2


def test_a_changed_byte_exits_3(signed: dict[str, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(signed["tampered"])]) == 3
    text = capsys.readouterr().out
    assert "INVALID" in text and "bmffHash.mismatch" in text
    assert "MARKED" in text  # the picture still carries the mark: both are reported
    assert run([str(signed["tampered"]), "-q"]) == 3


def test_a_valid_manifest_alone_says_synthetic(signed: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(signed["unmarked"])]) == 0
    text = capsys.readouterr().out
    assert "no avatar-cam mark" in text and "C2PA manifest: valid" in text


def test_unsigned_files_report_no_manifest(files: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(files["marked"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["present"] is False
    assert run([str(files["plain"])]) == 1
    assert "C2PA manifest: none" in capsys.readouterr().out


def test_a_truncated_recording_is_reported_not_crashed(
        signed: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = signed["marked"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    # OpenCV writes the index last, so the cut file has no readable frames: a clear
    # error (the manifest side of a truncated file is in test_c2pa.py).
    assert run([str(cut)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("avatar-cam: error:") and "Traceback" not in captured.err


def test_a_manifest_naming_another_model_is_pointed_out(
        signed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(signed["other_model"])]) == 0
    assert "note: the manifest names model abcdef, the watermark c0ffee" in \
        capsys.readouterr().out
