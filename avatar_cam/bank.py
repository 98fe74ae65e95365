"""The reference bank: a few of the enrollment clip's real frames, chosen to cover it.

Rendering everything from one photo invents teeth, closed eyes and a turned head. The
bank keeps up to ``MAX_FRAMES`` real frames of the person (crops and their landmarks) so
that render/bank.py can warp the nearest ones instead.

Each frame is described by ``FEATURES``:

- pose (degrees, relative to the photo frame: a 3D similarity fitted on mesh.RIGID from
  the photo's landmarks to the frame's, ``pose.angles`` of its rotation): ``yaw``
  positive when the subject turns to their left (MediaPipe's own sign is the opposite),
  ``pitch`` positive looking down, ``roll`` positive tilting towards the subject's left;
- expression, measured on the landmarks turned back to the photo's pose and scale (so a
  turned head does not read as a narrower mouth), over the photo's inter-ocular
  distance: ``mouth_open`` (largest inner-lip gap), ``mouth_width`` (inner corners; a
  smile widens it), and ``eye_right`` / ``eye_left`` (lid gap over eye width, about 0.3
  open, under 0.1 shut);
- scene: ``light`` (mean L of the crop in Lab, 0-1) and ``tint`` (mean b - 0.5: warm or
  cold light), so that frames of other scenes are kept too.

Selection (``select_bank``): the features are standardized (divided by their spread over
the clip, never less than ``FLOOR``, a difference the tracker's noise does not make);
the photo frame comes first, then farthest-point sampling; a frame within ``DUPLICATE``
of one already chosen (in ``FLOOR`` units) is never taken, so a clip with little variety
gives a small bank. What the bank still lacks (``missing``) is logged and returned:
the prompts of a guided capture.

On disk (``save_bank`` / ``load_bank``), inside the person folder and so covered by its
signature: ``bank/NN.png`` (the crops, BGR), ``bank/points.npy`` ((N, 478, 3) float32 in
crop pixels) and ``bank/bank.json`` (format, size, count, feature names, values and
scales, source frame numbers, what is missing). ``load_bank`` treats it all as untrusted.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from . import geometry, mesh, pose
from .errors import ModelError
from .render.mouth import mouth_gap, mouth_width
from .types import N_LANDMARKS

log = logging.getLogger("avatar_cam")

BANK_DIR = "bank"
BANK_FORMAT = 1
MAX_FRAMES = 16
POSE = ("yaw", "pitch", "roll")
EXPRESSION = ("mouth_open", "mouth_width", "eye_right", "eye_left")
SCENE = ("light", "tint")
FEATURES = POSE + EXPRESSION + SCENE
N_SHAPE = len(POSE) + len(EXPRESSION)  # what landmarks alone tell (render/bank.py matches)
FLOOR = np.array([4.0, 3.0, 3.0, 0.04, 0.03, 0.04, 0.04, 0.03, 0.02])
SCENE_WEIGHT = 0.5  # the two scene features count half in the standardized distance
DUPLICATE = 1.0  # in FLOOR units: closer than this to a chosen frame is a near duplicate

# What the camera asks a person to do, one wording for the guided capture
# (calibrate/guide.py) and the liveness check (honesty/liveness.py).
ASK = {
    "center": "Look straight at the camera",
    "turn_left": "Slowly turn your head to your left",
    "turn_right": "Slowly turn your head to your right",
    "look_up": "Look up",
    "look_down": "Look down",
    "tilt": "Tilt your head towards a shoulder",
    "open_mouth": "Open your mouth wide",
    "smile": "Smile",
    "close_eyes": "Close your eyes for a second",
    "blink": "Blink once",
    "talk": "Talk for a few seconds (count aloud)",
}


class Need(NamedTuple):
    """One thing a bank should show: ``feature`` past ``threshold`` on ``side`` (+1, -1;
    0: either way), what it ``lacks`` when it does not, and the ``action`` (a key of ASK)
    that records it."""

    feature: str
    side: int
    threshold: float
    lacks: str
    action: str

    @property
    def text(self) -> str:
        """What ``missing`` says: the lack and the prompt that fills it."""
        ask = ASK[self.action]
        return f"{self.lacks}: {ask[0].lower()}{ask[1:]}"


# What a bank lacks: pose and mouth width relative to the photo, mouth opening and eyes
# (the more closed of the two) absolute.
TURN_DEG, NOD_DEG, TILT_DEG = 12.0, 8.0, 8.0
COVERAGE = (
    Need("yaw", +1, TURN_DEG, "no head turn to the left", "turn_left"),
    Need("yaw", -1, TURN_DEG, "no head turn to the right", "turn_right"),
    Need("pitch", -1, NOD_DEG, "no look up", "look_up"),
    Need("pitch", +1, NOD_DEG, "no look down", "look_down"),
    Need("roll", 0, TILT_DEG, "no head tilt", "tilt"),
    Need("mouth_open", +1, 0.15, "no frame with the mouth open", "open_mouth"),
    Need("mouth_width", +1, 0.05, "no smile", "smile"),
    Need("eyes", -1, 0.15, "no frame with the eyes closed", "close_eyes"),
)

_RIGID = list(mesh.RIGID)
_RIGHT_EYE = (159, 145, 33, 133)  # mid upper lid, mid lower lid, corners
_LEFT_EYE = (386, 374, 263, 362)


def _eye(p: np.ndarray, ids: tuple[int, int, int, int]) -> float:
    top, bottom, outer, inner = ids
    width = float(np.linalg.norm(p[outer] - p[inner]))
    return float(np.linalg.norm(p[top] - p[bottom])) / max(width, 1e-6)


def shape_features(points: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(N_SHAPE,) float64 pose and expression features of (478, 3) ``points`` against
    (478, 3) ``neutral`` (the photo frame's landmarks; any pixel scale for either)."""
    src = np.asarray(neutral, dtype=np.float64)
    dst = np.asarray(points, dtype=np.float64)
    s, r, t = geometry.fit_similarity(src[_RIGID], dst[_RIGID])
    yaw, pitch, roll = pose.angles(r)
    front = geometry.invert_similarity(dst, s, r, t)[:, :2]  # photo's pose and scale
    iod = max(mesh.inter_ocular(src), 1e-6)
    return np.array([-yaw, pitch, roll, mouth_gap(front) / iod, mouth_width(front) / iod,
                     _eye(front, _RIGHT_EYE), _eye(front, _LEFT_EYE)])


