"""Photos -> an enrolled person (aligned crop, neutral landmarks) for the warp renderer.

The crop is an axis-aligned square around the face oval, ``CROP_SCALE`` times its
larger side, shifted up a little so hair and forehead fit; it is resampled to
``crop_size`` pixels. Several photos: the most frontal one is the warp source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from .. import mesh
from ..errors import ImageError, NoFaceError
from ..person import Person, check_name, person_dir
from ..types import Frame, Landmarks

CROP_SCALE = 2.0  # crop side / face-oval size: room for hair, ears and some neck
CROP_SHIFT_UP = 0.12  # of the face-oval height: faces carry more above (hair) than below
MAX_PHOTO_SIDE = 4096

Track = Callable[[Frame], Landmarks | None]


def read_photo(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 BGR, or ImageError naming the file and the fix."""
    if not path.is_file():
        raise ImageError(f"photo {path} does not exist", "check the path")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageError(f"{path} is not a readable image",
                         "use a JPEG or PNG photo of the face")
    h, w = img.shape[:2]
    if max(h, w) > MAX_PHOTO_SIDE:  # keep memory and tracker input sane
        k = MAX_PHOTO_SIDE / max(h, w)
        img = cv2.resize(img, (int(w * k), int(h * k)), interpolation=cv2.INTER_AREA)
    return img


def crop_box(points: np.ndarray) -> tuple[float, float, float]:
    """(x0, y0, side) in photo pixels of the square face crop for these landmarks."""
    oval = points[list(mesh.FACE_OVAL), :2]
    (xmin, ymin), (xmax, ymax) = oval.min(0), oval.max(0)
    size = float(max(xmax - xmin, ymax - ymin))
    side = CROP_SCALE * size
    cx = (xmin + xmax) / 2
    cy = (ymin + ymax) / 2 - CROP_SHIFT_UP * (ymax - ymin)
    return float(cx - side / 2), float(cy - side / 2), side


def frontality(points: np.ndarray) -> float:
    """0 for a frontal face; grows with yaw (nose tip off the eyes' midline)."""
    mid = (points[mesh.RIGHT_EYE_OUTER, :2] + points[mesh.LEFT_EYE_OUTER, :2]) / 2
    iod = max(mesh.inter_ocular(points), 1e-6)
    return float(abs(points[mesh.NOSE_TIP, 0] - mid[0]) / iod)


def enroll_photos(name: str, paths: Sequence[Path], track: Track,
                  crop_size: int = 512) -> Person:
    """Track each photo, keep the most frontal as the warp source; return the Person."""
    check_name(name)
    if not paths:
        raise ImageError("no photos given", "pass at least one: --images PHOTO [PHOTO ...]")
    found: list[tuple[float, Path, np.ndarray, np.ndarray]] = []
    for i, path in enumerate(paths):
        img = read_photo(Path(path))
        lm = track(Frame(i, 0, img))
        if lm is None:
            continue
        found.append((frontality(lm.points), Path(path), img, lm.points))
    if not found:
        which = str(paths[0]) if len(paths) == 1 else f"any of the {len(paths)} photos"
        raise NoFaceError(f"no face found in {which}",
                          "use a well-lit, front-facing photo with the whole face visible")
    _, path, photo, points = min(found, key=lambda f: f[0])
    x0, y0, side = crop_box(points)
    k = side / crop_size
    crop_to_photo = np.array([[k, 0.0, x0], [0.0, k, y0]])
    photo_to_crop = cv2.invertAffineTransform(crop_to_photo)
    crop = cv2.warpAffine(photo, photo_to_crop, (crop_size, crop_size),
                          flags=cv2.INTER_AREA if k > 1 else cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
    neutral = points.astype(np.float64).copy()
    neutral[:, 0] = (neutral[:, 0] - x0) / k
    neutral[:, 1] = (neutral[:, 1] - y0) / k
    neutral[:, 2] = neutral[:, 2] / k
    meta = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sources": [p.name for _, p, _, _ in found],
        "warp_source": path.name,
        "photos_without_face": len(paths) - len(found),
    }
    return Person(name, person_dir(name), photo, crop, neutral.astype(np.float32),
                  crop_to_photo, meta)
