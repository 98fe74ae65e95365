"""What drive.py measures on each frame, and how it sums a pair up (part of drive.py).

Every figure comes from networks the pipeline does not use to make the frame:
- MediaPipe face mesh, a fresh ``MediaPipeTracker(smoothing=None)`` per video (video
  mode, no smoothing), once on the driver's frames and once on the output frames;
- dlib's face-recognition ResNet (``face_recognition_models``, CC0; ``dlib-bin``), for
  identity only, on every ``identity_every``-th frame (it takes ~70-90 ms a face here).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avatar_cam import mesh
from avatar_cam.render.mouth import mouth_gap, mouth_width

# Thresholds (stated in drive.json).
BLINK_BELOW = 0.15  # driver eye_opening under this: a blink (open eyes ~0.3, closed < 0.1)
OPEN_ABOVE = 0.22  # driver eye_opening over this: eyes open (the reference for blinks)
EYE_TOLERANCE = 0.1  # target: the output's eye_opening this close to the driver's on blinks
MOUTH_CLOSED_BELOW = 0.02  # driver inner-lip gap / mouth width under this: mouth closed
STILL_BELOW = 0.01  # driver head-centre motion under this many face widths a frame: still
EDGE_GAP, EDGE_BAND = 3, 8  # edge measure: reference steps 3-8 px off the square's side
EDGE_MIN_SIDE = 16  # sides with fewer pixels inside the frame are skipped
EDGE_NULL_Q = 95  # a frame's edge shows: its ratio over this percentile of the null
EDGE_SHARE_MAX = 0.10  # target: at most this share of frames over it (5% when no edge)
SAME_PERSON = 0.6  # dlib's own rule: descriptors closer than this are the same person


# -- per-face scalars ---------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """What one frame's MediaPipe landmarks say (all in that frame's pixels)."""

    inside: bool  # all 478 landmarks inside the frame
    eye: float  # mesh.eye_opening
    mouth: float  # inner-lip gap / mouth width (render/mouth.py)
    centre: tuple[float, float]  # mean of the rigid points (mesh.RIGID)
    width: float  # x extent of the face oval
    box: tuple[float, float, float, float]  # landmarks' bounding box (dlib's rectangle)


def face_of(points: np.ndarray, size: tuple[int, int]) -> Face:
    """``points``: (478, 3) in pixels of a ``size`` = (w, h) frame."""
    w, h = size
    xy = points[:, :2].astype(np.float64)
    inside = bool((xy[:, 0] >= 0).all() and (xy[:, 0] < w).all()
                  and (xy[:, 1] >= 0).all() and (xy[:, 1] < h).all())
    c = xy[list(mesh.RIGID)].mean(0)
    oval = xy[list(mesh.FACE_OVAL), 0]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    return Face(inside, mesh.eye_opening(points), mouth_gap(points) / max(mouth_width(points),
                1e-6), (float(c[0]), float(c[1])), float(np.ptp(oval)),
                (float(x0), float(y0), float(x1), float(y1)))


# -- identity (dlib) ----------------------------------------------------------------------


def dlib_models() -> tuple[Path | None, str]:
    """(folder of face_recognition_models' .dat files, '') or (None, why not). The package
    is not imported: its __init__ needs pkg_resources, which Python 3.12+ setuptools lack."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return None, ("dlib-bin is not installed: identity not measured "
                      "(pip install -e '.[bench]')")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None, ("face-recognition-models is not installed: identity not measured "
                      "(pip install -e '.[bench]')")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    need = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
    missing = [n for n in need if not (folder / n).is_file()]
    if missing:
        return None, f"face-recognition-models lacks {', '.join(missing)} in {folder}"
    return folder, ""


def dlib_version() -> str:
    import dlib

    return str(getattr(dlib, "__version__", "?"))


