"""MediaPipe's face mesh on one picture, for tests that check what a render looks like."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def detect(tracker: Any, image: np.ndarray) -> np.ndarray:
    """(478, 3) float32 landmarks of the one face in a BGR image, in its pixels;
    ``tracker`` is the ``face_mesh`` fixture (MediaPipe FaceMesh, static images)."""
    found = tracker.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).multi_face_landmarks
    assert found, "MediaPipe found no face"
    h, w = image.shape[:2]
    return np.array([[p.x * w, p.y * h, p.z * w] for p in found[0].landmark], np.float32)
