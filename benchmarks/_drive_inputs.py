"""drive.py's inputs: the avatars, the driver clips, and two source wrappers.

Avatars: the shipped demo identity (its neural generator), and one per real clip of
quality.py, enrolled as `avatar-cam calibrate NAME --video CLIP` prepares a clip
(``prepare_clip``: tracking, blur and hand filters, the person's photo frame, crops at
256 px) but without training: the photo chosen from the clip drives the warp renderer.
They are written to .cache/drive/calibration (never committed) and signed, as the tests'
``home`` fixture signs, with a key kept in .cache/drive/config (not the user's).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from _clips import CLIPS, _frames, fetch
from quality import CACHE, fetch_megamind

from avatar_cam.capture import Pacer, VideoFileSource
from avatar_cam.person import Person, load_person, person_dir, save_person
from avatar_cam.pipeline import SourceEndedError
from avatar_cam.types import Frame

DRIVE_CACHE = CACHE.parent / "drive"
ROOT = DRIVE_CACHE / "calibration"
ENROLL_FORMAT = 1  # in each avatar's person.json; bump when the enrollment changes
RESOLUTION = 256  # calibrate's default crop size
MEGAMIND_WHO = 0  # the Megamind person enrolled (0: the one in the most frames)
OWNER = "avatar-cam benchmarks"


def use_benchmark_key() -> None:
    """Sign with a key of the benchmark's own, not the user's (created on first use)."""
    os.environ["AVATAR_CAM_CONFIG"] = str(DRIVE_CACHE / "config")


@dataclass(frozen=True)
class Clip:
    key: str
    path: Path
    fps: float
    count: int  # frames in the file
    shows: str
    seconds: float | None = None  # enrollment uses only the first this many seconds
    who: int = 0


def clips() -> tuple[dict[str, Clip], dict[str, str]]:
    """The real clips that can be had ({key: Clip}) and why the others cannot."""
    out: dict[str, Clip] = {}
    missing: dict[str, str] = {}
    wanted: list[tuple[str, tuple[Path | None, str], str, float | None]] = [
        ("megamind", fetch_megamind(), "animation, two people, camera cuts", None)]
    wanted += [(k, fetch(CACHE, c), c.shows, c.seconds) for k, c in CLIPS.items()]
    for key, (path, why), shows, seconds in wanted:
        if path is None:
            missing[key] = why
            continue
        cap = cv2.VideoCapture(str(path))
        fps, count = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0, int(
            cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        out[key] = Clip(key, path, fps, count, shows, seconds)
    return out, missing


def avatar_name(key: str) -> str:
    """The avatar enrolled from clip ``key``."""
    return f"megamind-p{MEGAMIND_WHO}" if key == "megamind" else key


def enroll(clip: Clip, log: object = print) -> Person:
    """The no-training avatar of ``clip``'s person (cached under ROOT)."""
    name = avatar_name(clip.key)
    folder = person_dir(name, ROOT)
    if (folder / "person.json").is_file():
        try:
            person = load_person(name, ROOT)
            if person.meta.get("drive_enroll") == ENROLL_FORMAT:
                return person
        except Exception as exc:  # a damaged cache is made again
            print(f"re-enrolling {name}: {exc}")
    from avatar_cam.calibrate.dataset import photo_index, prepare_clip
    from avatar_cam.honesty.signing import sign_model
    from avatar_cam.tracking import HandFinder, MediaPipeTracker

    t0 = time.perf_counter()
    who = MEGAMIND_WHO if clip.key == "megamind" else 0
    with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as hands:
        prepared, affine, photo = prepare_clip(_frames(clip.path, clip.seconds), tracker.track,
                                               RESOLUTION, clip.path.name, who=who,
                                               covered=hands.covers)
    i = photo_index(prepared)
    consent = (f"benchmark avatar from {clip.path.name}, a clip a public package ships "
               f"({clip.shows}); not a person's own enrollment")
    meta = {"sources": [clip.path.name], "warp_source": f"frame {prepared.stats['photo_frame']}",
            "owner": OWNER, "consent": consent, "drive_enroll": ENROLL_FORMAT,
            "who": who, "seconds": clip.seconds, "clip_stats": prepared.stats,
            "enroll_s": round(time.perf_counter() - t0, 1)}
    person = Person(name, folder, photo, prepared.crops[i], prepared.points[i], affine, meta)
    save_person(person, ROOT, sign=lambda tmp: sign_model(tmp, OWNER, consent))
    return load_person(name, ROOT)


def driver_frames(clip: Clip, seconds: float, most: int) -> int:
    """Frames of ``clip`` a pair uses: the first ``seconds``, at most ``most``."""
    return min(clip.count, most, int(round(seconds * clip.fps)))


def read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames of ``path`` with these indices (one pass from the start)."""
    out: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        for n in itertools.count():
            if n > max(wanted, default=-1):
                break
            ok, img = cap.read()
            if not ok:
                break
            if n in wanted:
                out[n] = img
    finally:
        cap.release()
    return out


class Lockstep:
    """A video file handed to the pipeline one frame at a time: frame n+1 is read only
    after output n reached ``done`` (the pipeline's on_frame), so its one-slot mailboxes
    never drop one. Ends after ``frames`` frames, or when no output came for
    ``stall_s`` (the pipeline failed)."""

    def __init__(self, path: Path, frames: int, stall_s: float = 60.0) -> None:
        self._video = VideoFileSource(path, realtime=False)
        self.fps = self._video.fps
        self._go = threading.Semaphore(1)
        self._left, self._stall, self._closed = frames, stall_s, False

    def read(self) -> Frame:
        t_end = time.monotonic() + self._stall
        while not self._go.acquire(timeout=0.1):
            if self._closed or time.monotonic() > t_end:
                raise SourceEndedError("stopped")
        if self._left <= 0:
            raise SourceEndedError("all frames read")
        self._left -= 1
        return self._video.read()

    def done(self) -> None:
        self._go.release()

    def close(self) -> None:
        self._closed = True
        self._video.close()


class Camera30:
    """A video file played as a camera at ``fps`` whatever the file's rate (looping):
    the clock first, then the read, so capture time is when the frame is due."""

    def __init__(self, path: Path, fps: float = 30.0) -> None:
        self._video = VideoFileSource(path, realtime=False, loop=True)
        self.fps = fps
        self._pacer = Pacer(fps)

    def read(self) -> Frame:
        self._pacer.wait()
        return self._video.read()

    def close(self) -> None:
        self._video.close()
