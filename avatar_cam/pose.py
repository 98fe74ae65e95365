"""Head-pose angles and their soft limits: turns beyond what renders well ease off.

The avatar is one photo warped (and refined) onto new landmarks. Past some yaw, pitch or
roll the warp folds triangles and stretches the far cheek; benchmarks/pose_range.py
measures where, per axis, over several real faces, and ``DEFAULT_LIMITS`` holds what it
found (tests/test_pose.py keeps the two equal). ``soften`` maps a head rotation to one
whose angles follow it up to a knee and then approach the limit without reaching it, so
a driver turning further than that moves the avatar less and less instead of tearing it.

Angles, in MediaPipe's axes (x right, y down, z away from the camera), each a right-handed
rotation about its axis:

- yaw: about y (the vertical axis: turning the head left and right),
- pitch: about x (nodding),
- roll: about z (tilting the head towards a shoulder),

composed as ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)``. Pitch is the middle angle because a
head never nods to 90 degrees, where this decomposition is singular (gimbal lock); yaw
and roll are then unique in (-180, 180].

The easing, per angle a and limit L (degrees), with the knee k = KNEE * L:

    f(a) = a                                       for |a| <= k
    f(a) = sign(a) * (k + (L - k) * x / (1 + x))   beyond, x = (|a| - k) / (L - k)

f is odd, continuous with a continuous slope (1 at the knee, falling as 1 / (1 + x)^2
beyond), strictly increasing, and |f(a)| < L for every a. A rational curve rather than
tanh: tanh rounds to 1 a few widths past the knee, which would pin far turns exactly at
the limit and flatten the curve there; this one stays strictly under it, still turning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Below KNEE * limit the avatar follows the driver exactly: the easing only costs angle
# where the render is already close to tearing.
KNEE = 0.6
_ORTHO_TOL = 1e-4  # |R^T R - I| allowed: fits in float32 land well inside it


@dataclass(frozen=True)
class PoseLimits:
    """Largest yaw, pitch and roll (degrees, symmetric about 0) the avatar is given."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float

    def __post_init__(self) -> None:
        for name in ("yaw_deg", "pitch_deg", "roll_deg"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) \
                    or not (math.isfinite(v) and 0 < v < 90):
                raise ValueError(f"PoseLimits.{name} must be a number in (0, 90) degrees, "
                                 f"got {v!r}")


# Measured by benchmarks/pose_range.py (results/pose_range.json, "limits"): the largest
# angle, per axis, at which every avatar measured still renders without tearing.
DEFAULT_LIMITS = PoseLimits(yaw_deg=20.0, pitch_deg=30.0, roll_deg=60.0)


def _check_rotation(r: np.ndarray) -> np.ndarray:
    a = np.asarray(r, dtype=np.float64)
    if a.shape != (3, 3):
        raise ValueError(f"rotation must be a (3, 3) matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("rotation has NaN or infinite entries")
    err = float(np.abs(a.T @ a - np.eye(3)).max())
    if err > _ORTHO_TOL or np.linalg.det(a) <= 0:
        raise ValueError(f"not a proper rotation (|R^T R - I| = {err:.2g}, "
                         f"det = {np.linalg.det(a):.3g}); expected orthonormal with det +1")
    return a


def rot_x(deg: float) -> np.ndarray:
    """Rotation by ``deg`` degrees about x (pitch)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    """Rotation by ``deg`` degrees about y (yaw)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(deg: float) -> np.ndarray:
    """Rotation by ``deg`` degrees about z (roll)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def compose(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """``Ry(yaw) @ Rx(pitch) @ Rz(roll)``: the inverse of :func:`angles`."""
    return rot_y(yaw_deg) @ rot_x(pitch_deg) @ rot_z(roll_deg)


def angles(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a (3, 3) rotation; ValueError if it is not one.

    With R = Ry(a) Rx(b) Rz(c): R[1, 2] = -sin b, R[0, 2] / R[2, 2] = tan a (both scaled
    by cos b), R[1, 0] / R[1, 1] = tan c (likewise).
    """
    a = _check_rotation(r)
    pitch = math.asin(min(max(-a[1, 2], -1.0), 1.0))
    yaw = math.atan2(a[0, 2], a[2, 2])
    roll = math.atan2(a[1, 0], a[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def ease(angle_deg: float, limit_deg: float) -> float:
    """The angle shown for ``angle_deg`` under ``limit_deg`` (see the module docstring)."""
    if not (math.isfinite(limit_deg) and limit_deg > 0):
        raise ValueError(f"limit must be a finite angle > 0, got {limit_deg!r}")
    k = KNEE * limit_deg
    m = abs(angle_deg)
    if m <= k:
        return float(angle_deg)
    w = limit_deg - k
    x = (m - k) / w
    return math.copysign(k + w * x / (1.0 + x), angle_deg)


def soften(r: np.ndarray, limits: PoseLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The rotation with each of yaw, pitch and roll eased towards ``limits``.

    r: (3, 3) proper rotation (e.g. the adapter's relative head rotation). Returns a
    (3, 3) float64 rotation, recomposed in the same order; the identity gives the
    identity, and rotations with every angle under the knee come back unchanged (to
    rounding). ValueError for anything that is not a finite proper rotation.
    """
    yaw, pitch, roll = angles(r)
    return compose(ease(yaw, limits.yaw_deg), ease(pitch, limits.pitch_deg),
                   ease(roll, limits.roll_deg))
