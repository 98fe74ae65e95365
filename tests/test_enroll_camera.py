"""Camera enrollment's liveness check, with real MediaPipe on real pixels. The webcam is
the one fake (this machine has none): a recording stand-in that shows the demo person,
warp-rendered, doing what the prompt asks -- or a still photo that does nothing."""

from __future__ import annotations

import random
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam import motion
from avatar_cam.calibrate.commands import _record
from avatar_cam.errors import AvatarCamError, CameraError
from avatar_cam.honesty.liveness import LivenessCheck
from avatar_cam.person import Person, load_person
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks

SIZE = 384


class PersonCamera:
    """cv2.VideoCapture stand-in: frames of a person who follows ``check``'s prompts
    (``cooperate``) or holds still like a photo. Records what it was asked."""

    def __init__(self, person: Person, check: LivenessCheck, cooperate: bool) -> None:
        self.neutral = (person.neutral * (SIZE / person.crop_size)).astype(np.float32)
        self.warp = WarpRenderer(person.crop, person.neutral, resolution=SIZE)
        self.check, self.cooperate = check, cooperate
        self.reads, self.released = 0, False
        self._action, self._since = "", time.monotonic()

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        self.reads += 1
        action = self.check._status().action if self.cooperate else "center"
        if action != self._action:
            self._action, self._since = action, time.monotonic()
        since = time.monotonic() - self._since
        u = float(np.clip((since - 0.2) / 0.3, 0.0, 1.0))
        m = motion.Motion()
        if action == "turn_left":
            m = motion.Motion(yaw=25.0 * u)
        elif action == "turn_right":
            m = motion.Motion(yaw=-25.0 * u)
        elif action == "blink" and 0.3 <= since % 1.0 < 0.55:
            m = motion.Motion(blink_left=1.0, blink_right=1.0)
        points = motion.animate(self.neutral, m)
        time.sleep(1 / 30)  # a camera delivers 30 frames a second
        return True, self.warp.render(Landmarks(0, 0, points, (SIZE, SIZE)))

    def release(self) -> None:
        self.released = True


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


def test_live_person_passes_and_is_recorded(person: Person, tmp_path: Path) -> None:
    check = LivenessCheck(timeout_s=6.0, rng=random.Random(3))
    cam = PersonCamera(person, check, cooperate=True)
    path = _record("0", 0.5, tmp_path, opener=lambda _d: cam, check=check)
    assert check._status().passed and cam.released
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 5
    cap.release()


def test_a_photo_held_up_fails_the_check(person: Person, tmp_path: Path) -> None:
    check = LivenessCheck(timeout_s=1.0, rng=random.Random(1))
    cam = PersonCamera(person, check, cooperate=False)
    with pytest.raises(AvatarCamError, match="liveness check failed: did not"):
        _record("0", 0.5, tmp_path, opener=lambda _d: cam, check=check)
    assert cam.released and not (tmp_path / "camera.mp4").exists()


def test_missing_camera(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="could not be opened"):
        _record("/dev/video-none", 1.0, tmp_path)