def scene_features(crop: np.ndarray) -> np.ndarray:
    """(2,) float64: the crop's mean lightness and warmth (Lab L and b, 0-1 scale)."""
    small = cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float64) / 255.0
    return np.array([lab[:, 0].mean(), lab[:, 2].mean() - 0.5])


def features(crops: np.ndarray, points: np.ndarray, photo: int) -> np.ndarray:
    """(N, len(FEATURES)) float64 features of each frame, pose relative to ``photo``."""
    neutral = points[photo]
    return np.stack([np.concatenate([shape_features(p, neutral), scene_features(c)])
                     for c, p in zip(crops, points, strict=True)])


def spread(values: np.ndarray) -> np.ndarray:
    """The standardizing scale of each feature: its spread, never under FLOOR."""
    return np.maximum(values.std(axis=0), FLOOR)


def weights() -> np.ndarray:
    """Per-feature weight in the standardized distance (scene features count less)."""
    w = np.ones(len(FEATURES))
    w[N_SHAPE:] = SCENE_WEIGHT
    return w


def covered(values: np.ndarray) -> tuple[bool, ...]:
    """Which COVERAGE needs (N, k) ``values`` show, one flag each; row 0 is the photo
    and the columns are FEATURES in order, ``k >= N_SHAPE`` (the scene is not needed)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0 or values.shape[1] < N_SHAPE:
        raise ValueError(f"values must be (N >= 1, >= {N_SHAPE}) features, got "
                         f"{values.shape}")
    col = {name: values[:, i] - values[0, i] for i, name in enumerate(FEATURES[:N_SHAPE])}
    col["mouth_open"] = values[:, FEATURES.index("mouth_open")]  # absolute, not vs the photo
    col["eyes"] = np.minimum(values[:, FEATURES.index("eye_right")],
                             values[:, FEATURES.index("eye_left")])
    out = []
    for need in COVERAGE:
        v = col[need.feature]
        if need.feature == "eyes":
            ok = bool((v < need.threshold).any())
        elif need.side == 0:
            ok = bool((np.abs(v) >= need.threshold).any())
        else:
            ok = bool((need.side * v >= need.threshold).any())
        out.append(ok)
    return tuple(out)


def lacking(values: np.ndarray) -> list[Need]:
    """The COVERAGE needs (N, k) ``values`` (row 0: the photo) do not show, in order."""
    return [need for need, ok in zip(COVERAGE, covered(values), strict=True) if not ok]


def missing(values: np.ndarray) -> list[str]:
    """What (N, len(FEATURES)) ``values`` (row 0: the photo) do not show, as prompts."""
    return [need.text for need in lacking(values)]


@dataclass(frozen=True)
class Selection:
    """What ``select_bank`` chose: ``indices`` into its input (the photo first),
    ``features`` (len(indices), len(FEATURES)) of those frames, ``scale`` the
    standardizing spread, and ``missing`` what the chosen frames do not show."""

    indices: np.ndarray
    features: np.ndarray
    scale: np.ndarray
    missing: list[str]


def select_bank(crops: np.ndarray, points: np.ndarray, max_frames: int = MAX_FRAMES,
                photo: int = 0) -> Selection:
    """Choose up to ``max_frames`` of (N, S, S, 3) uint8 ``crops`` with (N, 478, 3)
    ``points`` (crop pixels) covering their poses, expressions and scenes: ``photo`` (the
    enrollment photo's index) first, then farthest-point sampling on standardized
    features, near duplicates skipped. Deterministic. Logs a warning naming what to
    record when the clip lacks variety."""
    n = len(crops)
    if n == 0 or len(points) != n:
        raise ValueError(f"need as many crops as landmark sets (> 0), got {n} and {len(points)}")
    if points.shape[1:] != (N_LANDMARKS, 3):
        raise ValueError(f"points must be (N, {N_LANDMARKS}, 3), got {points.shape}")
    if not 1 <= max_frames <= MAX_FRAMES:
        raise ValueError(f"max_frames must be in [1, {MAX_FRAMES}], got {max_frames}")
    if not 0 <= photo < n:
        raise ValueError(f"photo index {photo} is outside the {n} frames")
    values = features(crops, points, photo)
    scale = spread(values)
    z = values / scale * weights()
    a = values / FLOOR * weights()
    chosen = [photo]
    far = np.linalg.norm(z - z[photo], axis=1)  # to the nearest chosen, standardized
    near = np.linalg.norm(a - a[photo], axis=1)  # the same in FLOOR units
    while len(chosen) < max_frames:
        fresh = near >= DUPLICATE
        if not fresh.any():
            break
        i = int(np.argmax(np.where(fresh, far, -1.0)))
        chosen.append(i)
        far = np.minimum(far, np.linalg.norm(z - z[i], axis=1))
        near = np.minimum(near, np.linalg.norm(a - a[i], axis=1))
    idx = np.array(chosen, dtype=np.intp)
    lacks = missing(values[idx])
    if lacks:
        log.warning("the clip shows too little for the reference bank (%d frame(s) kept): "
                    "%s", len(idx), "; ".join(lacks))
    return Selection(idx, values[idx], scale, lacks)


@dataclass(frozen=True)
class Bank:
    """crops (N, S, S, 3) uint8 BGR; points (N, 478, 3) float32 in crop pixels; features
    (N, len(FEATURES)) float32 (row 0 is the photo frame); scale (len(FEATURES),)
    float32 standardizing spread; frames: the source frame numbers (information)."""

    crops: np.ndarray
    points: np.ndarray
    features: np.ndarray
    scale: np.ndarray
    frames: tuple[int, ...] = ()
    missing: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    def __len__(self) -> int:
        return len(self.crops)


def build_bank(crops: np.ndarray, points: np.ndarray, photo: int = 0,
               frames: np.ndarray | None = None, max_frames: int = MAX_FRAMES) -> Bank:
    """``select_bank`` and the Bank of the chosen frames (``frames``: source numbers)."""
    sel = select_bank(crops, points, max_frames, photo)
    src = tuple(int(f) for f in (frames[sel.indices] if frames is not None else sel.indices))
    return Bank(np.ascontiguousarray(crops[sel.indices]),
                points[sel.indices].astype(np.float32), sel.features.astype(np.float32),
                sel.scale.astype(np.float32), src, tuple(sel.missing))


def save_bank(bank: Bank, folder: Path) -> Path:
    """Write ``folder/bank/`` (replacing one there); returns that folder."""
    out = Path(folder) / BANK_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for i, crop in enumerate(bank.crops):
        if not cv2.imwrite(str(out / f"{i:02d}.png"), crop):
            raise OSError(f"cannot write {out / f'{i:02d}.png'}")
    np.save(out / "points.npy", bank.points.astype(np.float32), allow_pickle=False)
    meta = {"format": BANK_FORMAT, "size": bank.size, "count": len(bank),
            "features": list(FEATURES),
            "values": np.round(bank.features.astype(np.float64), 5).tolist(),
            "scale": np.round(bank.scale.astype(np.float64), 5).tolist(),
            "frames": list(bank.frames), "missing": list(bank.missing)}
    (out / "bank.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def _array(meta: dict[str, Any], key: str, shape: tuple[int, ...], where: Path) -> np.ndarray:
    try:
        a = np.asarray(meta[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {key!r} is missing or not numbers") from exc
    if a.shape != shape or not np.isfinite(a).all():
        raise ValueError(f"{where}: {key!r} must be {shape} finite numbers, got {a.shape}")
    return a


def _check(folder: Path, crop_size: int | None) -> Bank:
    where = folder / "bank.json"
    if not where.is_file():
        raise ValueError(f"{where} is missing")
    try:
        meta = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} is not readable JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{where}: unsupported bank format {got!r} (want {BANK_FORMAT})")
    size, count = meta.get("size"), meta.get("count")
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 2048:
        raise ValueError(f"{where}: size must be an integer in [32, 2048], got {size!r}")
    if crop_size is not None and size != crop_size:
        raise ValueError(f"{where}: the bank's frames are {size}x{size} px but the person's "
                         f"crop is {crop_size}x{crop_size} (a bank of another resolution)")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FRAMES:
        raise ValueError(f"{where}: count must be 1 to {MAX_FRAMES} frames, got {count!r}")
    if meta.get("features") != list(FEATURES):
        raise ValueError(f"{where}: features {meta.get('features')!r} are not {list(FEATURES)}")
    values = _array(meta, "values", (count, len(FEATURES)), where)
    scale = _array(meta, "scale", (len(FEATURES),), where)
    if (scale <= 0).any():
        raise ValueError(f"{where}: 'scale' must be positive")
    frames, lacks = meta.get("frames", []), meta.get("missing", [])
    if not isinstance(frames, list) or not all(isinstance(f, int) for f in frames) \
            or not isinstance(lacks, list) or not all(isinstance(m, str) for m in lacks):
        raise ValueError(f"{where}: 'frames' must be integers and 'missing' strings")
    expected = {f"{i:02d}.png" for i in range(count)}
    extra = sorted(p.name for p in folder.glob("*.png") if p.name not in expected)
    if extra:
        raise ValueError(f"{folder}: {', '.join(extra)} not listed in bank.json "
                         f"(count {count})")
    crops = []
    for i in range(count):
        path = folder / f"{i:02d}.png"
        img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if img is None:
            raise ValueError(f"bank frame {path} is missing or not an image")
        if img.shape != (size, size, 3):
            raise ValueError(f"bank frame {path} is {img.shape[1]}x{img.shape[0]} px, "
                             f"not {size}x{size}")
        crops.append(img)
    path = folder / "points.npy"
    try:
        points = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is missing or not a numpy array ({exc})") from exc
    if points.shape != (count, N_LANDMARKS, 3) or points.dtype != np.float32:
        raise ValueError(f"{path} must be ({count}, {N_LANDMARKS}, 3) float32, got "
                         f"{points.shape} {points.dtype}")
    if not np.isfinite(points).all():
        raise ValueError(f"{path} holds NaN or infinite numbers")
    return Bank(np.stack(crops), points, values.astype(np.float32), scale.astype(np.float32),
                tuple(frames), tuple(lacks))


def load_bank(folder: Path, crop_size: int | None = None) -> Bank | None:
    """The bank saved in person folder ``folder``, None if it has none; ModelError naming
    the file and the fix when it is damaged or does not fit (``crop_size``: the person's
    crop side, which the bank's frames must have)."""
    bank = Path(folder) / BANK_DIR
    if not bank.exists():
        return None
    try:
        if not bank.is_dir():
            raise ValueError(f"{bank} is not a folder")
        return _check(bank, crop_size)
    except ValueError as exc:
        name = Path(folder).name
        raise ModelError(f"reference bank of {name!r} is damaged: {exc}",
                         f"enroll again from a clip: avatar-cam calibrate {name} --video "
                         "CLIP --consent ...") from exc
