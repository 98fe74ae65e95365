"""Landmark adaptation: a differently shaped driver moves the avatar's own face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from avatar_cam import mesh
from avatar_cam.drive import Adapter
from avatar_cam.geometry import (
    apply_similarity,
    face_centre,
    face_size,
    fit_similarity,
    smoothstep,
)
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame, Landmarks

FRAME_NS = 33_333_333
AVATAR_SIZE = (512, 512)
DRIVER_SIZE = (640, 480)


@pytest.fixture(scope="module")
def avatar() -> np.ndarray:
    """The astronaut's real MediaPipe landmarks, float64, as the avatar's neutral."""
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    with MediaPipeTracker(static=True) as tracker:
        lm = tracker.track(Frame(0, 0, image))
    assert lm is not None
    return lm.points.astype(np.float64)


@pytest.fixture(scope="module")
def driver(avatar: np.ndarray) -> np.ndarray:
    """Another face: 1.3x wider, 0.9x as tall, elsewhere in a 640x480 frame."""
    c = face_centre(avatar)
    return (avatar - c) * [1.3, 0.9, 1.0] + c + [60.0, -20.0, 5.0]


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return np.asarray(rz @ rx @ ry)


def rotate(points: np.ndarray, r: np.ndarray) -> np.ndarray:
    c = face_centre(points)
    return np.asarray((points - c) @ r.T + c)


def open_mouth(points: np.ndarray, amount: float) -> np.ndarray:
    """Drop the jaw (everything below the upper inner lip) by ``amount`` pixels."""
    p = points.copy()
    jaw = p[:, 1] > p[mesh.UPPER_LIP_INNER_MID, 1] + 1.0
    p[jaw, 1] += amount
    return p


def opening(points: np.ndarray) -> float:
    return float(points[mesh.LOWER_LIP_INNER_MID, 1] - points[mesh.UPPER_LIP_INNER_MID, 1])


def drive(adapter: Adapter, points: np.ndarray | None, k: int) -> np.ndarray:
    lm = None
    if points is not None:
        lm = Landmarks(k, k * FRAME_NS, points.astype(np.float32), DRIVER_SIZE)
    out = adapter.drive(lm, k, k * FRAME_NS)
    assert out.size == AVATAR_SIZE and (out.seq, out.t_capture_ns) == (k, k * FRAME_NS)
    assert "drive" in out.timings
    return out.points.astype(np.float64)


def learned(avatar: np.ndarray, driver_neutral: np.ndarray, **kwargs: float) -> Adapter:
    """An adapter that has seen 2.5 s of the driver's neutral face (frames 0..74)."""
    adapter = Adapter(avatar.astype(np.float32), AVATAR_SIZE, **kwargs)
    for k in range(75):
        drive(adapter, driver_neutral, k)
    return adapter


def test_head_rotation_moves_the_avatars_face_not_the_drivers(
    avatar: np.ndarray, driver: np.ndarray
) -> None:
    adapter = learned(avatar, driver)
    iod = mesh.inter_ocular(avatar)
    # Turns inside pose.py's knee pass unchanged (beyond it they ease off: test_pose.py).
    for k, angles in enumerate([(10, 0, 0), (0, 15, 0), (0, 0, 20), (10, -10, 10)], start=100):
        r = rotation(*angles)
        out = drive(adapter, rotate(driver, r), k)
        want = rotate(avatar, r)
        err = np.linalg.norm((out - want)[:, :2], axis=1)
        assert err.mean() < 0.02 * iod and err.max() < 0.05 * iod, angles
        # What naive driving would give: the driver's face, fitted onto the avatar's.
        naive = rotate(driver, r)
        s, rr, t = fit_similarity(naive[list(mesh.RIGID)], want[list(mesh.RIGID)])
        naive_err = np.linalg.norm((apply_similarity(naive, s, rr, t) - out)[:, :2], axis=1)
        assert naive_err.mean() > 0.05 * iod and naive_err.mean() > 10 * err.mean(), angles


