"""Camera enrollment: only a real camera, a live person and a consent statement enroll.

``record_camera`` refuses virtual cameras (v4l2loopback nodes, OBS and other virtual
camera drivers, by name) and files before opening anything, runs the liveness check
(honesty/liveness.py: random prompts, depth parallax of the turns) and records the clip,
guided (guide.py: prompts for what the reference bank lacks, until it is all covered or
the time is up); a feed that carries avatar-cam's watermark is refused whatever the
check said.
``liveness_record`` is what the signed model says about it: "verified" only from here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import AvatarCamError, CameraError
from .guide import LABELS, Coverage, Display

log = logging.getLogger("avatar_cam")
LIVENESS_MAX_FRAMES = 30 * 60  # a minute of camera frames at most
# Names of virtual-camera drivers and apps (lower case, matched as substrings): a virtual
# camera can carry anything, our own avatar included, so it never enrolls anyone.
VIRTUAL_CAMERA_NAMES = ("v4l2loopback", "loopback", "dummy", "virtual", "obs", "avatar-cam",
                        "manycam", "xsplit", "vcam", "snap camera", "camtwist", "splitcam",
                        "akvcam", "webcamoid", "mmhmm", "nvidia broadcast", "fake")
WATERMARK_EVERY = 3  # every 3rd frame of the check and the recording is searched ...
WATERMARK_FRAMES = 60  # ... up to this many
# The guided recording tracks every 2nd frame (15 a second: a turn or a smile lasts many;
# MediaPipe takes 15-25 ms a frame on 2 cores, so tracking them all would drop frames)
# and writes them all.
TRACK_EVERY = 2
KEEP_MIN_S = 3.0  # a camera that stops mid-recording: a shorter clip is not kept


def refuse_virtual_camera(camera: str,
                          cameras: Callable[[], list[dict[str, Any]]] | None = None) -> None:
    """CameraError unless ``camera`` is a real capture device: not a file, not a
    v4l2loopback node, not a device named like a virtual camera (capture.list_cameras)."""
    from ..capture import list_cameras

    if not camera.isdigit():
        path = Path(camera)
        if path.is_file() or (path.exists() and not path.is_char_device()):
            raise CameraError(f"{camera} is a file, not a camera",
                              "enroll from a clip with --video (its model records that "
                              "liveness was not verified), or give a webcam")
    for cam in (cameras or list_cameras)():
        same = str(cam.get("device")) == camera or (
            not camera.isdigit() and os.path.realpath(camera) == os.path.realpath(
                str(cam.get("path", ""))))
        name = str(cam.get("name", ""))
        if same and (cam.get("loopback") or any(v in name.lower() for v in
                                                VIRTUAL_CAMERA_NAMES)):
            raise CameraError(f"camera {camera} ({name or 'no name'}) is a virtual camera",
                              "enroll live from a real webcam: a virtual camera can show "
                              "anything, a photo animated by avatar-cam included")


def record_camera(camera: str, seconds: float, folder: Path,
                  opener: Callable[[int | str], Any] | None = None,
                  check: Any = None,
                  cameras: Callable[[], list[dict[str, Any]]] | None = None,
                  guide: Coverage | None = None, display: Display | None = None) -> Path:
    """Record the webcam into folder/camera.mp4, after a liveness check (turn the head,
    blink, in a random order, with depth parallax in the pixels) so that people enroll
    themselves rather than a photo, a replay or an avatar of someone else.

    The recording is guided (guide.py): it prompts for what the reference bank still
    lacks (turns, looks up and down, a tilt, an open mouth, a smile, closed eyes, then a
    few seconds of talking), tracks every TRACK_EVERY-th frame to see what is covered,
    writes every frame, and stops once all is covered or after ``seconds`` (the most it
    records); what is still missing then is logged as a warning naming what to record.
    ``display`` (default: a window where one can open, else the terminal) shows the
    prompts of both the check and the recording. A camera that stops during the
    recording ends it: its clip is kept when it holds at least KEEP_MIN_S seconds, else
    CameraError. A virtual camera is refused before it is opened; a feed that carries
    avatar-cam's watermark is refused after the check or the recording."""
    import cv2

    from ..honesty.detection import Detector
    from ..honesty.liveness import LivenessCheck
    from ..tracking import MediaPipeTracker

    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise AvatarCamError(f"recording length {seconds!r} is not a positive number of "
                             "seconds", "give --seconds, e.g. --seconds 20")
    refuse_virtual_camera(camera, cameras)
    device: int | str = int(camera) if camera.isdigit() else camera
    cap = (opener or cv2.VideoCapture)(device)
    if not cap.isOpened():
        raise CameraError(f"camera {camera} could not be opened",
                          "check it is connected; `avatar-cam devices` lists cameras")
    path = folder / "camera.mp4"
    marks = _MarkSearch(Detector())
    guide = guide or Coverage()
    try:
        with display or Display() as shown, \
                MediaPipeTracker(smoothing=None) as tracker:  # raw: a blink lasts 3 frames
            with check or LivenessCheck() as live:
                seq = _check_liveness(cap, live, camera, marks, tracker, shown)
            frames, stopped, t = _record_guided(cap, guide, tracker, shown, seconds, path,
                                                marks, seq)
        marks.refuse_marked(camera)
    finally:
        cap.release()
        marks.close()
    if frames == 0:
        path.unlink(missing_ok=True)
        raise CameraError(f"camera {camera} gave no frames", "check it is not in use")
    if stopped and t < KEEP_MIN_S:
        path.unlink(missing_ok=True)
        raise CameraError(f"camera {camera} stopped {t:.1f} s into the recording "
                          f"({frames} frames; at least {KEEP_MIN_S:.0f} s are kept)",
                          "check it is connected and not used by another app, then "
                          "enroll again")
    _report(guide, frames, t, stopped, camera)
    return path


