"""Real MediaPipe on real pixels: footage made by the synthetic driver and the warp
renderer from a real photograph; the tracker must recover the landmarks that made it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar_cam import mesh
from avatar_cam.footage import Footage
from avatar_cam.person import load_person
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame


def test_tracker_recovers_the_driving_landmarks(home: Path) -> None:
    person = load_person("astro", home / "calibration")
    footage = Footage(person, (640, 480))
    errors = []
    missed = 0
    with MediaPipeTracker(smoothing=None) as tracker:
        for n in range(0, 150, 3):  # five seconds of the script: talking, blinks, turns
            image, truth = footage.frame(n)
            lm = tracker.track(Frame(n, 0, image))
            if lm is None:
                missed += 1
                continue
            iod = mesh.inter_ocular(truth)
            # The 468 mesh points (irises excluded: the warp does not move them on purpose).
            err = np.linalg.norm(lm.points[:468, :2] - truth[:468, :2], axis=1).mean() / iod
            errors.append(err)
    assert missed == 0
    nme = float(np.mean(errors))
    assert nme < 0.05, f"normalized mean error {nme:.3f}"
    assert max(errors) < 0.10
