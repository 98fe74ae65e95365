"""`avatar-cam verify FILE | --camera INDEX`: does this picture carry our watermark,
and does the file carry a valid C2PA manifest?

Reads an image, the first frames of a video, or a live camera (for instance the
window of a call, looped back), runs the watermark detector over them as one video and
reports whether the mark is there, its payload (model fingerprint and minute) and the
confidence. A file's C2PA manifest is read and validated too (c2pa_manifest.py): present
or not, valid or not, its signer, and the model fingerprint, owner and liveness it names.

Exit status, like grep's: 0 marked (the watermark is found, or a valid avatar-cam
manifest says so) and no manifest fails validation; 1 neither watermark nor manifest;
3 a C2PA manifest is there but fails validation (the file was changed after it was
signed) or is damaged beyond reading (the watermark line still says whether the picture
carries the mark); 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..errors import AvatarCamError, CameraError, ImageError, VideoError
from .detection import Detection, Detector
from .watermark import ALGORITHM_VERSION, THRESHOLD, minute_to_unix

if TYPE_CHECKING:  # c2pa loads a native library: only when a file is checked
    from .c2pa_manifest import ManifestReport

DEFAULT_FILE_FRAMES = 300  # 10 s at 30 fps: plenty, the mark is in every frame
DEFAULT_CAMERA_FRAMES = 90
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
EXIT_MARKED, EXIT_NOT_MARKED, EXIT_ERROR, EXIT_MANIFEST_INVALID = 0, 1, 2, 3


@dataclass
class Report:
    """What verify found in one source; ``exit_code``: see the module docstring."""

    source: str
    kind: str  # image | video | camera
    found: bool
    confidence: float
    score: float
    frames_examined: int
    frames_marked: int  # frames marked on their own (score >= THRESHOLD)
    payload: int | None = None
    fingerprint: str | None = None  # 6 hex digits: the model's fingerprint
    minute: int | None = None
    made_at: str | None = None  # UTC minute the frames were made, from the payload
    version: int | None = None
    frame_scores: list[float] = field(default_factory=list)
    manifest: ManifestReport | None = None  # None for a camera (no file to read)

    @property
    def exit_code(self) -> int:
        m = self.manifest
        if m is not None and m.failed:
            return EXIT_MANIFEST_INVALID
        if self.found or (m is not None and m.valid and m.avatar_cam):
            return EXIT_MARKED
        return EXIT_NOT_MARKED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        head = "MARKED: made by avatar-cam (synthetic)" if self.found else "no avatar-cam mark"
        out = [f"{self.source}: {head}",
               f"  confidence {self.confidence:.9f} (score {self.score:.1f}, "
               f"threshold {THRESHOLD:.1f}), {self.frames_examined} frame(s) examined, "
               f"{self.frames_marked} marked on their own"]
        if self.found:
            if self.payload is None:
                out.append("  payload: unreadable (the picture is too degraded)")
            else:
                out.append(f"  model fingerprint {self.fingerprint}, made {self.made_at} "
                           f"(watermark v{self.version})")
        if self.manifest is not None:
            out += self.manifest.lines()
            fp = self.manifest.model_fingerprint
            if self.manifest.valid and fp and self.fingerprint and fp != self.fingerprint:
                out.append(f"  note: the manifest names model {fp}, the watermark "
                           f"{self.fingerprint}")
        return out


def _report(source: str, kind: str, det: Detection) -> Report:
    made = None
    if det.minute is not None:
        made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(minute_to_unix(det.minute)))
    return Report(source, kind, det.found, det.confidence, det.score, det.frames,
                  det.frames_marked, det.payload,
                  None if det.fingerprint is None else f"{det.fingerprint:06x}",
                  det.minute, made, det.version, [round(s, 2) for s in det.frame_scores])


def _frames(cap: cv2.VideoCapture, limit: int) -> Iterator[np.ndarray]:
    for _ in range(limit):
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        yield frame


def _detect(frames: Iterator[np.ndarray]) -> Detection:
    with Detector() as detector:
        for frame in frames:
            if min(frame.shape[:2]) < 32:
                raise ImageError(f"picture too small to check ({frame.shape[1]}x"
                                 f"{frame.shape[0]})", "give the original, at least 32x32")
            detector.add(frame)
        return detector.result()


def verify_path(path: Path | str, max_frames: int = DEFAULT_FILE_FRAMES,
                trust_anchors: Sequence[Path] = ()) -> Report:
    """Check an image or a video file (its first ``max_frames`` frames) for the mark, and
    its C2PA manifest (signers chaining to ``trust_anchors``, PEM files, are trusted)."""
    from .c2pa_manifest import read_manifest

    path = Path(path)
    report = _verify_pixels(path, max_frames)
    report.manifest = read_manifest(path, trust_anchors)
    return report


def _verify_pixels(path: Path, max_frames: int) -> Report:
    if not path.exists():
        raise VideoError(f"{path} does not exist", "check the path")
    if not path.is_file():
        raise VideoError(f"{path} is not a file", "give an image or a video file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ImageError(f"{path} is not a readable image", "check the file is not "
                             "truncated; PNG, JPEG, BMP, WebP and TIFF are read")
        return _report(str(path), "image", _detect(iter([image])))
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path} is not a readable video or image",
                             "give a video OpenCV can decode (mp4, webm, mkv, avi) or an image")
        det = _detect(_frames(cap, max_frames))
    finally:
        cap.release()
    if det.frames == 0:
        raise VideoError(f"{path} has no readable frames",
                         "check the file is not truncated or damaged")
    return _report(str(path), "video" if det.frames > 1 else "image", det)


def verify_camera(index: int | str, frames: int = DEFAULT_CAMERA_FRAMES) -> Report:
    """Check ``frames`` frames of a live camera (an index or a device path)."""
    device: int | str = int(index) if str(index).isdigit() else str(index)
    cap = cv2.VideoCapture(device)
    try:
        if not cap.isOpened():
            raise CameraError(f"cannot open camera {index}",
                              "check it is connected and not in use; avatar-cam devices "
                              "lists cameras")
        det = _detect(_frames(cap, frames))
    finally:
        cap.release()
    if det.frames == 0:
        raise CameraError(f"camera {index} delivered no frames",
                          "check that no other program holds it")
    return _report(f"camera {index}", "camera", det)


def add_verify_args(parser: argparse.ArgumentParser) -> None:
    """The `verify` subcommand's arguments."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", type=Path, help="an image or a video to check")
    what.add_argument("--camera", metavar="INDEX",
                      help="check a live camera instead (index such as 0, or /dev/videoN)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames to examine (default {DEFAULT_FILE_FRAMES} of a "
                             f"video, {DEFAULT_CAMERA_FRAMES} of a camera)")
    parser.add_argument("--trust", type=Path, action="append", default=[], metavar="PEM",
                        help="CA certificates whose C2PA signers count as trusted (e.g. "
                             "your organisation's root; may be given more than once)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="print nothing; the exit status says it (0 marked, 1 not, "
                          "2 error, 3 C2PA manifest invalid)")


def verify_main(args: argparse.Namespace) -> int:
    """Run `avatar-cam verify`; return the exit status of the module docstring."""
    try:
        if args.frames is not None and args.frames <= 0:
            raise AvatarCamError(f"--frames must be > 0, got {args.frames}")
        if args.camera is not None:
            if args.trust:
                raise AvatarCamError("--trust is for a file's C2PA manifest",
                                     "a camera has none: leave --trust out")
            report = verify_camera(args.camera, args.frames or DEFAULT_CAMERA_FRAMES)
        else:
            report = verify_path(args.file, args.frames or DEFAULT_FILE_FRAMES,
                                 args.trust)
    except AvatarCamError as exc:
        if not getattr(args, "quiet", False):
            print(f"avatar-cam: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(dict(report.to_dict(), algorithm=ALGORITHM_VERSION), indent=2))
    elif not args.quiet:
        print("\n".join(report.lines()))
    return report.exit_code