def _record_guided(cap: Any, guide: Coverage, tracker: Any, display: Display,
                   seconds: float, path: Path, marks: _MarkSearch,
                   seq: int) -> tuple[int, bool, float]:
    """Write every frame to ``path`` while ``guide`` follows every TRACK_EVERY-th one;
    until it is done or ``seconds`` have passed. Returns (frames written, whether the
    camera stopped, seconds recorded)."""
    import cv2

    from ..types import Frame

    writer = None
    frames, stopped = 0, False
    t0 = time.monotonic()
    t = 0.0
    try:
        while True:
            t = time.monotonic() - t0
            if t >= seconds:
                break
            ok, img = cap.read()
            if not ok:
                stopped = True
                break
            marks.add(img)
            if writer is None:
                fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                writer = cv2.VideoWriter(str(path), fourcc, 30.0,
                                         (img.shape[1], img.shape[0]))
                if not writer.isOpened():
                    raise AvatarCamError(f"cannot write the recording {path}",
                                         "check the disk has room and is writable")
            writer.write(img)
            frames += 1
            if frames % TRACK_EVERY == 1 or TRACK_EVERY == 1:
                t_ns = time.monotonic_ns()
                guide.add(tracker.track(Frame(seq + frames, t_ns, img)), t_ns / 1e9)
            status = guide.status()
            display.show(status.prompt, status.checklist(), seconds - t, img)
            if status.done:
                break
    finally:
        if writer is not None:
            writer.release()
    return frames, stopped, t


def _report(guide: Coverage, frames: int, t: float, stopped: bool, camera: str) -> None:
    status = guide.status()
    covered = ", ".join(LABELS[a] for a in status.covered) or "nothing"
    why = f"camera {camera} stopped" if stopped else \
        "everything recorded" if status.done else "the time was up"
    log.info("guided capture: %d frames in %.1f s (%s); covered: %s", frames, t, why,
             covered)
    if not status.done:
        log.warning("the recording does not show everything the avatar needs: %s; "
                    "enroll again following the prompts (or with a longer --seconds) to "
                    "record it", "; ".join(guide.lacks()))


class _MarkSearch:
    """Every WATERMARK_EVERY-th frame into the watermark detector, up to WATERMARK_FRAMES."""

    def __init__(self, detector: Any) -> None:
        self.detector, self.seen, self.added = detector, 0, 0

    def add(self, img: Any) -> None:
        self.seen += 1
        if self.seen % WATERMARK_EVERY == 1 and self.added < WATERMARK_FRAMES \
                and min(img.shape[:2]) >= 32:
            self.detector.add(img)
            self.added += 1

    def refuse_marked(self, camera: str) -> None:
        if self.added and self.detector.result().found:
            raise CameraError(f"camera {camera} shows avatar-cam's own output (its "
                              "watermark is in the picture)",
                              "enroll live from a real webcam, not a rendered avatar")

    def close(self) -> None:
        self.detector.close()


def _check_liveness(cap: Any, check: Any, camera: str, marks: _MarkSearch, tracker: Any,
                    display: Display) -> int:
    """Prompt and track until the check passes; fail with a clear error. A watermarked
    feed is named as such whether or not it fooled the check. Returns the frames read."""
    from ..types import Frame

    shown = ""
    status = check.status()
    seq = 0
    for seq in range(1, LIVENESS_MAX_FRAMES + 1):
        ok, img = cap.read()
        if not ok:
            marks.refuse_marked(camera)
            raise CameraError(f"camera {camera} stopped during the liveness check",
                              "check it is connected and not used by another app")
        marks.add(img)
        t_ns = time.monotonic_ns()
        status = check.update(tracker.track(Frame(seq, t_ns, img)), t_ns / 1e9, img)
        if status.prompt != shown:
            shown = status.prompt
            log.debug("liveness: %s", shown)
        display.show(f"Liveness: {status.prompt}",
                     [(LABELS[a], a in status.completed) for a in check.order], None, img)
        if status.passed or status.failed is not None:
            break
    marks.refuse_marked(camera)
    if status.passed:
        return seq
    why = status.failed or "it took too long"
    raise AvatarCamError(f"liveness check failed: {why}",
                         "enroll yourself, live, in good light, following the prompts "
                         "(or enroll from your own clip with --video and --consent; its "
                         "model records that liveness was not verified)")


def check_consent(statement: str) -> str:
    """The consent statement, verbatim; AvatarCamError if it says too little to be one."""
    words = [w for w in statement.split() if any(c.isalpha() for c in w)]
    if len(statement.strip()) < 12 or len(words) < 3:
        raise AvatarCamError("the consent statement is too short",
                             'say who is pictured and that they agree, e.g. --consent '
                             '"I am Alice and these are videos of me"')
    if any(not c.isprintable() and c not in "\n\t" for c in statement):
        raise AvatarCamError("the consent statement contains control characters",
                             "write it as plain text")
    return statement


LIVENESS_METHOD = ("camera: random prompts (turns, blink) and depth parallax of the turns "
                   "(planar fit, shading, outline); virtual cameras and watermarked feeds "
                   "refused")


def liveness_record(kind: str) -> dict[str, str]:
    """The signed metadata's liveness entry for an enrollment from ``kind``."""
    if kind == "camera":
        return {"liveness": "verified", "liveness_method": LIVENESS_METHOD}
    return {"liveness": "not verified",
            "liveness_method": f"none: enrolled from {'a clip' if kind == 'video' else 'photos'}"
                               f" (--{'video' if kind == 'video' else 'images'})"}