class Identity:
    """dlib's 128-d face descriptor (ResNet v1) of a face given by its landmarks' box: the
    5-point shape predictor aligns the chip inside that box, then the network embeds it."""

    def __init__(self, folder: Path) -> None:
        import dlib

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat"))

    def describe(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """(128,) float64 descriptor of the face in ``box`` of the (H, W, 3) BGR image."""
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._shape(rgb, self._dlib.rectangle(x0, y0, x1, y1))
        return np.asarray(self._net.compute_face_descriptor(rgb, shape), np.float64)


# -- the render square's edge -------------------------------------------------------------


def edge_ratio(image: np.ndarray, box: tuple[int, int, int, int],
               gap: int = EDGE_GAP, band: int = EDGE_BAND) -> float | None:
    """How much the square ``box`` = (x0, y0, x1, y1) (x1, y1 exclusive) shows as an edge.

    For each side, along the part of it inside the frame: the mean absolute grey-level
    step between the line of pixels just inside the square and the line just outside,
    over the mean of the same step between neighbouring lines ``gap`` to ``band`` pixels
    further in and further out (2 * (band - gap + 1) reference steps). Natural image
    gradients make both alike: a ratio near 1 is no edge; a pasted square's border is a
    step only at the boundary (ratio >> 1). The frame's value is its worst side; None
    when no side can be measured (sides whose lines leave the frame, or with fewer than
    EDGE_MIN_SIDE pixels inside it, are skipped).
    """
    g = image.astype(np.float32).mean(axis=2)
    h, w = g.shape
    x0, y0, x1, y1 = box
    worst: float | None = None
    # (line index of the first pixel inside, direction towards outside, horizontal?)
    for at, out, horizontal in ((y0, -1, True), (y1 - 1, 1, True),
                                (x0, -1, False), (x1 - 1, 1, False)):
        span = (max(x0, 0), min(x1, w)) if horizontal else (max(y0, 0), min(y1, h))
        limit = h if horizontal else w
        ends = (at - out * band, at + out * (band + 1))  # the farthest lines used
        if span[1] - span[0] < EDGE_MIN_SIDE or min(ends) < 0 or max(ends) >= limit:
            continue

        def line(i: int, span: tuple[int, int] = span, horizontal: bool = horizontal
                 ) -> np.ndarray:
            return g[i, span[0]:span[1]] if horizontal else g[span[0]:span[1], i]

        def step(i: int, out: int = out) -> float:  # between line i and its outer neighbour
            return float(np.abs(line(i) - line(i + out)).mean())

        boundary = step(at)
        reference = float(np.mean([step(at + s * out * k) for k in range(gap, band + 1)
                                   for s in (-1, 1)]))
        ratio = boundary / max(reference, 0.5)  # 0.5 grey level: flat areas are not edges
        worst = ratio if worst is None else max(worst, ratio)
    return worst


def edge_check(image: np.ndarray) -> dict[str, float | None]:
    """The measure on a known case (a real frame ``image``): a square of it, brightened
    by 20 grey levels, pasted hard, and the same square feathered in over 8% of its side."""
    h, w = image.shape[:2]
    side = int(0.6 * h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    box = (x0, y0, x0 + side, y0 + side)
    patch = np.clip(image[y0:y0 + side, x0:x0 + side].astype(np.int16) + 20, 0, 255)
    hard = image.copy()
    hard[y0:y0 + side, x0:x0 + side] = patch.astype(np.uint8)
    ramp = np.clip(np.minimum(np.arange(side), np.arange(side)[::-1]) / (0.08 * side), 0, 1)
    mask = np.minimum(ramp[:, None], ramp[None, :])[:, :, None]
    soft = image.astype(np.float32).copy()
    soft[y0:y0 + side, x0:x0 + side] = (mask * patch + (1 - mask)
                                        * image[y0:y0 + side, x0:x0 + side])
    return {"untouched": edge_ratio(image, box), "hard_paste": edge_ratio(hard, box),
            "feathered_8pct": edge_ratio(soft.astype(np.uint8), box)}


def edge_null(images: list[np.ndarray], boxes: int = 30, seed: int = 0) -> dict[str, Any]:
    """The edge measure where there is no edge: random squares (a fifth to the full
    height of the frame, overhanging it by up to 100 px) on untouched real frames. Its
    EDGE_NULL_Q percentile is the level over which an output frame's square shows."""
    rng = np.random.default_rng(seed)
    r: list[float] = []
    for image in images:
        h, w = image.shape[:2]
        for _ in range(boxes):
            side = int(rng.integers(h // 5, h))
            x, y = int(rng.integers(-100, w - side + 100)), int(rng.integers(-100, h - side + 100))
            v = edge_ratio(image, (x, y, x + side, y + side))
            if v is not None:
                r.append(v)
    q = np.percentile(r, [50, EDGE_NULL_Q, 99]) if r else [np.nan] * 3
    return {"frames": len(images), "squares": len(r), "p50": _r(q[0], 3),
            f"p{EDGE_NULL_Q}": _r(q[1], 3), "p99": _r(q[2], 3)}


# -- per-video records --------------------------------------------------------------------


@dataclass
class Track:
    """Per frame of one video (driver or output): the MediaPipe measures, and the dlib
    descriptor on sampled frames."""

    faces: list[Face | None] = field(default_factory=list)
    descriptors: dict[int, np.ndarray] = field(default_factory=dict)

    def series(self, name: str) -> np.ndarray:
        return np.array([np.nan if f is None else getattr(f, name) for f in self.faces])

    def motion(self) -> np.ndarray:
        """Head-centre motion from the previous frame in face widths (NaN without a face in
        either frame); element 0 is NaN."""
        out = np.full(len(self.faces), np.nan)
        for i in range(1, len(self.faces)):
            a, b = self.faces[i - 1], self.faces[i]
            if a is not None and b is not None:
                d = np.hypot(b.centre[0] - a.centre[0], b.centre[1] - a.centre[1])
                out[i] = d / max(b.width, 1e-6)
        return out


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def _mean(a: np.ndarray) -> float | None:
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else None


def summarize(driver: Track, out: Track, avatar_descriptor: np.ndarray | None,
              edges: list[float | None], boxes: int, edge_level: float) -> dict[str, Any]:
    """One pair's figures from the driver's and the output's per-frame records."""
    n = len(out.faces)
    found = np.array([f is not None for f in out.faces])
    inside = np.array([f is not None and f.inside for f in out.faces])
    res: dict[str, Any] = {"frames": n, "face_found": _r(found.mean()),
                           "face_inside": _r(inside.mean())}
    # identity
    if avatar_descriptor is not None:
        closer, d_av, d_dr, skipped = [], [], [], 0
        for i, dd in driver.descriptors.items():
            if i >= n:
                continue
            od = out.descriptors.get(i)
            if od is None:  # no face in the output: counted against the avatar
                closer.append(False)
                continue
            a = float(np.linalg.norm(od - avatar_descriptor))
            b = float(np.linalg.norm(od - dd))
            d_av.append(a)
            d_dr.append(b)
            closer.append(a < b)
        skipped = sum(1 for i in range(0, n) if i in out.descriptors
                      and i not in driver.descriptors)
        res["identity"] = {
            "judged_frames": len(closer),
            "closer_to_avatar": _r(float(np.mean(closer))) if closer else None,
            "mean_distance_to_avatar": _r(float(np.mean(d_av))) if d_av else None,
            "mean_distance_to_driver": _r(float(np.mean(d_dr))) if d_dr else None,
            "same_person_as_avatar": _r(float(np.mean(np.array(d_av) < SAME_PERSON)))
            if d_av else None,
            "same_person_as_driver": _r(float(np.mean(np.array(d_dr) < SAME_PERSON)))
            if d_dr else None,
            "frames_without_driver_face": skipped}
    # eyes on the driver's blinks
    d_eye, o_eye = driver.series("eye")[:n], out.series("eye")
    blink, open_ = d_eye < BLINK_BELOW, d_eye > OPEN_ABOVE
    res["blinks"] = {"driver_frames": int(blink.sum()),
                     "driver_eye_on_blinks": _r(_mean(d_eye[blink])),
                     "driver_eye_open": _r(_mean(d_eye[open_])),
                     "output_eye_on_blinks": _r(_mean(o_eye[blink])),
                     "output_eye_when_driver_open": _r(_mean(o_eye[open_])),
                     # the target: within EYE_TOLERANCE of the driver's, per frame
                     "within_tolerance": _r(_mean(
                         (np.abs(o_eye[blink] - d_eye[blink]) <= EYE_TOLERANCE)
                         .astype(np.float64)))}
    # mouth when the driver's is closed
    d_m, o_m = driver.series("mouth")[:n], out.series("mouth")
    closed = d_m < MOUTH_CLOSED_BELOW
    o_closed = o_m[closed]
    o_closed = o_closed[np.isfinite(o_closed)]
    res["mouth_closed"] = {"driver_frames": int(closed.sum()),
                           "driver_mouth": _r(_mean(d_m[closed])),
                           "output_mouth": _r(_mean(o_m[closed])),
                           "output_mouth_p95": _r(float(np.percentile(o_closed, 95)))
                           if len(o_closed) else None,
                           "output_open_share": _r(float((o_closed >= MOUTH_CLOSED_BELOW
                                                          ).mean())) if len(o_closed) else None}
    # jitter while the driver holds still
    d_mv, o_mv = driver.motion()[:n], out.motion()
    still = (d_mv < STILL_BELOW) & np.isfinite(o_mv)
    dm, om = _mean(d_mv[still]), _mean(o_mv[still])
    res["jitter_still"] = {"frames": int(still.sum()), "driver": _r(dm, 5), "output": _r(om, 5),
                           "output_p95": _r(float(np.percentile(o_mv[still], 95)), 5)
                           if still.any() else None,
                           "output_over_driver": _r(om / dm, 3) if om is not None and dm
                           else None}
    # the render square's edge
    e = np.array([v for v in edges if v is not None], np.float64)
    res["edge"] = {"frames_with_box": boxes, "frames_measured": len(e),
                   "median_ratio": _r(float(np.median(e)), 3) if len(e) else None,
                   "p95_ratio": _r(float(np.percentile(e, 95)), 3) if len(e) else None,
                   "over_null_share": _r(float((e > edge_level).mean())) if len(e) else None}
    return res


def thresholds() -> dict[str, Any]:
    return {
        "face_found": "a fresh MediaPipeTracker(smoothing=None), video mode, on the output "
                      "frames finds a face",
        "face_inside": "all 478 landmarks of that face inside the frame "
                       "(0 <= x < W and 0 <= y < H); a frame without a face counts as not "
                       "inside",
        "identity": "dlib ResNet v1 descriptor (5-point alignment in the landmarks' box) of "
                    "sampled output frames; closer_to_avatar: share of them nearer (L2) to "
                    "the avatar's enrollment photo than to the driver's frame of the same "
                    "index; an output frame without a face counts as not closer; frames "
                    "where the driver shows no face are not judged. same_person_*: share "
                    f"under dlib's threshold {SAME_PERSON}",
        "blink_below": BLINK_BELOW, "open_above": OPEN_ABOVE,
        "blinks": "mesh.eye_opening (lid gap / eye width, both eyes) of the output on the "
                  "frames where the driver's is under blink_below, beside the output's when "
                  "the driver's eyes are open (over open_above)",
        "mouth_closed_below": MOUTH_CLOSED_BELOW,
        "mouth": "inner-lip gap / mouth width (render/mouth.py mouth_gap, mouth_width) of "
                 "the output on the frames where the driver's is under mouth_closed_below; "
                 "output_open_share: share of those where the output's is not",
        "still_below": STILL_BELOW,
        "jitter": "head centre (mean of mesh.RIGID points) motion from the previous frame, "
                  "in face-oval widths, mean over the frames where the driver's own motion "
                  "is under still_below (both frames with a face in driver and output); "
                  "beside the driver's on the same frames",
        "edge": f"edge_ratio on AvatarFrame.face_box: per side inside the frame, the mean "
                f"absolute grey step across the side (line just inside vs just outside) over "
                f"the mean of the same step {EDGE_GAP}-{EDGE_BAND} px further in and out; "
                f"the frame's worst side. over_null_share: share of frames over the "
                f"p{EDGE_NULL_Q} of the same measure on random squares drawn on untouched "
                f"driver frames at the output size (edge_null; ~{100 - EDGE_NULL_Q}% when "
                f"the square shows no more than a random one, ~100% with a visible edge); "
                f"target <= {EDGE_SHARE_MAX}. Not measured where the compositor reports no "
                f"face_box",
    }


# -- contact sheet --------------------------------------------------------------------------


def thumb(image: np.ndarray, height: int = 160) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * height / h)), height),
                      interpolation=cv2.INTER_AREA)


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.rectangle(img, (0, 0), (img.shape[1], 16), (0, 0, 0), -1)
    cv2.putText(img, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1,
                cv2.LINE_AA)
    return img


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray, str]], path: Path) -> None:
    """Rows of (driver thumb | output thumb), each captioned; a palette PNG where Pillow
    is there (a quarter the size), else a plain one."""
    width = max(d.shape[1] + o.shape[1] for d, o, _ in rows) + 4
    lines = []
    for d, o, text in rows:
        row = np.full((d.shape[0], width, 3), 255, np.uint8)
        row[:, :d.shape[1]] = _caption(d, text)
        row[:, d.shape[1] + 4:d.shape[1] + 4 + o.shape[1]] = _caption(o, "output")
        lines += [row, np.full((4, width, 3), 255, np.uint8)]
    sheet = np.concatenate(lines[:-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image

        Image.fromarray(sheet[:, :, ::-1]).quantize(256).save(path, optimize=True)
    except ImportError:
        cv2.imwrite(str(path), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
