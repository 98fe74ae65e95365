"""Sources of frames: a webcam, a video file, or the synthetic motion script.

Every source has ``read() -> Frame``, ``close()``, context-manager support, and the
properties ``fps`` and ``size`` (width, height). There are no threads here: the
pipeline's capture thread calls ``read()`` in a loop and keeps only the newest frame.
A finite source signals its normal end with ``pipeline.SourceEndedError``.

Sources take keyword-only ``clock`` and ``sleep`` (default ``time.monotonic`` and
``time.sleep``) used for pacing and reconnect backoff, so tests can run seconds of
schedule in no time. ``Frame.t_capture_ns`` is on ``time.monotonic_ns()``'s clock: a
camera's frame is stamped when it is read; a paced file's or synthetic clip's frame at
its due time, however late the read (a slow decode or a busy core is latency, not a
later picture: stamped at its read, a frame read two periods late left two periods
late, and the sound of a microphone file paced from the clip's first frame, which knows
nothing of that, met the lips up to two periods early).
"""

from __future__ import annotations

import glob
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import cv2
import numpy as np

from .errors import CameraError, VideoError
from .motion import animate, script
from .pacing import MAX_LAG_S as MAX_LAG_S  # re-exported: pacing.py is the one pacer
from .pacing import Clock as Clock
from .pacing import Pacer as Pacer
from .pacing import Sleep as Sleep
from .pipeline import SourceEndedError
from .types import Frame, check_points

DEFAULT_FPS = 30.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0


class VideoCaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the webcam source uses (tests substitute it)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)
    def read(self) -> tuple[bool, Any]: ...
    def set(self, prop_id: int, value: float, /) -> bool: ...
    def get(self, prop_id: int, /) -> float: ...
    def release(self) -> None: ...


def open_capture(device: int | str) -> VideoCaptureLike:
    """``cv2.VideoCapture`` on a camera index ("0" counts) or a path such as /dev/video2."""
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    # Two calls because OpenCV's stubs type the index and the path overloads separately.
    if isinstance(device, int):
        return cv2.VideoCapture(device)
    return cv2.VideoCapture(device)


def sane_fps(reported: float, default: float = DEFAULT_FPS) -> float:
    """The reported frame rate, or ``default`` where a file or camera reports 0 or NaN."""
    if not math.isfinite(reported) or reported <= 0.0 or reported > 1000.0:
        return default
    return float(reported)


