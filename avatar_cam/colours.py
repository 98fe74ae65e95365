"""A face's colours as a descriptor: what tells two people (or two shots) apart where no
face-recognition weights can be had. Enrollment sorts a clip's faces into people with it
(calibrate/identity.py); the tracker tells a cut or another person from one frame to the
next with it."""

from __future__ import annotations

import cv2
import numpy as np

from . import mesh

BINS = (16, 8)  # hue, saturation
_OVAL = np.array(mesh.FACE_OVAL[:-1], dtype=np.intp)


def colours(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR frame and its (478, 3) landmarks -> (16 * 8,) float32
    descriptor of the face's colours (unit length; zeros when the face is off-picture)."""
    h, w = image.shape[:2]
    oval = points[_OVAL, :2]
    x0, y0 = np.clip(np.floor(oval.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(oval.max(0)).astype(int) + 1, 0, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros(BINS[0] * BINS[1], np.float32)
    box = np.ascontiguousarray(image[y0:y1, x0:x1])
    mask = np.zeros(box.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(oval - 0.5 - [x0, y0]).astype(np.int32)], (255,))
    hsv = cv2.cvtColor(box, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], mask, list(BINS), [0, 180, 0, 256]).ravel()
    total = float(hist.sum())
    return np.sqrt(hist / total).astype(np.float32) if total > 0 else hist * 0
