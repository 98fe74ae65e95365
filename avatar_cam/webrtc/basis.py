"""A person's landmark basis: the parameters the landmark-only codec transmits.

A frame of the avatar's (478, 3) landmarks is described by ``7 + K`` numbers:

- head pose relative to the person's neutral face, fitted on ``mesh.RIGID``:
  rotation vector (3, radians), log scale (1), translation of the face centre (3, in
  inter-ocular distances, IOD);
- expression: K coefficients of the residual (pose undone, neutral subtracted, in IOD)
  in a per-person PCA basis.

The basis is learned at enrollment (``enroll``: PCA of expression residuals from
animate() shapes and tracked footage of the person; a photo is all it needs).

Quantization steps, value limits and the Exp-Golomb orders the codec uses are part of
the basis, so both ends of a call agree on them by construction: the basis crosses
the wire at call start (``to_bytes``/``from_bytes``) and every packet names its first
digest byte.

File: ``calibration/<name>/codec_basis.bin`` (``python -m avatar_cam.webrtc.enroll NAME``
writes it).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .. import mesh
from ..errors import ModelError
from ..types import N_LANDMARKS, check_points

BASIS_FILE = "codec_basis.bin"
BASIS_MAGIC = b"ACB1"
BASIS_FORMAT = 1
MAX_COMPONENTS = 32
MAX_BASIS_BYTES = 8 + 4096 + 4 * 3 * N_LANDMARKS * (2 + MAX_COMPONENTS)
N_POSE = 7
_RIGID = list(mesh.RIGID)
_DIM = 3 * N_LANDMARKS

# Quantization steps. 0.002 rad moves a point one IOD from the pivot by 0.002 IOD, far
# below the codec's 0.015 IOD target; coefficients are in IOD over unit-norm 1434-vectors.
# Measured on tracked footage of the demo identity (K=22): halving every step costs 4
# bytes a packet and gains 0.4 dB of render PSNR, because the error is dominated by the
# expression outside the basis, not by quantization (quantization alone: ~47 dB).
ROT_STEP = 0.002
LOG_SCALE_STEP = 0.002
TRANS_STEP = 0.002  # IOD
COEF_STEP = 0.02  # IOD
ROT_LIMIT = math.pi
LOG_SCALE_LIMIT = 3.0
TRANS_LIMIT = 24.0  # IOD: the face centre may sit far off-centre in a big frame
COEF_LIMIT_FACTOR = 3.0  # of the largest coefficient magnitude seen while learning
MAX_EG_ORDER = 15


def fit_pose(neutral: np.ndarray, points: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity with ``points[RIGID] ~ s * neutral[RIGID] @ R.T + t`` (Umeyama)."""
    a = neutral[_RIGID].astype(np.float64)
    b = points[_RIGID].astype(np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    xa, xb = a - mu_a, b - mu_b
    var_a = float((xa**2).sum()) / len(a)
    u, sv, vt = np.linalg.svd(xb.T @ xa / len(a))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    r = (u * d) @ vt
    s = float((sv * d).sum()) / max(var_a, 1e-12)
    return max(s, 1e-6), r, mu_b - s * r @ mu_a


def rotation_vector(r: np.ndarray) -> np.ndarray:
    vec, _ = cv2.Rodrigues(np.asarray(r, dtype=np.float64))
    return np.asarray(vec, dtype=np.float64).reshape(3)


def rotation_matrix(vec: np.ndarray) -> np.ndarray:
    mat, _ = cv2.Rodrigues(np.asarray(vec, dtype=np.float64).reshape(3, 1))
    return np.asarray(mat, dtype=np.float64)


def eg_length(u: np.ndarray, k: int) -> np.ndarray:
    """Bits of the order-k Exp-Golomb code of non-negative integers ``u``."""
    m = np.asarray(u, dtype=np.int64) + (1 << k)
    return 2 * np.floor(np.log2(m)).astype(np.int64) - k + 1


def zigzag(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def best_order(values: np.ndarray) -> int:
    """The Exp-Golomb order with the fewest mean bits for these signed integers."""
    u = zigzag(values)
    if u.size == 0:
        return 0
    costs = [float(eg_length(u, k).mean()) for k in range(MAX_EG_ORDER + 1)]
    return int(np.argmin(costs))


@dataclass(frozen=True)
class ExpressionBasis:
    """Everything both ends need to turn landmarks into codec parameters and back."""

    neutral: np.ndarray  # (478, 3) float32, crop pixels of the person
    size: tuple[int, int]  # (w, h) of the crop the landmarks live in
    mean: np.ndarray  # (1434,) float32 mean residual, IOD
    components: np.ndarray  # (K, 1434) float32, orthonormal rows
    steps: np.ndarray  # (7 + K,) float64 quantization steps
    limits: np.ndarray  # (7 + K,) int64: |q| must not exceed these
    order_key: np.ndarray  # (7 + K,) int64 Exp-Golomb orders, absolute values
    order_delta: np.ndarray  # (7 + K,) int64 Exp-Golomb orders, frame-to-frame deltas
    source: str = "animate"
    _cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    @property
    def iod(self) -> float:
        return mesh.inter_ocular(self.neutral)

    @property
    def centre(self) -> np.ndarray:
        return np.asarray(self.neutral[_RIGID].astype(np.float64).mean(axis=0))

    # -- landmarks <-> parameters ------------------------------------------------------

    def _pose_and_residual(self, points: np.ndarray
                           ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(scale, rotation, translation) of ``points`` on the neutral, fitted on the rigid
        points, and the (1434,) residual left with that pose undone (neutral subtracted,
        in IOD)."""
        check_points(points)
        n = self.neutral.astype(np.float64)
        p = points.astype(np.float64)
        s, r, t = fit_pose(n, p)
        return s, r, t, ((p - t) @ r / s - n).reshape(-1) / self.iod

    def analyze(self, points: np.ndarray) -> np.ndarray:
        """(7 + K,) float64 parameters of (478, 3) landmarks in the person's crop pixels."""
        s, r, t, residual = self._pose_and_residual(points)
        c = self.centre
        # The pivot is the neutral's rigid centre: translation is then the head's shift.
        shift = s * (r @ c) + t - c
        coeffs = self.components.astype(np.float64) @ (residual - self.mean)
        pose = np.concatenate([rotation_vector(r), [math.log(s)], shift / self.iod])
        return np.concatenate([pose, coeffs])

    def synthesize(self, params: np.ndarray) -> np.ndarray:
        """(478, 3) float32 landmarks for (7 + K,) parameters (exact inverse of analyze
        up to the expression that lies outside the basis)."""
        x = np.asarray(params, dtype=np.float64)
        residual = (self.mean + x[N_POSE:] @ self.components.astype(np.float64)) * self.iod
        shape = self.neutral.astype(np.float64) + residual.reshape(N_LANDMARKS, 3)
        c = self.centre
        s = math.exp(x[3])
        r = rotation_matrix(x[:3])
        out = s * ((shape - c) @ r.T) + c + x[4:7] * self.iod
        return out.astype(np.float32)

    def recentred(self, rest: np.ndarray) -> ExpressionBasis:
        """This basis coding expressions about ``rest`` instead of about the neutral.

        The mean residual moves by ``rest``'s own (pose undone), so a sender whose adapter
        rests on ``rest`` (the photo's smile or open mouth taken out: live.adapter_for)
        spends no coefficients on holding that offset, which the components, learned
        about the neutral, describe poorly. Components, steps and limits are kept; the
        bytes change, so the digest (and every packet's tag) does too: the receiver
        decodes with the bytes it is sent. Round-tripped through its bytes, as
        ``basis_for`` returns it."""
        offset = self._pose_and_residual(rest)[3]
        moved = replace(self, mean=(self.mean + offset).astype(np.float32), _cache={})
        return ExpressionBasis.from_bytes(moved.to_bytes())

    def quantize(self, params: np.ndarray) -> tuple[np.ndarray, int]:
        """Integers (7 + K,) int64 within the limits, and how many values were clamped."""
        x = np.asarray(params, dtype=np.float64)
        q = np.rint(np.nan_to_num(x / self.steps)).astype(np.int64)
        clamped = np.clip(q, -self.limits, self.limits)
        return clamped, int((clamped != q).sum())

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, dtype=np.float64) * self.steps

    # -- serialization -----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        cached = self._cache.get("bytes")
        if isinstance(cached, bytes):
            return cached
        header = json.dumps({
            "format": BASIS_FORMAT, "k": self.k, "size": list(self.size),
            "source": self.source, "steps": [float(v) for v in self.steps],
            "limits": [int(v) for v in self.limits],
            "order_key": [int(v) for v in self.order_key],
            "order_delta": [int(v) for v in self.order_delta],
        }, sort_keys=True).encode()
        arrays = [self.neutral.reshape(-1), self.mean, self.components.reshape(-1)]
        body = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays)
        data = BASIS_MAGIC + struct.pack("<I", len(header)) + header + body
        self._cache["bytes"] = data
        return data

    @property
    def digest(self) -> str:
        """sha256 (hex) of ``to_bytes()``: names this exact basis."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def tag(self) -> int:
        """First digest byte: every packet carries it, so a stale basis is detected."""
        return int(self.digest[:2], 16)

    @classmethod
    def from_bytes(cls, data: bytes) -> ExpressionBasis:
        """Parse and validate untrusted bytes; ValueError naming what is wrong."""
        if len(data) > MAX_BASIS_BYTES or len(data) < 8 or data[:4] != BASIS_MAGIC:
            raise ValueError("not a landmark basis (bad magic or size)")
        (hlen,) = struct.unpack("<I", data[4:8])
        if hlen > 4096 or 8 + hlen > len(data):
            raise ValueError("landmark basis header length out of range")
        try:
            meta = json.loads(data[8:8 + hlen].decode())
            if not isinstance(meta, dict) or meta.get("format") != BASIS_FORMAT:
                raise ValueError(f"unsupported basis format {meta.get('format')!r}")
            k = int(meta["k"])
            size = (int(meta["size"][0]), int(meta["size"][1]))
            vectors = {name: np.asarray(meta[name], dtype=np.float64)
                       for name in ("steps", "limits", "order_key", "order_delta")}
            source = str(meta["source"])[:64]
        except (KeyError, TypeError, IndexError, UnicodeDecodeError, RecursionError,
                OverflowError) as exc:
            raise ValueError(f"malformed basis header: {exc}") from exc
        if not 1 <= k <= MAX_COMPONENTS or not all(16 <= v <= 8192 for v in size):
            raise ValueError("basis dimensions out of range")
        n = N_POSE + k
        body = data[8 + hlen:]
        if len(body) != 4 * _DIM * (2 + k):
            raise ValueError("landmark basis body has the wrong length")
        flat = np.frombuffer(body, dtype="<f4").astype(np.float32)
        if not np.isfinite(flat).all():
            raise ValueError("landmark basis holds non-finite numbers")
        for name, vec in vectors.items():
            if vec.shape != (n,) or not np.isfinite(vec).all():
                raise ValueError(f"basis {name} must hold {n} finite numbers")
        steps, limits = vectors["steps"], vectors["limits"]
        orders = [vectors["order_key"], vectors["order_delta"]]
        if (steps <= 1e-6).any() or (steps > 10).any() or (limits < 1).any() \
                or (limits > 1 << 20).any() or any(((o < 0) | (o > MAX_EG_ORDER)).any()
                                                   for o in orders):
            raise ValueError("basis steps, limits or orders out of range")
        neutral = flat[:_DIM].reshape(N_LANDMARKS, 3).copy()
        if mesh.inter_ocular(neutral) < 1.0:
            raise ValueError("basis neutral face is degenerate")
        return cls(neutral, size, flat[_DIM:2 * _DIM].copy(),
                   flat[2 * _DIM:].reshape(k, _DIM).copy(), steps,
                   limits.astype(np.int64), orders[0].astype(np.int64),
                   orders[1].astype(np.int64), source)


# -- files -----------------------------------------------------------------------------

def save_basis(basis: ExpressionBasis, folder: Path) -> Path:
    """Write ``folder/codec_basis.bin`` atomically; enrollment calls this."""
    path = Path(folder) / BASIS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(basis.to_bytes())
    tmp.replace(path)
    return path


def load_basis(folder: Path) -> ExpressionBasis | None:
    """The basis saved in ``folder``, None if there is none; ModelError if damaged."""
    path = Path(folder) / BASIS_FILE
    if not path.is_file():
        return None
    try:
        return ExpressionBasis.from_bytes(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelError(f"landmark basis {path} is damaged: {exc}",
                         f"delete it; it is relearned on the next call ({path})") from exc
