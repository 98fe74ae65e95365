"""The synthetic motion script and its effect on real (MediaPipe) landmarks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recording_cam import astronaut

from avatar_cam import mesh
from avatar_cam.motion import (
    JAW_DROP,
    LOWER_LIP,
    PERIOD_S,
    UPPER_LIP,
    Motion,
    animate,
    face_frame,
    script,
)


@pytest.fixture(scope="module")
def neutral() -> np.ndarray:
    return astronaut()[1]


def face_height(p: np.ndarray) -> float:
    return float(np.linalg.norm(p[mesh.CHIN, :2] - p[mesh.FOREHEAD, :2]))


def fields(m: Motion) -> np.ndarray:
    return np.array(dataclasses.astuple(m))


def dist_to_polyline(point: np.ndarray, poly: np.ndarray) -> float:
    """Distance from a 2D point to a 2D polyline."""
    a, b = poly[:-1], poly[1:]
    ab = b - a
    t = np.clip(((point - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    return float(np.linalg.norm(a + t[:, None] * ab - point, axis=1).min())


# script(t) recorded when the script was last changed on purpose (yaw, pitch, roll,
# jaw_open, blink_left, blink_right, smile, brow_raise, offset_x, offset_y): the synthetic
# source, its ground truth and the benchmarks that replay it depend on these. At t = 0
# the formulas give yaw = 6 sin 0.5, pitch = 6 sin 1, roll = 5 sin 2 + 3 sin 0.3.
RECORDED = {
    0.0: (2.876553, 5.048826, 5.433048, 0.0, 0.0, 0.0, 0.0, 0.0, 0.025769, 0.017264),
    0.93: (12.522869, 9.494946, 5.990379, 0.000275, 0.5, 0.5, 0.0, 0.0, 0.037089, 0.001353),
    3.3: (9.464745, -9.36752, -4.917487, 0.472123, 0.0, 0.0, 0.0, 0.0, 0.026186, -0.013299),
    7.77: (-6.941696, 0.290616, -1.249606, 0.0, 0.0, 0.0, 0.0, 0.0, -0.039937, -0.014513),
    11.99: (2.747953, 4.951772, 5.398753, 0.0, 0.0, 0.0, 0.0, 0.0, 0.025608, 0.017369),
}


def test_script_is_deterministic_and_loops() -> None:
    assert math.isclose(RECORDED[0.0][0], 6 * math.sin(0.5), abs_tol=1e-6)
    assert math.isclose(RECORDED[0.0][2], 5 * math.sin(2) + 3 * math.sin(0.3), abs_tol=1e-6)
    for t, expected in RECORDED.items():
        np.testing.assert_allclose(fields(script(t)), expected, atol=1e-6)
        np.testing.assert_allclose(fields(script(t)), fields(script(t + PERIOD_S)), atol=1e-6)
        np.testing.assert_allclose(fields(script(t)), fields(script(t - 2 * PERIOD_S)),
                                   atol=1e-6)


def test_script_is_continuous_including_the_wrap() -> None:
    dt = 1.0 / 600.0
    ts = np.arange(-1.0, PERIOD_S + 1.0, dt)
    values = np.stack([fields(script(float(t))) for t in ts])
    steps = np.abs(np.diff(values, axis=0))
    # yaw, pitch, roll in degrees per 1/600 s; the rest in 0..1 or face fractions.
    assert steps[:, :3].max() < 0.1
    # Blinks are the fastest part (closing in 60 ms): still no jump bigger than 0.1.
    assert steps[:, 3:].max() < 0.1


def test_script_covers_talking_blinking_turning_smiling_and_brows() -> None:
    ts = np.arange(0.0, PERIOD_S, 1.0 / 200.0)
    ms = [script(float(t)) for t in ts]
    jaw = np.array([m.jaw_open for m in ms])
    blink = np.array([m.blink_left for m in ms])
    yaw = np.array([m.yaw for m in ms])
    assert 0.5 < jaw.max() <= 1.0 and jaw.min() >= 0.0
    # Syllables: the mouth opens and closes many times a period.
    assert ((jaw[1:] > 0.2) & (jaw[:-1] <= 0.2)).sum() >= 20
    closed = blink > 0.99
    starts = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 3 <= len(starts) <= 4
    assert np.all(np.diff(ts[starts]) > 2.0)
    # Each blink lasts about 150 ms from first movement to fully open.
    assert 0.1 < (blink > 0).sum() / 200.0 / len(starts) < 0.2
    assert 15.0 < np.abs(yaw).max() <= 20.0
    assert 5.0 < max(abs(m.pitch) for m in ms) <= 10.0
    assert 4.0 < max(abs(m.roll) for m in ms) <= 8.0
    assert max(m.smile for m in ms) > 0.99 and max(m.brow_raise for m in ms) > 0.99


def test_neutral_motion_is_identity(neutral: np.ndarray) -> None:
    out = animate(neutral, Motion())
    assert out.dtype == np.float32 and out.shape == (478, 3)
    np.testing.assert_array_equal(out, neutral)
    assert out is not neutral


def test_jaw_open_widens_the_inner_lip_gap(neutral: np.ndarray) -> None:
    h = face_height(neutral)
    gaps = []
    for jaw in (0.0, 0.25, 0.5, 1.0):
        p = animate(neutral, Motion(jaw_open=jaw))
        gaps.append(p[mesh.LOWER_LIP_INNER_MID, 1] - p[mesh.UPPER_LIP_INNER_MID, 1])
    assert np.all(np.diff(gaps) > 0)
    assert gaps[-1] - gaps[0] == pytest.approx(JAW_DROP * h, rel=0.1)
    p = animate(neutral, Motion(jaw_open=1.0))
    # The chin goes down with the jaw; the eyes and the nose stay.
    assert p[mesh.CHIN, 1] - neutral[mesh.CHIN, 1] > 0.8 * JAW_DROP * h
    still = list(mesh.RIGHT_EYE + mesh.LEFT_EYE + mesh.NOSE_BRIDGE[:5])
    np.testing.assert_allclose(p[still], neutral[still], atol=1e-3)


@pytest.mark.parametrize("motion", [Motion(jaw_open=1.0), Motion(smile=1.0),
                                    Motion(jaw_open=0.7, smile=1.0),
                                    Motion(jaw_open=1.0, smile=1.0, yaw=20, roll=8)])
def test_lips_never_cross(neutral: np.ndarray, motion: Motion) -> None:
    p = animate(neutral, motion).astype(np.float64)
    _, axes, _ = face_frame(p)
    q = p @ axes  # face frame of the output, so a turned head still reads "below" right

    def y_at(ring: tuple[int, ...], x: np.ndarray) -> np.ndarray:
        pts = q[list(ring)]
        order = np.argsort(pts[:, 0])
        return np.interp(x, pts[order, 0], pts[order, 1])

    left, right = q[mesh.MOUTH_RIGHT, 0], q[mesh.MOUTH_LEFT, 0]
    xs = np.linspace(left, right, 50)[3:-3]
    upper_outer = tuple(i for i in mesh.LIPS_OUTER if i in UPPER_LIP) + (61, 291)
    lower_outer = tuple(i for i in mesh.LIPS_OUTER if i in LOWER_LIP) + (61, 291)
    tol = 0.3
    # Top to bottom at every x: upper outer, upper inner, lower inner, lower outer.
    assert np.all(y_at(mesh.UPPER_INNER_LIP, xs) >= y_at(upper_outer, xs) - tol)
    assert np.all(y_at(mesh.LOWER_INNER_LIP, xs) >= y_at(mesh.UPPER_INNER_LIP, xs) - tol)
    assert np.all(y_at(lower_outer, xs) >= y_at(mesh.LOWER_INNER_LIP, xs) - tol)
    # The mouth opens, never closes, where the jaw drops.
    if motion.jaw_open:
        q0 = neutral.astype(np.float64) @ face_frame(neutral)[1]
        mid = mesh.LOWER_LIP_INNER_MID, mesh.UPPER_LIP_INNER_MID
        assert q[mid[0], 1] - q[mid[1], 1] > q0[mid[0], 1] - q0[mid[1], 1]


def test_blink_closes_each_eye_fully(neutral: np.ndarray) -> None:
    eye_width = float(np.linalg.norm(neutral[33, :2] - neutral[133, :2]))
    for side, upper, lower in (("right", mesh.RIGHT_UPPER_LID, mesh.RIGHT_LOWER_LID),
                               ("left", mesh.LEFT_UPPER_LID, mesh.LEFT_LOWER_LID)):
        p = animate(neutral, Motion(**{f"blink_{side}": 1.0}))
        low = p[list(lower), :2]
        gaps = [dist_to_polyline(p[i, :2], low) for i in upper[1:-1]]
        assert max(gaps) < 0.03 * eye_width, (side, gaps)
        open_gaps = [dist_to_polyline(neutral[i, :2], neutral[list(lower), :2])
                     for i in upper[1:-1]]
        assert max(open_gaps) > 0.2 * eye_width  # the test face had its eyes open
        # Half a blink leaves about half the opening.
        half = animate(neutral, Motion(**{f"blink_{side}": 0.5}))
        mid = upper[len(upper) // 2]
        half_gap = dist_to_polyline(half[mid, :2], half[list(lower), :2])
        full_gap = dist_to_polyline(neutral[mid, :2], neutral[list(lower), :2])
        assert 0.35 * full_gap < half_gap < 0.65 * full_gap
    # One eye's blink leaves the other eye alone.
    p = animate(neutral, Motion(blink_left=1.0))
    np.testing.assert_allclose(p[list(mesh.RIGHT_EYE)], neutral[list(mesh.RIGHT_EYE)], atol=1e-3)


def test_smile_lifts_and_widens_the_mouth_corners(neutral: np.ndarray) -> None:
    p = animate(neutral, Motion(smile=1.0))
    r, left = mesh.MOUTH_RIGHT, mesh.MOUTH_LEFT
    assert p[left, 0] - p[r, 0] > neutral[left, 0] - neutral[r, 0] + 0.05 * face_height(neutral)
    assert p[r, 1] < neutral[r, 1] - 1.0 and p[left, 1] < neutral[left, 1] - 1.0


def test_brow_raise_lifts_brows_not_lids(neutral: np.ndarray) -> None:
    p = animate(neutral, Motion(brow_raise=1.0))
    brows = [i for row in mesh.RIGHT_BROW + mesh.LEFT_BROW for i in row]
    assert np.all(p[brows, 1] < neutral[brows, 1] - 0.03 * face_height(neutral))
    lids = list(mesh.RIGHT_EYE + mesh.LEFT_EYE)
    np.testing.assert_allclose(p[lids], neutral[lids], atol=1e-3)


def test_yaw_moves_the_nose_sideways_relative_to_the_face(neutral: np.ndarray) -> None:
    def nose_offset(p: np.ndarray) -> float:
        eyes_mid = (p[mesh.RIGHT_EYE_OUTER, 0] + p[mesh.LEFT_EYE_OUTER, 0]) / 2.0
        return float(p[mesh.NOSE_TIP, 0] - eyes_mid)

    base = nose_offset(neutral)
    h = face_height(neutral)
    assert nose_offset(animate(neutral, Motion(yaw=20.0))) > base + 0.05 * h
    assert nose_offset(animate(neutral, Motion(yaw=-20.0))) < base - 0.05 * h
    # Pitch moves the nose down relative to the eyes; roll keeps the shape.
    def nose_drop(p: np.ndarray) -> float:
        return float(p[mesh.NOSE_TIP, 1] - p[[33, 263], 1].mean())

    assert nose_drop(animate(neutral, Motion(pitch=10.0))) > nose_drop(neutral) + 0.02 * h
    rolled = animate(neutral, Motion(roll=8.0))
    c = neutral.mean(0)
    np.testing.assert_allclose(np.linalg.norm(rolled - rolled.mean(0), axis=1),
                               np.linalg.norm(neutral - c, axis=1), atol=1e-2)


def test_offsets_shift_by_a_fraction_of_the_face(neutral: np.ndarray) -> None:
    h = face_height(neutral)
    p = animate(neutral, Motion(offset_x=0.1, offset_y=-0.05))
    np.testing.assert_allclose(p[:, 0] - neutral[:, 0], 0.1 * h, rtol=0.02, atol=0.05)
    np.testing.assert_allclose(p[:, 1] - neutral[:, 1], -0.05 * h, rtol=0.02, atol=0.05)


def test_expressions_follow_the_face_not_the_image(neutral: np.ndarray) -> None:
    # Rotating the neutral in the image, then animating, equals animating then rotating.
    a = math.radians(30.0)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    c = neutral.mean(0)
    tilted = ((neutral - c) @ rot.T + c).astype(np.float32)
    m = Motion(jaw_open=0.8, smile=0.5, blink_left=1.0, brow_raise=0.6, yaw=10, pitch=-5)
    expected = (animate(neutral, m) - c) @ rot.T + c
    np.testing.assert_allclose(animate(tilted, m), expected, atol=0.05)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, PERIOD_S))
def test_script_frames_are_finite_landmarks(t: float) -> None:
    neutral = astronaut()[1]
    out = animate(neutral, script(t))
    assert out.shape == (478, 3) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert animate(neutral, script(t)).tobytes() == out.tobytes()  # deterministic


def test_animate_rejects_bad_landmarks() -> None:
    with pytest.raises(ValueError, match="478"):
        animate(np.zeros((468, 3), np.float32), Motion(jaw_open=1.0))
