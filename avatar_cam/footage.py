"""Driver footage made from a real photograph: the synthetic face-motion script rendered
by the warp renderer into a camera-sized frame, with the landmarks that generated it.

Tests check that the tracker recovers those landmarks; benchmarks drive the pipeline
with it at camera sizes; the demo plays it live.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import motion
from .compose import Compositor, make_layout
from .errors import SinkError
from .person import Person
from .render.warp import WarpRenderer
from .types import Landmarks


@dataclass
class Footage:
    """Frames of a person acting out the motion script at a camera size."""

    person: Person
    size: tuple[int, int] = (640, 480)
    fps: float = 30.0
    face_height: float = 0.6  # of the frame height: a webcam-like framing

    def __post_init__(self) -> None:
        layout = make_layout(self.person.photo, self.person.crop_to_photo,
                             self.person.crop_size, self.size, "photo", self.face_height)
        self._compositor = Compositor(layout)
        self._side = layout.side
        self._renderer = WarpRenderer(self.person.crop, self.person.neutral,
                                      resolution=min(512, _even(layout.side)))
        self._k = layout.side / self.person.crop_size
        self._offset = np.array([layout.x, layout.y, 0.0], np.float32)

    def landmarks_at(self, t_s: float) -> np.ndarray:
        """(478, 3) crop-space landmarks of the script at time t."""
        return motion.animate(self.person.neutral, motion.script(t_s))

    def to_frame_coords(self, crop_points: np.ndarray) -> np.ndarray:
        """Crop-space landmarks -> pixels of the footage frame (z scaled alike)."""
        out = crop_points * np.float32(self._k) + self._offset
        return out.astype(np.float32)

    def frame(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame n: (image (H, W, 3) uint8 BGR, truth landmarks in frame pixels)."""
        pts = self.landmarks_at(n / self.fps)
        crop = self.person.crop_size
        face = self._renderer.render(Landmarks(n, 0, pts, (crop, crop)))
        image = self._compositor.compose(face, n, 0).image
        return image, self.to_frame_coords(pts)

    def frames(self, count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for n in range(count):
            yield self.frame(n)

    def write(self, path: Path, count: int) -> np.ndarray:
        """Write ``count`` frames to an mp4; return their truth landmarks (count, 478, 3)."""
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps,
                                 self.size)
        if not writer.isOpened():
            raise SinkError(f"cannot write video {path}", "check the folder exists and is writable")
        truth = np.empty((count, 478, 3), np.float32)
        try:
            for n, (image, pts) in enumerate(self.frames(count)):
                writer.write(image)
                truth[n] = pts
        finally:
            writer.release()
        return truth


def _even(v: int) -> int:
    return max(64, v - v % 2)
