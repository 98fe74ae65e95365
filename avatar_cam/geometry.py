"""Point-set geometry shared by the stages: the Umeyama similarity fit (one
implementation for the adapter, the framer and the warp renderer), its application and
inverse, a mean of rotations, and the face measures they pivot on.
"""

from __future__ import annotations

import math

import numpy as np

from . import mesh

_RIGID = list(mesh.RIGID)
_OVAL = list(mesh.FACE_OVAL[:-1])


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity with ``dst ~ s * src @ R.T + t`` (Umeyama 1991).

    src, dst: (N, D) corresponding points. Returns s > 0, R (D, D) a proper rotation
    (det +1, never a reflection) and t (D,). Raises ValueError on degenerate input.
    """
    a = np.asarray(src, dtype=np.float64)
    b = np.asarray(dst, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < a.shape[1]:
        raise ValueError(f"need two (N, D) point sets with N >= D, got {a.shape}, {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    xa, xb = a - mu_a, b - mu_b
    var_a = float((xa**2).sum()) / len(a)
    if not (math.isfinite(var_a) and var_a > 1e-12) or not np.isfinite(xb).all():
        raise ValueError("degenerate point set: the source points coincide or are not finite")
    u, sv, vt = np.linalg.svd(xb.T @ xa / len(a))
    d = np.ones(a.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    r = (u * d) @ vt
    s = float((sv * d).sum()) / var_a
    if not s > 1e-9:
        raise ValueError("degenerate fit: the destination points coincide")
    return s, r, mu_b - s * r @ mu_a


def apply_similarity(points: np.ndarray, s: float, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``s * points @ R.T + t``."""
    return np.asarray(s * (points @ r.T) + t, dtype=np.float64)


def invert_similarity(points: np.ndarray, s: float, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Undo :func:`apply_similarity`: ``(points - t) @ R / s``."""
    return np.asarray((points - t) @ r / s, dtype=np.float64)


def mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of (K, 3, 3) rotations: the rotation nearest their average matrix."""
    u, _, vt = np.linalg.svd(np.mean(rotations, axis=0))
    d = np.ones(u.shape[0])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    return np.asarray((u * d) @ vt)


def smoothstep(x: float) -> float:
    """0 below 0, 1 above 1, 3x^2 - 2x^3 between (zero slope at both ends)."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def face_size(points: np.ndarray) -> tuple[float, float]:
    """Width and height of the face oval of (478, 3) points, in their units and axes."""
    oval = np.asarray(points, dtype=np.float64)[_OVAL]
    return float(np.ptp(oval[:, 0])), float(np.ptp(oval[:, 1]))


def face_centre(points: np.ndarray) -> np.ndarray:
    """The centroid of the rigid points: the pivot for rotations and the head position."""
    return np.asarray(np.asarray(points, dtype=np.float64)[_RIGID].mean(axis=0))


def similarity_2x3(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The fit of (K, 2) ``src`` onto ``dst`` as a flat affine [a, b, c, d, e, f]
    (x' = a x + b y + c, y' = d x + e y + f); the pure translation of the centroids when
    ``src`` is degenerate."""
    try:
        s, r, t = fit_similarity(src, dst)
    except ValueError:
        shift = np.mean(dst, axis=0) - np.mean(src, axis=0)
        return np.array([1.0, 0.0, shift[0], 0.0, 1.0, shift[1]])
    m = s * r
    return np.array([m[0, 0], m[0, 1], t[0], m[1, 0], m[1, 1], t[1]])