def _to_bgr(image: np.ndarray) -> np.ndarray:
    """Some cameras deliver grey or BGRA frames; the pipeline takes BGR only."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class Source:
    """Base of the sources: frame numbering, context manager, size/fps properties."""

    def __init__(self, size: tuple[int, int], fps: float) -> None:
        self._size = size
        self._fps = fps
        self._seq = 0
        self._closed = False

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _frame(self, image: np.ndarray, truth: np.ndarray | None = None,
               placeholder: bool = False, late_s: float = 0.0) -> Frame:
        """The next frame, stamped now less ``late_s`` (how late a paced read came)."""
        t_ns = time.monotonic_ns() - round(late_s * 1e9)
        frame = Frame(seq=self._seq, t_capture_ns=t_ns, image=image, truth=truth,
                      placeholder=placeholder)
        self._seq += 1
        return frame

    def _paced_frame(self, pacer: Pacer | None, image: np.ndarray,
                     truth: np.ndarray | None = None) -> Frame:
        """The next frame; with ``pacer``, once it is due, stamped at its due time."""
        if pacer is None:
            return self._frame(image, truth=truth)
        pacer.wait()
        return self._frame(image, truth=truth, late_s=pacer.lateness_s())

    def read(self) -> Frame:
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise SourceEndedError(f"{type(self).__name__} is closed")

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class WebcamSource(Source):
    """A webcam by index or device path; survives the camera disappearing mid-run.

    While the camera is gone, ``read()`` returns placeholder frames at ``fps`` and
    retries opening it with exponential backoff (0.5 s doubling to 8 s), one attempt
    per call at most, so it never raises after a successful start.
    """

    def __init__(self, device: int | str, width: int = 1280, height: int = 720,
                 fps: float = DEFAULT_FPS,
                 opener: Callable[[int | str], VideoCaptureLike] | None = None,
                 *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        super().__init__((width, height), fps)
        self.device = device
        self._requested = (width, height, fps)
        self._opener = opener or open_capture
        self._clock = clock
        self._sleep = sleep
        self.reconnects = 0  # losses after which real frames came back
        self.reconnect_attempts = 0  # tries to reopen the camera
        self._backoff = BACKOFF_FIRST_S
        self._next_retry = 0.0
        self._lost = False
        self._last_placeholder: float | None = None
        self._placeholder: np.ndarray | None = None
        self._cap: VideoCaptureLike | None = self._open()
        if self._cap is None:
            raise CameraError(
                f"camera {device} could not be opened",
                "check it is connected and not used by another app; "
                "`avatar-cam devices` lists cameras",
            )

    def _open(self) -> VideoCaptureLike | None:
        try:
            cap = self._opener(self.device)
        except Exception:  # a vanished device node can make the backend throw
            return None
        try:
            if cap.isOpened():
                self._configure(cap)
                return cap
        except Exception:  # cv2.error from a camera unplugged while being set up
            pass
        cap.release()
        return None

    def _configure(self, cap: VideoCaptureLike) -> None:
        width, height, fps = self._requested
        if sys.platform.startswith("linux"):
            # Raw YUYV at 720p tops out near 10 fps over USB 2; MJPG reaches 30.
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        # Cameras pick their nearest mode; report what they chose.
        got_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        got_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if got_w > 0 and got_h > 0:
            self._size = (got_w, got_h)
        self._fps = sane_fps(cap.get(cv2.CAP_PROP_FPS), fps)

    @property
    def lost(self) -> bool:
        """True while the camera is gone and frames are placeholders."""
        return self._cap is None

    def read(self) -> Frame:
        self._check_open()
        if self._cap is None and self._clock() >= self._next_retry:
            self.reconnect_attempts += 1
            self._cap = self._open()
            if self._cap is None:
                self._schedule_retry()
        if self._cap is not None:
            try:
                ok, image = self._cap.read()
            except Exception:  # some backends throw instead of returning False
                ok, image = False, None
            if ok and image is not None:
                image = _to_bgr(image)
                self._size = (image.shape[1], image.shape[0])
                if self._lost:
                    self.reconnects += 1
                    self._lost = False
                # Back off from scratch only once frames flow: a camera that opens but
                # delivers nothing must not be hammered every 0.5 s.
                self._backoff = BACKOFF_FIRST_S
                self._last_placeholder = None
                return self._frame(image)
            self._cap.release()
            self._cap = None
            self._lost = True
            self._schedule_retry()
        return self._placeholder_frame()

    def _schedule_retry(self) -> None:
        self._next_retry = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2.0, BACKOFF_MAX_S)

    def _placeholder_frame(self) -> Frame:
        now = self._clock()
        if self._last_placeholder is not None:
            due = self._last_placeholder + 1.0 / self._fps
            if now < due:
                self._sleep(due - now)
                now = due
        self._last_placeholder = now
        w, h = self._size
        if self._placeholder is None or self._placeholder.shape[:2] != (h, w):
            self._placeholder = placeholder_image(w, h, "camera lost, reconnecting")
        return self._frame(self._placeholder.copy(), placeholder=True)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()


def placeholder_image(width: int, height: int, text: str) -> np.ndarray:
    """A dark (height, width, 3) uint8 BGR frame with ``text`` in the middle."""
    image = np.full((height, width, 3), 24, np.uint8)
    scale = max(width / 1280.0, 0.3)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    org = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 200, 200), 2,
                cv2.LINE_AA)
    return image


class VideoFileSource(Source):
    """A video file, paced to its frame rate (``realtime``) or read as fast as asked."""

    def __init__(self, path: str | Path, realtime: bool = True, loop: bool = False, *,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self.path = Path(path)
        fix = "pass a video file OpenCV can decode (mp4, avi, mkv, webm)"
        if not self.path.is_file():
            raise VideoError(f"video file {self.path} not found", "check the path; " + fix)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError(f"{self.path} is not a readable video", fix)
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise VideoError(f"{self.path} has no readable frames", "check the file is "
                             "not truncated or damaged; " + fix)
        self._first: np.ndarray | None = _to_bgr(first)
        super().__init__((self._first.shape[1], self._first.shape[0]),
                         sane_fps(self._cap.get(cv2.CAP_PROP_FPS)))
        self.realtime = realtime
        self.loop = loop
        self.loops = 0  # completed passes, with loop=True
        self._pacer = Pacer(self._fps, clock, sleep)

    def _next_image(self) -> np.ndarray:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        ok, image = self._cap.read()
        if ok and image is not None:
            return _to_bgr(image)
        if not self.loop:
            raise SourceEndedError(f"end of {self.path}")
        # Some containers do not seek back to 0; reopening always works.
        self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path))
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceEndedError(f"{self.path} could not be rewound")
        self.loops += 1
        return _to_bgr(image)

    def read(self) -> Frame:
        self._check_open()
        return self._paced_frame(self._pacer if self.realtime else None, self._next_image())

    def close(self) -> None:
        self._cap.release()
        super().close()


class SyntheticSource(Source):
    """Plays ``motion.script`` on a neutral face, with the true landmarks in each frame.

    ``render`` turns (478, 3) landmarks into a (h, w, 3) uint8 BGR image (the pipeline
    passes the warp renderer so a tracker sees a face); without it the landmarks are
    drawn as dots on a dark background.
    """

    def __init__(self, neutral: np.ndarray, size: tuple[int, int], fps: float = DEFAULT_FPS,
                 render: Callable[[np.ndarray], np.ndarray] | None = None,
                 realtime: bool = True, frames: int | None = None,
                 start_s: float = 0.0, *, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep) -> None:
        check_points(neutral)
        if fps <= 0 or not math.isfinite(fps):
            raise ValueError(f"fps must be positive, got {fps}")
        if frames is not None and frames < 0:
            raise ValueError(f"frames must be >= 0 or None, got {frames}")
        super().__init__((int(size[0]), int(size[1])), float(fps))
        self.neutral = neutral.copy()
        self.render = render
        self.realtime = realtime
        self.frames = frames
        self.start_s = start_s
        self._pacer = Pacer(self._fps, clock, sleep)

    def landmarks_at(self, n: int) -> np.ndarray:
        """The (478, 3) float32 landmarks of frame ``n``."""
        return animate(self.neutral, script(self.start_s + n / self._fps))

    def read(self) -> Frame:
        self._check_open()
        if self.frames is not None and self._seq >= self.frames:
            raise SourceEndedError(f"synthetic clip of {self.frames} frames ended")
        points = self.landmarks_at(self._seq)
        return self._paced_frame(self._pacer if self.realtime else None, self._draw(points),
                                 truth=points)

    def _draw(self, points: np.ndarray) -> np.ndarray:
        w, h = self._size
        if self.render is not None:
            image = self.render(points)
            if (not isinstance(image, np.ndarray) or image.dtype != np.uint8
                    or image.shape != (h, w, 3)):
                got = (f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray)
                       else type(image).__name__)
                raise ValueError(f"render must return ({h}, {w}, 3) uint8 BGR, got {got}")
            return image
        image = np.full((h, w, 3), 16, np.uint8)
        xy = np.rint(points[:, :2]).astype(np.int64)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2x2 dots, cheap and visible
            x, y = xy[:, 0] + dx, xy[:, 1] + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            image[y[inside], x[inside]] = (80, 220, 80)
        return image


SYSFS_VIDEO = Path("/sys/class/video4linux")


def _sysfs_info(dev: str, sysfs: Path = SYSFS_VIDEO) -> tuple[str, bool, int]:
    """(name, is v4l2loopback, node index) of a /dev/videoN node, read from sysfs."""
    node = sysfs / os.path.basename(dev)
    try:
        name = (node / "name").read_text().strip()
    except OSError:
        name = ""
    try:
        index = int((node / "index").read_text().strip() or 0)
    except (OSError, ValueError):
        index = 0
    # v4l2loopback nodes are virtual devices: outputs like ours, not cameras.
    low = name.lower()
    loopback = "/virtual/" in os.path.realpath(node) or "loopback" in low or "dummy" in low
    return name, loopback, index


def list_cameras(max_index: int = 10, *, dev: Path = Path("/dev"),
                 sysfs: Path = SYSFS_VIDEO) -> list[dict[str, Any]]:
    """Cameras that look usable: ``{"device", "path", "name", "loopback"}`` each; an
    empty list when there are none.

    On Linux this reads ``dev`` (/dev) and ``sysfs`` only (opening a busy camera can
    hang); elsewhere it tries indices 0..max_index-1.
    """
    cams: list[dict[str, Any]] = []
    if sys.platform.startswith("linux"):
        prefix = str(dev / "video")
        for path in sorted(glob.glob(glob.escape(prefix) + "*"), key=lambda p: (len(p), p)):
            suffix = path.removeprefix(prefix)
            name, loopback, index = _sysfs_info(path, sysfs)
            # Index 1+ nodes of a UVC camera carry metadata, not pictures.
            if suffix.isdigit() and index == 0:
                cams.append({"device": int(suffix), "path": path, "name": name,
                             "loopback": loopback})
        return cams
    for i in range(max_index):
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            cams.append({"device": i, "path": str(i), "name": f"camera {i}", "loopback": False})
        cap.release()
    return cams