def test_head_translation_and_scale_are_in_avatar_units(
    avatar: np.ndarray, driver: np.ndarray
) -> None:
    adapter = learned(avatar, driver)
    c = face_centre(driver)
    # The driver comes 10% closer and moves right by 0.2 of its face width.
    dx = 0.2 * face_size(driver)[0]
    out = drive(adapter, (driver - c) * 1.1 + c + [dx, 0.0, 0.0], 100)
    # Translation is rescaled by the faces' overall size ratio (similarity fit).
    s_da = fit_similarity(driver[list(mesh.RIGID)], avatar[list(mesh.RIGID)])[0]
    ca = face_centre(avatar)
    want = (avatar - ca) * 1.1 + ca + [s_da * dx, 0.0, 0.0]
    err = np.linalg.norm((out - want)[:, :2], axis=1)
    assert err.max() < 0.05 * mesh.inter_ocular(avatar)


def test_mouth_opening_transfers_in_proportion(avatar: np.ndarray, driver: np.ndarray) -> None:
    adapter = learned(avatar, driver)
    driver_h, avatar_h = face_size(driver)[1], face_size(avatar)[1]
    growth = []
    for k, fraction in enumerate([0.05, 0.1, 0.2], start=100):
        out = drive(adapter, open_mouth(driver, fraction * driver_h), k)
        grown = (opening(out) - opening(avatar)) / avatar_h
        assert grown == pytest.approx(fraction, rel=0.1)
        growth.append(grown)
        # The rest of the face keeps still: the jaw drop is not mistaken for head motion.
        rigid = np.linalg.norm((out - avatar)[list(mesh.RIGID), :2], axis=1)
        assert rigid.max() < 0.03 * mesh.inter_ocular(avatar)
    assert growth[0] < growth[1] < growth[2]


def test_wide_driver_does_not_widen_the_avatars_smile(
    avatar: np.ndarray, driver: np.ndarray
) -> None:
    adapter = learned(avatar, driver)

    def smile(points: np.ndarray, dx: float) -> np.ndarray:
        p = points.copy()
        p[mesh.MOUTH_RIGHT, 0] -= dx  # the subject's right corner is on the image's left
        p[mesh.MOUTH_LEFT, 0] += dx
        return p

    def mouth_width(points: np.ndarray) -> float:
        return float(points[mesh.MOUTH_LEFT, 0] - points[mesh.MOUTH_RIGHT, 0])

    driver_w, avatar_w = face_size(driver)[0], face_size(avatar)[0]
    out = drive(adapter, smile(driver, 0.05 * driver_w), 100)
    grown = (mouth_width(out) - mouth_width(avatar)) / avatar_w
    assert grown == pytest.approx(0.1, rel=0.1)


def test_face_loss_holds_then_eases_to_neutral(avatar: np.ndarray, driver: np.ndarray) -> None:
    adapter = learned(avatar, driver)  # hold 1.0 s, ease 0.5 s
    expression = open_mouth(rotate(driver, rotation(10, 5, 0)), 0.1 * face_size(driver)[1])
    last = drive(adapter, expression, 100)
    assert np.abs(last - avatar).max() > 5.0

    def lost_after(seconds: float) -> np.ndarray:
        t_ns = 100 * FRAME_NS + round(seconds * 1e9)
        return adapter.drive(None, 0, t_ns).points.astype(np.float64)

    np.testing.assert_allclose(lost_after(0.5), last, atol=1e-4)
    np.testing.assert_allclose(lost_after(1.0), last, atol=1e-4)
    half = lost_after(1.25)  # halfway through the ease: smoothstep(0.5) = 0.5
    np.testing.assert_allclose(half, (last + avatar) / 2, atol=0.02)
    np.testing.assert_allclose(lost_after(1.5), avatar, atol=1e-4)
    np.testing.assert_allclose(lost_after(5.0), avatar, atol=1e-4)
    # The face returns: start from what was shown, reach the new target within 0.15 s.
    back = drive(adapter, expression, 251)
    np.testing.assert_allclose(back, avatar, atol=1e-4)
    assert np.abs(drive(adapter, expression, 253) - avatar).max() > 1.0
    np.testing.assert_allclose(drive(adapter, expression, 256), last, atol=1e-3)


def test_no_face_from_the_start_is_the_avatars_neutral(avatar: np.ndarray) -> None:
    adapter = Adapter(avatar.astype(np.float32), AVATAR_SIZE)
    for k in range(3):
        np.testing.assert_allclose(drive(adapter, None, k), avatar, atol=1e-4)


