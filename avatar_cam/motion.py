"""A synthetic face-motion script: talking, blinking, turning, smiling, raising brows.

``script(t)`` says what the face does at time ``t`` (a deterministic loop of
``PERIOD_S`` seconds); ``animate(neutral, motion)`` moves a neutral face's 478 landmarks
accordingly. The synthetic source plays them so the whole pipeline can run, and be
tested, with no webcam and with known ground-truth landmarks.

Conventions: the face frame has x from the subject's right eye to the left eye (image
right for a frontal face), y from forehead to chin (down), z away from the camera.
Positive yaw moves the nose toward +x, positive pitch moves it down (nodding), positive
roll turns the face clockwise on screen. Offsets are fractions of the face height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import mesh
from .types import check_points

PERIOD_S = 12.0

# Lip rings (MediaPipe face-mesh annotation order, right corner to left corner). The
# jaw moves the lower rings fully and the upper rings hardly at all, so assigning each
# point to a lip explicitly is what keeps the lips from crossing on a closed mouth,
# where upper and lower inner points coincide and geometry cannot tell them apart.
UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409,
             184, 74, 73, 72, 11, 302, 303, 304, 408,
             183, 42, 41, 38, 12, 268, 271, 272, 407,
             191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375,
             77, 90, 180, 85, 16, 315, 404, 320, 307,
             96, 89, 179, 86, 15, 316, 403, 319, 325,
             95, 88, 178, 87, 14, 317, 402, 318, 324)
MOUTH_CORNERS = (61, 76, 62, 78, 291, 306, 292, 308)
IRIS = tuple(range(468, 478))
BROWS = tuple(sorted(set(sum(mesh.RIGHT_BROW + mesh.LEFT_BROW, ()))))

# Expression strengths at 1.0, as fractions of the face height (forehead to chin).
JAW_DROP = 0.13  # lower-lip and chin travel with the mouth wide open
CORNER_FOLLOW = 0.12  # share of the jaw drop the mouth corners follow
SMILE_OUT, SMILE_UP, SMILE_SIGMA = 0.05, 0.045, 0.09
BROW_LIFT = 0.05
LOWER_LID_SHARE = 0.15  # in a blink the lower lid rises this share of the gap


@dataclass(frozen=True)
class Motion:
    """One instant of the script. Angles in degrees; expressions in 0..1."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    jaw_open: float = 0.0
    blink_left: float = 0.0
    blink_right: float = 0.0
    smile: float = 0.0
    brow_raise: float = 0.0
    offset_x: float = 0.0
    offset_y: float = 0.0


def _smoothstep(x: float | np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.asarray(x * x * (3.0 - 2.0 * x))


def _window(t: float, start: float, end: float, ramp: float) -> float:
    """1 inside [start, end], 0 outside, with smooth ramps of ``ramp`` seconds inside."""
    return float(_smoothstep((t - start) / ramp) * _smoothstep((end - t) / ramp))


def _blink(t: float, start: float) -> float:
    """A ~150 ms blink: 60 ms closing, 15 ms closed, 75 ms opening; continuous in t."""
    dt = t - start
    if dt <= 0.0 or dt >= 0.15:
        return 0.0
    if dt < 0.06:
        return float(_smoothstep(dt / 0.06))
    if dt < 0.075:
        return 1.0
    return float(_smoothstep((0.15 - dt) / 0.075))


BLINKS_S = (0.9, 4.0, 7.3, 10.4)
TALK_S = ((0.2, 4.6), (7.9, 11.8))
SMILE_S = (4.8, 7.6)
BROW_S = ((2.0, 3.2), (9.0, 9.8))


def script(t_s: float) -> Motion:
    """What the face does at ``t_s`` seconds; loops every ``PERIOD_S`` seconds."""
    t = math.fmod(t_s, PERIOD_S)
    if t < 0.0:
        t += PERIOD_S
    # Every frequency is a whole number of cycles per period, so the loop is seamless.
    w = 2.0 * math.pi / PERIOD_S
    talking = sum(_window(t, a, b, 0.3) for a, b in TALK_S)
    syllable = 0.5 - 0.5 * math.cos(52 * w * t)  # ~4.3 syllables a second
    loudness = 0.55 + 0.25 * math.sin(8 * w * t + 1.0) + 0.15 * math.sin(19 * w * t)
    jaw = talking * loudness * syllable**1.5
    blink = sum(_blink(t, b) for b in BLINKS_S)
    return Motion(
        yaw=14.0 * math.sin(w * t) + 6.0 * math.sin(2 * w * t + 0.5),
        pitch=6.0 * math.sin(2 * w * t + 1.0) + 4.0 * math.sin(3 * w * t),
        roll=5.0 * math.sin(w * t + 2.0) + 3.0 * math.sin(3 * w * t + 0.3),
        jaw_open=float(min(max(jaw, 0.0), 1.0)),
        blink_left=blink,
        blink_right=blink,
        smile=_window(t, *SMILE_S, 0.6),
        brow_raise=sum(_window(t, a, b, 0.25) for a, b in BROW_S),
        offset_x=0.04 * math.sin(w * t + 0.7),
        offset_y=0.02 * math.sin(2 * w * t + 2.1),
    )


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) rotation in the face frame (x right, y down, z away), angles in degrees."""
    a, b, c = np.radians([yaw, pitch, roll])
    # Yaw about y: +yaw brings the nose (negative z) toward +x.
    ry = np.array([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0],
                   [math.sin(a), 0.0, math.cos(a)]])
    # Pitch about x: +pitch brings the nose (negative z) toward +y, i.e. down.
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)],
                   [0.0, math.sin(b), math.cos(b)]])
    # Roll about z: +roll is clockwise on screen (y points down).
    rz = np.array([[math.cos(c), -math.sin(c), 0.0], [math.sin(c), math.cos(c), 0.0],
                   [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre (3,), axes (3, 3) with the face's x, y, z as columns, and face height."""
    p = points.astype(np.float64)
    centre = p[list(mesh.RIGID)].mean(axis=0)
    ex = p[mesh.LEFT_EYE_OUTER] - p[mesh.RIGHT_EYE_OUTER]
    ex /= np.linalg.norm(ex)
    down = p[mesh.CHIN] - p[mesh.FOREHEAD]
    ey = down - (down @ ex) * ex
    ey /= np.linalg.norm(ey)
    axes = np.stack([ex, ey, np.cross(ex, ey)], axis=1)
    height = float(down @ ey)
    return centre, axes, height


