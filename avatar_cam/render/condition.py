"""Conditioner: landmarks -> the generator's conditioning image.

For a ``sketch`` generator that is ``raster.rasterize``'s sketch (R, R, 3). For a
``sketch+warp`` generator the warp renderer's render of the person's own photo (their
crop and its neutral landmarks: ``reference``) on the same landmarks is stacked after it,
(R, R, 6) uint8: the same function at enrollment (training crops), in evaluation and live,
so the generator always sees what it was trained on.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from ..errors import ModelError
from ..raster import rasterize
from ..types import Landmarks, check_points

Reference = tuple[np.ndarray, np.ndarray]  # (crop (S, S, 3) uint8 BGR, neutral (478, 3))


def read_reference(folder: Path) -> Reference:
    """The warp source of a person folder: crop.png and neutral.npy, checked."""
    fix = f"re-run `avatar-cam calibrate {Path(folder).name}`"
    crop = cv2.imread(str(Path(folder) / "crop.png"), cv2.IMREAD_COLOR)
    try:
        neutral = np.load(Path(folder) / "neutral.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder} has no readable neutral.npy ({exc})", fix) from exc
    if crop is None or crop.shape[0] != crop.shape[1] or neutral.shape != (478, 3) \
            or not np.isfinite(neutral).all():
        raise ModelError(f"{folder} has no usable crop.png / neutral.npy for the generator",
                         fix)
    return crop, neutral.astype(np.float32)


class Conditioner:
    """__call__(points (478, 3) in pixels of a ``size`` square) -> (R, R, C) uint8."""

    def __init__(self, resolution: int, warp: bool, reference: Reference | None = None) -> None:
        self.resolution = resolution
        self.channels = 6 if warp else 3
        self._warp = None
        if warp:
            if reference is None:
                raise ValueError("a sketch+warp generator needs the person's crop and neutral")
            from .warp import WarpRenderer

            crop, neutral = reference
            self._warp = WarpRenderer(crop, neutral, resolution=resolution)

    def __call__(self, points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        sketch = self.sketch(points, size)
        if self._warp is None:
            return sketch
        return np.concatenate([sketch, self.warped(points, size)], axis=2)

    def sketch(self, points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        r = self.resolution
        return rasterize(points, size or (r, r), r)

    def warped(self, points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """The warp render alone (R, R, 3); a sketch-only conditioner has none."""
        if self._warp is None:
            raise ValueError("this conditioner has no warp render (a sketch generator)")
        r = self.resolution
        return self._warp.render(Landmarks(0, 0, points, size or (r, r)))  # rescales

    def render(self, lm: Landmarks) -> np.ndarray:
        check_points(lm.points)
        return self(lm.points, lm.size)

    def batch(self, points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """(B, 478, 3) -> (B, R, R, C) uint8."""
        return np.stack([self(p, size) for p in points])

    def close(self) -> None:
        if self._warp is not None:
            self._warp.close()

    def __enter__(self) -> Conditioner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def for_folder(folder: Path, resolution: int, warp: bool) -> Conditioner:
    """The conditioner of a person folder's generator."""
    return Conditioner(resolution, warp, read_reference(folder) if warp else None)
