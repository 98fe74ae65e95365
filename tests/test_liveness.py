"""Liveness for camera enrollment, on synthetic landmark sequences of the demo face:
a cooperating person passes in any order; a photo, a wrong turn, closed eyes or a face
that leaves the picture fail."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from avatar_cam import motion
from avatar_cam.honesty.liveness import (
    ACTIONS,
    LivenessCheck,
    LivenessStatus,
    eye_aspect,
    turn_ratio,
)
from avatar_cam.person import load_person
from avatar_cam.types import Landmarks

FPS = 30.0


@pytest.fixture(scope="module")
def neutral() -> np.ndarray:
    return load_person("demo").neutral


def person(action: str, since: float, delay: float = 0.4) -> motion.Motion:
    """A cooperating person: reacts to the prompt after ``delay`` and acts for 1 s."""
    u = float(np.clip((since - delay) / 0.5, 0.0, 1.0)) if since < delay + 1.0 else 0.0
    if action == "turn_left":
        return motion.Motion(yaw=25.0 * u)
    if action == "turn_right":
        return motion.Motion(yaw=-25.0 * u)
    if action == "blink":
        b = 1.0 if delay <= since < delay + 0.12 else 0.0
        return motion.Motion(blink_left=b, blink_right=b)
    return motion.Motion()


def run(check: LivenessCheck, neutral: np.ndarray,
        actor: Callable[[str, float], motion.Motion | None], seconds: float = 30.0,
        mirror: bool = False) -> LivenessStatus:
    status = LivenessStatus("", "center", ())
    action, started = "", 0.0
    for n in range(int(seconds * FPS)):
        t = n / FPS
        if status.action != action:
            action, started = status.action, t
        m = actor(action, t - started)
        if m is None:
            status = check.update(None, t)
        else:
            pts = motion.animate(neutral, m)
            if mirror:
                pts[:, 0] = 640.0 - pts[:, 0]
            status = check.update(Landmarks(n, int(t * 1e9), pts, (640, 480)))
        if status.done:
            break
    return status


@pytest.mark.parametrize("seed", range(4))
def test_cooperating_person_passes_in_any_order(neutral: np.ndarray, seed: int) -> None:
    check = LivenessCheck(rng=random.Random(seed))
    status = run(check, neutral, person)
    assert status.passed, status.failed
    assert status.completed == check.order and sorted(check.order) == sorted(ACTIONS)


def test_orders_are_random() -> None:
    orders = {LivenessCheck(rng=random.Random(s)).order for s in range(20)}
    assert len(orders) >= 4


def test_mirrored_camera_does_not_swap_left_and_right(neutral: np.ndarray) -> None:
    left = motion.animate(neutral, motion.Motion(yaw=25))
    mirrored = left.copy()
    mirrored[:, 0] = 640.0 - mirrored[:, 0]
    assert turn_ratio(left) > 0.12 and turn_ratio(mirrored) > 0.12
    assert run(LivenessCheck(rng=random.Random(1)), neutral, person, mirror=True).passed


def test_photo_fails(neutral: np.ndarray) -> None:
    status = run(LivenessCheck(timeout_s=3.0), neutral, lambda _a, _s: motion.Motion())
    assert status.failed is not None and "within 3 s" in status.failed
    assert status.completed == ()


def test_wrong_turn_fails(neutral: np.ndarray) -> None:
    check = LivenessCheck(("turn_left",), timeout_s=3.0)
    status = run(check, neutral, lambda a, s: person("turn_right" if a == "turn_left" else a, s))
    assert status.failed is not None and "left" in status.failed


def test_closed_eyes_never_count_as_a_blink(neutral: np.ndarray) -> None:
    closed = motion.Motion(blink_left=1.0, blink_right=1.0)
    assert eye_aspect(motion.animate(neutral, closed)) < 0.3 * eye_aspect(neutral)
    check = LivenessCheck(("blink",), timeout_s=3.0)
    status = run(check, neutral, lambda a, s: closed if a == "blink" and s > 0.3 else
                 motion.Motion())
    assert status.failed is not None and "blink" in status.failed


def test_face_leaving_fails(neutral: np.ndarray) -> None:
    check = LivenessCheck(("turn_left",), timeout_s=5.0)
    status = run(check, neutral, lambda a, s: None if a == "turn_left" else motion.Motion())
    assert status.failed == "the face left the picture"
    with pytest.raises(ValueError, match="actions"):
        LivenessCheck(("wave",))
