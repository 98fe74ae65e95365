"""Camera enrollment: only a real camera, a live person and a consent statement enroll.

``record_camera`` refuses virtual cameras (v4l2loopback nodes, OBS and other virtual
camera drivers, by name) and files before opening anything, runs the liveness check
(honesty/liveness.py: random prompts, depth parallax of the turns) and records the clip;
a feed that carries avatar-cam's watermark is refused whatever the check said.
``liveness_record`` is what the signed model says about it: "verified" only from here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import AvatarCamError, CameraError

log = logging.getLogger("avatar_cam")
LIVENESS_MAX_FRAMES = 30 * 60  # a minute of camera frames at most
# Names of virtual-camera drivers and apps (lower case, matched as substrings): a virtual
# camera can carry anything, our own avatar included, so it never enrolls anyone.
VIRTUAL_CAMERA_NAMES = ("v4l2loopback", "loopback", "dummy", "virtual", "obs", "avatar-cam",
                        "manycam", "xsplit", "vcam", "snap camera", "camtwist", "splitcam",
                        "akvcam", "webcamoid", "mmhmm", "nvidia broadcast", "fake")
WATERMARK_EVERY = 3  # every 3rd frame of the check and the recording is searched ...
WATERMARK_FRAMES = 60  # ... up to this many


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
            cameras: Callable[[], list[dict[str, Any]]] | None = None) -> Path:
    """Record ``seconds`` of the webcam into folder/camera.mp4, after a liveness check
    (turn the head, blink, in a random order, with depth parallax in the pixels) so that
    people enroll themselves rather than a photo, a replay or an avatar of someone else.
    A virtual camera is refused before it is opened; a feed that carries avatar-cam's
    watermark is refused after the check or the recording."""
    import cv2

    from ..honesty.detection import Detector
    from ..honesty.liveness import LivenessCheck

    refuse_virtual_camera(camera, cameras)
    device: int | str = int(camera) if camera.isdigit() else camera
    cap = (opener or cv2.VideoCapture)(device)
    if not cap.isOpened():
        raise CameraError(f"camera {camera} could not be opened",
                          "check it is connected; `avatar-cam devices` lists cameras")
    path = folder / "camera.mp4"
    writer = None
    marks = _MarkSearch(Detector())
    try:
        with check or LivenessCheck() as live:
            _check_liveness(cap, live, camera, marks)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            ok, img = cap.read()
            if not ok:
                break
            marks.add(img)
            if writer is None:
                fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                writer = cv2.VideoWriter(str(path), fourcc, 30.0,
                                         (img.shape[1], img.shape[0]))
            writer.write(img)
        marks.refuse_marked(camera)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        marks.close()
    if writer is None:
        raise CameraError(f"camera {camera} gave no frames", "check it is not in use")
    return path


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


def _check_liveness(cap: Any, check: Any, camera: str, marks: _MarkSearch) -> None:
    """Prompt (on stderr) and track until the check passes; fail with a clear error.
    A watermarked feed is named as such whether or not it fooled the check."""
    from ..tracking import MediaPipeTracker
    from ..types import Frame

    shown = ""
    status = check.status()
    # Raw landmarks: smoothing would flatten a blink, which lasts only a few frames.
    with MediaPipeTracker(smoothing=None) as tracker:
        for seq in range(LIVENESS_MAX_FRAMES):
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
                log.info("liveness: %s", shown)
            if status.passed or status.failed is not None:
                break
    marks.refuse_marked(camera)
    if status.passed:
        return
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
