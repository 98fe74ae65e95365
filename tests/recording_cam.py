"""Test helpers: a recording pyvirtualcam backend and the astronaut's real landmarks.

Test machines have no v4l2loopback, so a virtual camera cannot open; pyvirtualcam
lets us register a backend that records what it is sent instead. It checks every
frame the way a real backend would need it (size for the format, dtype, layout).

    import recording_cam
    recording_cam.register()
    with VirtualCamSink(w, h, fps, backend="recording") as sink: ...
    cam = recording_cam.RecordingBackend.instances[-1]
    cam.frames_sent, cam.shape, cam.fourcc, cam.closed, cam.last_frame
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import cv2
import numpy as np
import pyvirtualcam
from pyvirtualcam.util import decode_fourcc, encode_fourcc

BACKEND_NAME = "recording"
# Formats a (h, w, 3) frame can arrive in; pyvirtualcam passes the Camera's fmt through.
THREE_CHANNEL = ("24BG", "raw ")  # PixelFormat.BGR, PixelFormat.RGB


class RecordingBackend:
    """A pyvirtualcam backend that keeps every frame's facts and the last frame."""

    instances: ClassVar[list[RecordingBackend]] = []
    native_format: ClassVar[str] = "24BG"  # BGR, what VirtualCamSink sends

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int,
                 device: str | None, **kw: Any) -> None:
        fmt = decode_fourcc(fourcc)
        if fmt not in THREE_CHANNEL:
            raise ValueError(f"recording backend takes BGR or RGB, got fourcc {fmt!r}")
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"bad camera geometry {width}x{height} @ {fps}")
        self.width, self.height, self.fps = width, height, fps
        self.fourcc = fmt
        self.extra = kw
        self._device = device or "recording0"
        self.frames_sent = 0
        self.frame_facts: list[tuple[tuple[int, ...], str]] = []  # (shape, dtype) as sent
        self.last_frame: np.ndarray | None = None  # (h, w, 3) uint8 in self.fourcc order
        self.closed = False
        self.close_calls = 0
        RecordingBackend.instances.append(self)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    def send(self, frame: np.ndarray) -> None:
        if self.closed:
            raise RuntimeError("send() after close()")
        self.frame_facts.append((tuple(frame.shape), str(frame.dtype)))
        # What pyvirtualcam hands a backend: flat, C-contiguous uint8 of w * h * 3.
        if frame.dtype != np.uint8 or frame.ndim != 1 or not frame.flags.c_contiguous:
            raise ValueError(f"expected flat contiguous uint8, got {frame.shape} {frame.dtype}")
        if frame.size != self.width * self.height * 3:
            raise ValueError(f"expected {self.width * self.height * 3} bytes for "
                             f"{self.width}x{self.height} {self.fourcc}, got {frame.size}")
        self.last_frame = frame.reshape(self.shape).copy()
        self.frames_sent += 1

    def last_bgr(self) -> np.ndarray:
        """The last frame in BGR order whichever format it came in."""
        if self.last_frame is None:
            raise LookupError("no frame was sent")
        if self.fourcc == "24BG":
            return self.last_frame
        return cv2.cvtColor(self.last_frame, cv2.COLOR_RGB2BGR)

    def close(self) -> None:
        self.close_calls += 1
        if self.closed:
            raise RuntimeError("close() called twice")
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int:
        return encode_fourcc(self.native_format)


@functools.cache
def register() -> None:
    """Make ``backend="recording"`` available to pyvirtualcam (idempotent)."""
    pyvirtualcam.register_backend(BACKEND_NAME, RecordingBackend)


@functools.cache
def _astronaut() -> tuple[np.ndarray, np.ndarray]:
    import mediapipe as mp
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    h, w = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True,
                                         max_num_faces=1) as mesh:
        result = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if not result.multi_face_landmarks:
        raise RuntimeError("MediaPipe found no face in the astronaut photo")
    lms = result.multi_face_landmarks[0].landmark
    points = np.array([[p.x * w, p.y * h, p.z * w] for p in lms], np.float32)
    return image, points


def astronaut() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo (512, 512, 3) uint8 BGR and its (478, 3) float32 landmarks
    from real MediaPipe (pixels; z in x units). Computed once per test session; copies."""
    image, points = _astronaut()
    return image.copy(), points.copy()
