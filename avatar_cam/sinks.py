"""Outputs: a virtual camera, an mp4 file, a window, or nothing (for benchmarks).

Every sink has ``send(AvatarFrame) -> None``, ``close()``, context-manager support and
a ``frames_sent`` count, and checks each frame at the boundary: (H, W, 3) uint8 BGR of
the size it was opened with. Pacing is the pipeline's job; sinks send at once.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import cv2
import numpy as np

from .errors import SinkError
from .types import AvatarFrame

if TYPE_CHECKING:
    from .honesty.c2pa_manifest import Provenance

log = logging.getLogger(__name__)

MODPROBE = 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="avatar-cam"'
LOOPBACK_FIX = (f"load the v4l2loopback kernel module: {MODPROBE} "
                "(install the v4l2loopback-dkms package first if modprobe cannot find it)")
OBS_FIX = ("install OBS Studio and start its Virtual Camera once "
           "(Tools > Start Virtual Camera), then close OBS")
SINK_SPECS = ("virtualcam", "virtualcam:BACKEND", "window", "file:PATH.mp4", "null")


def check_image(image: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return ``image`` if it is (H, W, 3) uint8 BGR (of ``size`` = (W, H) if given)."""
    want = f"({size[1]}, {size[0]}, 3)" if size else "(H, W, 3)"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"frame image must be a {want} uint8 BGR numpy array, "
                        f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"frame image must be {want} uint8 BGR, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or (
            size is not None and image.shape[:2] != (size[1], size[0])):
        raise ValueError(f"frame image must be {want} uint8 BGR, got shape {image.shape}")
    return image


