"""Pass 1 of preparing a clip (``dataset.prepare_clip``): every frame tracked, with its
face's sharpness and colours; every ``cover.STEP``-th frame judged for a hand over the
face.

Tracking is most of an enrollment's time before training (MediaPipe, about 11 ms a frame
here, plus the hand judge's 20 ms every 6th frame), and it runs on one core.
``scan_video`` splits a video file into consecutive segments tracked by ``workers``
processes, each with its own face mesh and hand model; each segment starts the face
mesh afresh, as a clip's first frame does. A segment's process decodes the frames
before it without tracking them (``grab``): seeking by frame number is not exact for
every codec.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import VideoError
from ..types import Frame
from .cover import is_sample
from .identity import colours
from .ingest import Track
from .photo import Covered

# Frames: shorter segments are not worth a process. Starting one (spawn, MediaPipe's
# graphs, decoding the frames before its segment) costs seconds: here (2 cores) Megamind's
# 270 frames took 27.5 ms a frame in 2 processes against 20.2 in one; cap12's 1337 frames
# 9.8 against 16.2.
MIN_SEGMENT = 300


@dataclass
class Scan:
    """found: (frame number, (478, 3) points in frame pixels, sharpness, face colours) of
    each frame with a face; samples: (frame number, hand over the face) of the judged
    ones; total: frames read; frame_size: (width, height)."""

    found: list[tuple[int, np.ndarray, float, np.ndarray]]
    samples: list[tuple[int, bool]]
    total: int
    frame_size: tuple[int, int]


def sharpness(image: np.ndarray, points: np.ndarray) -> float:
    """Variance of the Laplacian of the grey face box (oval bounds)."""
    from .. import mesh

    oval = points[list(mesh.FACE_OVAL), :2]
    h, w = image.shape[:2]
    x0, y0 = np.clip(oval.min(0).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(oval.max(0).astype(int) + 1, 1, [w, h])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def scan(frames: Iterable[np.ndarray], track: Track, covered: Covered | None,
         start: int = 0) -> Scan:
    """Pass 1 over ``frames``, numbered from ``start``. Without ``covered`` no hand is
    judged."""
    out = Scan([], [], start, (0, 0))
    for n, image in enumerate(frames, start):
        out.total = n + 1
        out.frame_size = (image.shape[1], image.shape[0])
        lm = track(Frame(n, int(n * 33_333_333), image))
        if lm is None:
            continue
        if covered is not None and is_sample(n):
            out.samples.append((n, covered(image, lm.points)))
        out.found.append((n, lm.points, sharpness(image, lm.points),
                          colours(image, lm.points)))
    return out


def _segment(path: str, start: int, stop: int | None, hands: bool) -> Scan:
    """In a worker process: frames start..stop-1 (None: to the end) of the video."""
    from ..tracking import HandFinder, MediaPipeTracker

    cap = cv2.VideoCapture(path)
    try:
        for _ in range(start):
            if not cap.grab():
                return Scan([], [], start, (0, 0))

        def frames() -> Iterable[np.ndarray]:
            n = start
            while stop is None or n < stop:
                ok, image = cap.read()
                if not ok:
                    return
                yield image
                n += 1

        with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as finder:
            return scan(frames(), tracker.track, finder.covers if hands else None, start)
    finally:
        cap.release()


def segments(count: int, workers: int, least: int = MIN_SEGMENT) -> list[tuple[int, int | None]]:
    """[(start, stop)] covering frames 0..count-1 in up to ``workers`` parts of at least
    ``least`` frames; the last runs to the end (a container's frame count can be short).
    ``count`` <= 0 (unknown): one part."""
    parts = max(1, min(workers, count // least)) if count > 0 else 1
    starts = [round(i * count / parts) for i in range(parts)]
    return list(zip(starts, [*starts[1:], None], strict=True))


def scan_video(path: Path, workers: int, hands: bool = True,
               least: int = MIN_SEGMENT) -> Scan:
    """Pass 1 over a video file in up to ``workers`` processes, each taking ``least``
    frames or more (one part: in this process); the segments' results joined in time
    order. ``hands``: judge hands over the face."""
    if not Path(path).is_file():
        raise VideoError(f"video {path} does not exist", "check the path")
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    parts = segments(count, max(1, workers), least)
    if len(parts) == 1:
        return _segment(str(path), 0, None, hands)
    with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("spawn"),
                             initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        done = [pool.submit(_segment, str(path), a, b, hands) for a, b in parts]
        results = [f.result() for f in done]
    out = Scan([], [], 0, (0, 0))
    for r in results:
        out.found += r.found
        out.samples += r.samples
        out.total = max(out.total, r.total)
        if r.frame_size != (0, 0):
            out.frame_size = r.frame_size
    return out


def default_workers() -> int:
    """Scanning processes: the cores, up to 8."""
    return max(1, min(8, os.cpu_count() or 1))