def _jaw(q: np.ndarray, amount: float, h: float) -> np.ndarray:
    """Displacements (N, 3) opening the mouth by ``amount`` (0..1), in face coordinates."""
    drop = amount * JAW_DROP * h
    corners = q[[mesh.MOUTH_RIGHT, mesh.MOUTH_LEFT]]
    mx, my = corners[:, 0].mean(), corners[:, 1].mean()
    half_width = max(abs(corners[1, 0] - corners[0, 0]) / 2.0, 1e-6)
    u = np.abs(q[:, 0] - mx) / half_width
    uc = np.minimum(u, 1.0)
    # Lower lip: full drop at the middle, CORNER_FOLLOW at the corners; the upper lip
    # rises from 0 to the same value, so the gap grows by drop * (1 - u^2) >= 0.
    lower = 1.0 - (1.0 - CORNER_FOLLOW) * uc**2
    upper = CORNER_FOLLOW * uc**2
    # Chin and jaw below the mouth follow as the lower lip does, fading toward the ears.
    beyond = CORNER_FOLLOW * np.exp(-(u - 1.0))
    lateral = np.where(u <= 1.0, lower, beyond)
    vertical = _smoothstep((q[:, 1] - (my - 0.02 * h)) / (0.14 * h))
    weight = lateral * vertical
    weight[list(LOWER_LIP)] = lower[list(LOWER_LIP)]
    weight[list(UPPER_LIP)] = upper[list(UPPER_LIP)]
    weight[list(MOUTH_CORNERS)] = CORNER_FOLLOW
    weight[list(IRIS)] = 0.0
    d = np.zeros_like(q)
    d[:, 1] = weight * drop
    d[:, 2] = weight * drop * 0.25  # the jaw swings back as it opens
    return d


