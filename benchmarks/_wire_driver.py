"""The wire benchmark's driver: the demo footage tracked by MediaPipe once, up front, then
replayed live by every call at 30 fps as the source's own landmarks (``track=False``).

The landmarks are real tracker output on real pixels (the demo identity acting out the
motion script, rendered by the warp renderer at a webcam's size, as bandwidth.py drives
it), so the codec sees a tracker's jitter; but no call tracks live, so on a shared 2-core
machine every sender keeps its 30 fps whatever else runs, and byte rates compare between
runs. The replay runs forth and back (no jump where it loops).
"""

from __future__ import annotations

import numpy as np

from avatar_cam.capture import SyntheticSource
from avatar_cam.drive import Adapter
from avatar_cam.footage import Footage
from avatar_cam.person import Person
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame

SIZE = (640, 480)


def tracked_driver(person: Person, frames: int, fps: float) -> tuple[np.ndarray, np.ndarray,
                                                                     int]:
    """(raw landmarks in footage pixels, the same driven onto the person's crop, frames
    without a face: those repeat the last face)."""
    footage = Footage(person, SIZE, fps)
    adapter = Adapter(person.neutral, (person.crop_size, person.crop_size))
    raw: list[np.ndarray] = []
    driven: list[np.ndarray] = []
    missed = 0
    with MediaPipeTracker() as tracker:
        for n in range(frames):
            image, truth = footage.frame(n)
            t_ns = int(n * 1e9 / fps)
            lm = tracker.track(Frame(n, t_ns, image))
            if lm is None:
                missed += 1
            raw.append(lm.points if lm is not None else (raw[-1] if raw else truth))
            driven.append(adapter.drive(lm, n, t_ns).points)
    return np.asarray(raw, np.float32), np.asarray(driven, np.float32), missed


class ReplaySource(SyntheticSource):
    """Tracked landmarks played back in real time as a live source's ground truth."""

    def __init__(self, points: np.ndarray, fps: float) -> None:
        super().__init__(points[0], SIZE, fps=fps, render=self._blank, realtime=True)
        self.points = points

    def landmarks_at(self, n: int) -> np.ndarray:
        period = 2 * len(self.points) - 2
        i = n % period
        return self.points[i if i < len(self.points) else period - i]

    @staticmethod
    def _blank(points: np.ndarray) -> np.ndarray:
        return np.zeros((SIZE[1], SIZE[0], 3), np.uint8)  # nobody tracks it