def test_degenerate_landmarks_count_as_no_face(avatar: np.ndarray) -> None:
    adapter = Adapter(avatar.astype(np.float32), AVATAR_SIZE)
    np.testing.assert_allclose(drive(adapter, np.zeros_like(avatar), 0), avatar, atol=1e-4)
    # and do not poison the neutral: a real face afterwards drives normally
    np.testing.assert_allclose(drive(adapter, avatar, 1), avatar, atol=1e-3)


def test_reset_neutral_relearns_the_drivers_rest_face(
    avatar: np.ndarray, driver: np.ndarray
) -> None:
    adapter = learned(avatar, driver, neutral_seconds=1.0)
    # This driver's mouth now rests a little open: at first it shows as an expression.
    rest = open_mouth(driver, 0.08 * face_size(driver)[1])
    out = drive(adapter, rest, 100)
    assert opening(out) - opening(avatar) > 0.05 * face_size(avatar)[1]
    adapter.reset_neutral()
    assert adapter.driver_neutral is None
    for k in range(101, 120):
        out = drive(adapter, rest, k)
    nd = adapter.driver_neutral
    assert nd is not None
    np.testing.assert_allclose(nd, rest, atol=1e-3)
    np.testing.assert_allclose(out, avatar, atol=1e-3)  # eased back in to the neutral


def test_neutral_is_the_median_of_the_first_seconds(
    avatar: np.ndarray, driver: np.ndarray
) -> None:
    adapter = Adapter(avatar.astype(np.float32), AVATAR_SIZE, neutral_seconds=1.0)
    talk = open_mouth(driver, 0.1 * face_size(driver)[1])
    # 30 neutral frames with 10 talking ones among them, some with the head turned.
    for k in range(40):
        points = talk if k % 4 == 1 else driver
        drive(adapter, rotate(points, rotation(8, 0, 0)) if k % 5 == 0 else points, k)
    nd = adapter.driver_neutral
    assert nd is not None
    err = np.linalg.norm((nd - driver)[:, :2], axis=1)
    assert err.max() < 0.05 * mesh.inter_ocular(driver)
    # After the window, new frames no longer change the neutral.
    drive(adapter, talk, 40)
    after = adapter.driver_neutral
    assert after is not None
    np.testing.assert_array_equal(after, nd)


def test_own_neutral_gives_back_the_neutral(avatar: np.ndarray) -> None:
    adapter = learned(avatar, avatar)
    out = adapter.drive(Landmarks(90, 90 * FRAME_NS, avatar.astype(np.float32), AVATAR_SIZE),
                        90, 90 * FRAME_NS)
    assert out.points.dtype == np.float32
    np.testing.assert_allclose(out.points, avatar, atol=1e-3)


def test_timings_are_carried_through(avatar: np.ndarray) -> None:
    with Adapter(avatar.astype(np.float32), AVATAR_SIZE) as adapter:
        lm = Landmarks(3, 99, avatar.astype(np.float32), DRIVER_SIZE, {"track": 6.5})
        out = adapter.drive(lm, 3, 99)
    assert out.timings["track"] == 6.5 and out.timings["drive"] >= 0


def test_fit_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(0, 50, (32, 3))
    r = rotation(30, -20, 10)
    s, rr, t = fit_similarity(src, 1.7 * src @ r.T + [5.0, -3.0, 2.0])
    assert s == pytest.approx(1.7)
    np.testing.assert_allclose(rr, r, atol=1e-9)
    np.testing.assert_allclose(t, [5.0, -3.0, 2.0], atol=1e-9)
    # A mirror image is fitted by a rotation, never a reflection.
    _, rm, _ = fit_similarity(src, src * [-1.0, 1.0, 1.0])
    assert np.linalg.det(rm) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fit_similarity(np.zeros((32, 3)), src)


def test_smoothstep() -> None:
    assert [smoothstep(x) for x in (-1.0, 0.0, 0.5, 1.0, 2.0)] == [0.0, 0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(
    ("neutral", "size", "kwargs"),
    [
        (np.zeros((468, 3), np.float32), (256, 256), {}),
        (None, (0, 256), {}),
        (None, (256, 256), {"hold_s": -1.0}),
        (None, (256, 256), {"ease_s": float("nan")}),
    ],
)
def test_bad_arguments_are_rejected(
    avatar: np.ndarray, neutral: np.ndarray | None, size: tuple[int, int],
    kwargs: dict[str, float],
) -> None:
    with pytest.raises(ValueError):
        Adapter(avatar if neutral is None else neutral, size, **kwargs)