class Sink:
    """Base of the sinks: frame checking, counting, context manager."""

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size
        self.frames_sent = 0
        self._closed = False

    def send(self, frame: AvatarFrame) -> None:
        if not isinstance(frame, AvatarFrame):
            raise TypeError(f"send() takes an AvatarFrame, got {type(frame).__name__}")
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        self._write(check_image(frame.image, self.size))
        self.frames_sent += 1

    def _write(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def loopback_devices() -> list[str]:
    """/dev/video* nodes that belong to v4l2loopback (virtual in sysfs, or so named)."""
    found = []
    for path in sorted(glob.glob("/dev/video*")):
        node = Path("/sys/class/video4linux") / os.path.basename(path)
        try:
            name = (node / "name").read_text().strip().lower()
        except OSError:
            name = ""
        if "/virtual/" in os.path.realpath(node) or "loopback" in name or "dummy" in name:
            found.append(path)
    return found


def _virtualcam_fix(message: str) -> str:
    if sys.platform.startswith("linux"):
        if not loopback_devices() or "modprobe" in message or "loopback" in message:
            return LOOPBACK_FIX
        return ("check no other program writes to the loopback device "
                f"({', '.join(loopback_devices())}) and that you may open it (group 'video')")
    return OBS_FIX


class VirtualCamSink(Sink):
    """A virtual camera (v4l2loopback on Linux, OBS Virtual Camera elsewhere)."""

    def __init__(self, width: int, height: int, fps: float, backend: str | None = None,
                 device: str | None = None) -> None:
        super().__init__((width, height))
        import pyvirtualcam  # only this sink needs it

        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
            raise SinkError(f"unknown virtual camera backend {backend!r}",
                            f"use one of: {known}")
        try:
            self._cam = pyvirtualcam.Camera(width, height, fps,
                                            fmt=pyvirtualcam.PixelFormat.BGR,
                                            backend=backend, device=device)
        except Exception as e:  # pyvirtualcam reports every failure as RuntimeError
            reason = " / ".join(str(e).splitlines()) or type(e).__name__
            raise SinkError(f"no virtual camera could be opened ({reason})",
                            _virtualcam_fix(str(e))) from None
        self.backend: str = self._cam.backend
        self.device: str = self._cam.device

    def _write(self, image: np.ndarray) -> None:
        self._cam.send(image)

    def close(self) -> None:
        if not self._closed:
            self._cam.close()
        super().close()


class FileSink(Sink):
    """An mp4 file (H.264, or MPEG-4 Part 2 where PyAV has no libx264), given its C2PA
    manifest when it is closed (honesty.c2pa_manifest: synthetic media, the model's
    fingerprint, owner and liveness, signed with the user's key). ``provenance`` says
    whose avatar it shows; None: a recording of a model the recorder does not know.

    ``play(samples)`` records sound too, as a speaker would play it (the peer's voice in
    a call): AAC beside the picture, each placed by when it was handed over
    (``recording``: frames at ``send``, sound at ``play``), so the file keeps the sync
    the user got. A sink fed over twice as fast as real time (rendering offline) writes
    ``fps`` frames a second.
    ``counts``: sound dropped, moved or late (``recording.Recording.counts``)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float,
                 provenance: Provenance | None = None) -> None:
        from .recording import WRITE_ERRORS, Recording  # PyAV: only this sink needs it

        super().__init__((width, height))
        self.path = Path(path)
        self.provenance = provenance
        self.manifest_error: str | None = None  # why the manifest is missing, if it is
        parent = self.path.parent
        if not parent.is_dir():
            raise SinkError(f"cannot write {self.path}: folder {parent} does not exist",
                            "create the folder first or pick another path")
        if not (fps > 0 and np.isfinite(fps)):
            raise ValueError(f"fps must be positive, got {fps}")
        try:
            self._recording = Recording(self.path, width, height, float(fps))
        except WRITE_ERRORS as exc:
            raise SinkError(f"cannot write video file {self.path} ({exc})",
                            "check the folder is writable and the name ends in .mp4") from None
        self.counts = self._recording.counts

    def _write(self, image: np.ndarray) -> None:
        self._recording.frame(image, time.monotonic_ns())

    def play(self, samples: np.ndarray, t_ns: int | None = None) -> None:
        """Record (n,) int16 mono 48 kHz ``samples`` played at ``t_ns`` (default: now,
        ``time.monotonic_ns()``). ValueError for anything else; after ``close`` they are
        counted and dropped (a call's last chunk may race the close)."""
        self._recording.sound(samples, time.monotonic_ns() if t_ns is None else int(t_ns))

    def close(self) -> None:
        from .recording import WRITE_ERRORS

        if not self._closed:
            self._closed = True
            try:
                self._recording.close()
            except WRITE_ERRORS as exc:  # the picture-only mp4 is still there
                log.error("%s: its sound could not be added (%s); the picture is intact "
                          "and the sound is beside it", self.path, exc)
            if self.frames_sent:  # a file with no frames is no recording to vouch for
                self._sign()
        super().close()

    def _sign(self) -> None:
        # Signed here, on close, so that no path that writes a recording can skip it.
        # A failure keeps the unsigned recording (the user's data) and says so loudly:
        # pipelines close their stages suppressing errors, so raising would be lost.
        from .honesty.c2pa_manifest import ManifestError, sign_recording

        try:
            sign_recording(self.path, self.provenance)
        except ManifestError as exc:
            self.manifest_error = str(exc)
            log.error("%s", exc)


def display_problem() -> str | None:
    """Why no window can be shown here, or None if one can.

    OpenCV's wheels draw windows with Qt's X11 plugin only, and Qt aborts the whole
    process (no exception) when it cannot reach the X server, so check before asking.
    """
    if not sys.platform.startswith("linux"):
        return None
    display = os.environ.get("DISPLAY", "")
    if not display:
        if os.environ.get("WAYLAND_DISPLAY"):
            return "no X11 display for OpenCV's window (Wayland without XWayland: DISPLAY unset)"
        return "no display to show a window on (DISPLAY and WAYLAND_DISPLAY are unset)"
    if display.startswith(":"):  # a local server listens on /tmp/.X11-unix/X<n>
        number = display[1:].split(".")[0]
        if not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return f"no display to show a window on (X server {display} is not running)"
    return None


class WindowSink(Sink):
    """An OpenCV window; ``closed_by_user`` turns True on q, Esc or closing the window."""

    def __init__(self, width: int, height: int, title: str = "avatar-cam") -> None:
        super().__init__((width, height))
        fix = "use --sink file:out.mp4 or --sink virtualcam instead"
        problem = display_problem()
        if problem:
            raise SinkError(problem, fix)
        self.title = title
        self.closed_by_user = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(title, width, height)
        except cv2.error as e:
            raise SinkError(f"cannot open a window ({str(e).strip().splitlines()[-1]})",
                            fix) from None

    def _write(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, np.ascontiguousarray(image))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(
                self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.closed_by_user = True

    def close(self) -> None:
        if not self._closed:
            with contextlib.suppress(cv2.error):  # the user may have closed it already
                cv2.destroyWindow(self.title)
        super().close()


class NullSink(Sink):
    """Discards frames after checking them; counts them (for benchmarks)."""

    def __init__(self) -> None:
        super().__init__(None)

    def _write(self, image: np.ndarray) -> None:
        pass


def open_sink(spec: str, width: int, height: int, fps: float, person: Any = None) -> Sink:
    """A sink from a command-line spec: virtualcam[:BACKEND], window, file:PATH, null.
    ``person`` (a loaded person.Person) is named in a file's C2PA manifest (FileSink)."""
    kind, _, arg = spec.partition(":")
    if kind == "virtualcam":
        return VirtualCamSink(width, height, fps, backend=arg or None)
    if kind == "file" and arg:
        from .honesty.c2pa_manifest import provenance_of

        return FileSink(arg, width, height, fps,
                        None if person is None else provenance_of(person))
    if kind == "window" and not arg:
        return WindowSink(width, height)
    if kind == "null" and not arg:
        return NullSink()
    raise SinkError(f"unknown sink {spec!r}", f"use one of: {', '.join(SINK_SPECS)}")


def virtualcam_status() -> list[str]:
    """Lines for `avatar-cam devices`: which virtual camera backends exist and work."""
    try:
        import pyvirtualcam
    except ImportError:
        return ["virtual camera: pyvirtualcam is not installed -- pip install pyvirtualcam"]
    backends = sorted(pyvirtualcam.camera.BACKENDS)
    lines = [f"pyvirtualcam {pyvirtualcam.__version__}: backends "
             f"{', '.join(backends) or 'none for this platform'}"]
    if sys.platform.startswith("linux"):
        devices = loopback_devices()
        if devices:
            lines.append(f"v4l2loopback: ready ({', '.join(devices)})")
        else:
            lines.append(f"v4l2loopback: no loopback device -- {LOOPBACK_FIX}")
    else:
        lines.append(f"OBS Virtual Camera: needed on this platform -- {OBS_FIX}")
    return lines