def _lid_curve(q: np.ndarray, lid: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """y and z of a lid polyline at the face-frame abscissas ``x``: (len(x), 2)."""
    pts = q[list(lid)]
    order = np.argsort(pts[:, 0])
    xs = pts[order, 0]
    return np.stack([np.interp(x, xs, pts[order, 1]), np.interp(x, xs, pts[order, 2])], 1)


def _blink_eye(q: np.ndarray, amount: float, upper_lid: tuple[int, ...],
               lower_lid: tuple[int, ...], iris: tuple[int, ...]) -> np.ndarray:
    """Displacements closing one eye by ``amount``; at 1 both lids meet on one curve."""
    d = np.zeros_like(q)
    up, low = list(upper_lid[1:-1]), list(lower_lid[1:-1])  # the corners stay put
    # Each lid moves toward the other lid's curve at its own x: the upper lid covers
    # (1 - LOWER_LID_SHARE) of the gap and the lower lid the rest, so they meet.
    target_up = _lid_curve(q, lower_lid, q[up, 0])
    d[up, 1:] = amount * (1.0 - LOWER_LID_SHARE) * (target_up - q[up, 1:])
    target_low = _lid_curve(q, upper_lid, q[low, 0])
    d[low, 1:] = amount * LOWER_LID_SHARE * (target_low - q[low, 1:])
    # Flatten the iris onto the closing line so it is not drawn over a shut lid.
    ir = list(iris)
    top = _lid_curve(q, upper_lid, q[ir, 0])[:, 0]
    bottom = _lid_curve(q, lower_lid, q[ir, 0])[:, 0]
    meet = top + (1.0 - LOWER_LID_SHARE) * (bottom - top)
    d[ir, 1] = amount * (meet - q[ir, 1])
    return d


def _smile(q: np.ndarray, amount: float, h: float) -> np.ndarray:
    """Corners and their surroundings up and outward; a smooth field, so nothing folds."""
    d = np.zeros_like(q)
    sigma = SMILE_SIGMA * h
    for corner, outward in ((mesh.MOUTH_RIGHT, -1.0), (mesh.MOUTH_LEFT, 1.0)):
        r2 = ((q[:, :2] - q[corner, :2]) ** 2).sum(axis=1)
        g = amount * np.exp(-r2 / (2.0 * sigma * sigma))
        d[:, 0] += g * outward * SMILE_OUT * h
        d[:, 1] -= g * SMILE_UP * h
    d[list(IRIS)] = 0.0
    return d


def _brows(q: np.ndarray, amount: float, h: float) -> np.ndarray:
    """Brows up by BROW_LIFT; fades to 0 at the top of the upper lids, partly above."""
    lids = list(mesh.RIGHT_UPPER_LID + mesh.LEFT_UPPER_LID)
    lid_top = q[lids, 1].min()
    brow_y = q[list(BROWS), 1]
    brow_high, brow_low = brow_y.min(), brow_y.max()
    forehead_y = q[mesh.FOREHEAD, 1]
    y = q[:, 1]
    below = _smoothstep((lid_top - y) / max(lid_top - brow_low, 1e-6))
    above = 1.0 - 0.7 * _smoothstep((brow_high - y) / max(brow_high - forehead_y, 1e-6))
    weight = np.where(y > brow_low, below, np.where(y < brow_high, above, 1.0))
    # Temples and the face outline beside the brows stay where they are.
    mid_x = q[list(BROWS), 0].mean()
    half = np.abs(q[list(BROWS), 0] - mid_x).max()
    weight *= 1.0 - _smoothstep((np.abs(q[:, 0] - mid_x) - half) / (0.1 * h))
    weight[list(IRIS)] = 0.0
    d = np.zeros_like(q)
    d[:, 1] = -amount * BROW_LIFT * h * weight
    return d


def animate(neutral: np.ndarray, m: Motion) -> np.ndarray:
    """Apply ``m`` to (478, 3) float32 neutral landmarks; returns new (478, 3) float32.

    Expressions are applied in the face's own frame (so a tilted neutral opens its mouth
    along its own chin direction), then the head rotates orthographically about the
    face centre, then the whole face shifts by the offsets.
    """
    check_points(neutral)
    if m == Motion():
        return neutral.copy()  # exact identity, without round-off from the frame change
    p = neutral.astype(np.float64)
    centre, axes, h = face_frame(p)
    q = (p - centre) @ axes
    if m.jaw_open:
        q += _jaw(q, float(np.clip(m.jaw_open, 0.0, 1.0)), h)
    if m.smile:
        q += _smile(q, float(np.clip(m.smile, 0.0, 1.0)), h)
    if m.blink_right:
        q += _blink_eye(q, float(np.clip(m.blink_right, 0.0, 1.0)), mesh.RIGHT_UPPER_LID,
                        mesh.RIGHT_LOWER_LID, mesh.RIGHT_IRIS + (mesh.RIGHT_IRIS_CENTER,))
    if m.blink_left:
        q += _blink_eye(q, float(np.clip(m.blink_left, 0.0, 1.0)), mesh.LEFT_UPPER_LID,
                        mesh.LEFT_LOWER_LID, mesh.LEFT_IRIS + (mesh.LEFT_IRIS_CENTER,))
    if m.brow_raise:
        q += _brows(q, float(np.clip(m.brow_raise, 0.0, 1.0)), h)
    if m.yaw or m.pitch or m.roll:
        q = q @ _rotation(m.yaw, m.pitch, m.roll).T
    out = q @ axes.T + centre
    out[:, :2] += np.array([m.offset_x, m.offset_y]) * h
    return out.astype(np.float32)
