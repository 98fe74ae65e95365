"""Liveness for camera enrollment: a person in front of the camera, not a photo of one.

The check prompts a few actions in a random order, after a frontal hold of random
length (turn the head to your left, to your right, blink), and verifies each with the
tracker's landmarks within a time limit; a turn the wrong way fails at once. Landmarks
alone are not enough: our own warp renderer and generator blink and turn a stolen photo
with every landmark where a real head's would be. So each turn must also show depth in
the pixels (parallax.py): the face must leave every homography of the frontal frame (a
flat photo moved, tilted or rolled does not), and its shading must change as a lit 3D
surface's does, or its nose swing in front of the head's outline. A replayed recording
of a real person is real 3D motion; only the random order and timing reject it (a
replay that happens to turn the prompted way in time passes: benchmarks/liveness.py
measures how often).

Measures (from Landmarks in pixels; no z, so the mirroring and scale of the camera do
not matter):
  turn: the nose tip's offset from the midpoint of the outer eye corners, along the line
    from the subject's right eye to the left eye, in inter-ocular distances; positive when
    the subject turns to their left. On real footage MediaPipe's 3D yaw is about 90-100
    degrees per unit of it (benchmarks/liveness.py), so TURN is about 11-12 degrees. It
    is read relative to the person's own frontal pose: the median over the random hold
    (a face is not symmetric and a camera is not straight ahead: cap12 sits at +0.03,
    franck at 0.00-0.06), so a turn is the same head rotation whoever makes it.
  blink: the eye aspect ratio (lid gap over eye width, both eyes averaged) falling below
    CLOSED of the person's open level just before (the 90th percentile of the last
    OPEN_WINDOW_S, so a laughing or squinting face is measured against its own opening)
    and coming back above REOPENED of that level within BLINK_MAX_S. On every real blink
    of the project's clips (benchmarks/liveness.py: 63 blinks, 4 people) the dip reaches
    0.04-0.48 of the open level and the eyes come back to 0.77-1.16 of it; the old rule's
    0.9 missed a laughing woman's and a turned man's blinks. A still or closed-eyes photo
    never dips and reopens. It says nothing against a renderer, which closes the avatar's
    eyes fully: the turns' parallax does that.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import mesh
from ..bank import ASK
from ..types import Landmarks
from . import parallax as depth

ACTIONS = ("turn_left", "turn_right", "blink")
# The wording is the guided capture's too (bank.ASK): one "turn your head to your left".
PROMPTS = {action: ASK[action] for action in ("center",) + ACTIONS}
TURN = 0.12  # nose offset from the frontal pose (inter-ocular distances) that is a turn
FRONTAL = 0.06  # ... and within which the face counts as frontal
HOLD_MAX = 0.10  # the hold's pose, absolute: a face this far off is not facing the camera
HOLD_STEADY = 0.06  # every hold frame within this of the hold's median: a person facing
# the camera sways by 0.03-0.07 over 1.5 s (the Pexels woman), MediaPipe's noise is ~0.005
CENTER_HOLD_S = (0.5, 1.5)  # frontal this long (random) first: the baseline pose
# Eye aspect ratio as shares of the open level just before (measured on real blinks: see
# the module docstring). A blink proves nothing against a renderer (ours closes the
# avatar's eyes fully): the turns' parallax does that.
CLOSED, REOPENED = 0.5, 0.7
OPEN_WINDOW_S = 1.0
TURN_FRAMES = 4  # frames turned past TURN whose depth evidence makes up one turn
REF_EVERY_S = 0.2  # the frontal reference frame is refreshed this often...
REF_FRONTAL = 0.03  # ... from frames this close to the frontal pose (a reference taken as
# the turn sets in leaves less turn to measure: the Pexels woman read 0.008 shading so)
# Depth evidence (parallax.py; thresholds from benchmarks/liveness.py, per attempt the
# median over its turns): a flat picture fits a homography to MediaPipe's noise (real
# turns: 0.028 and up); warp and generator renders show at most 0.055 shading in one turn
# (0.043 over an attempt's two) and 1.89 outline parallax, real turns 0.063-0.25 (where
# the light is not diffuse) or 2.68-3.46.
PLANAR_MIN = 0.012
SHADE_MIN = 0.06
OUTLINE_MIN = 2.4
BLINK_MAX_S = 0.8
LOST_MAX_S = 1.0  # no face for longer than this fails the check


def turn_ratio(points: np.ndarray) -> float:
    p = points[:, :2].astype(np.float64)
    right, left = p[mesh.RIGHT_EYE_OUTER], p[mesh.LEFT_EYE_OUTER]
    axis = left - right
    iod = float(np.linalg.norm(axis))
    if iod < 1e-6:
        return 0.0
    return float((p[mesh.NOSE_TIP] - (left + right) / 2) @ (axis / iod) / iod)


def eye_aspect(points: np.ndarray) -> float:
    p = points[:, :2].astype(np.float64)

    def one(top: int, bottom: int, outer: int, inner: int) -> float:
        width = float(np.linalg.norm(p[outer] - p[inner]))
        return float(np.linalg.norm(p[top] - p[bottom])) / max(width, 1e-6)

    # Mid-lid points of the MediaPipe mesh: 159/145 right eye, 386/374 left eye.
    return 0.5 * (one(159, 145, mesh.RIGHT_EYE_OUTER, mesh.RIGHT_EYE_INNER)
                  + one(386, 374, mesh.LEFT_EYE_OUTER, mesh.LEFT_EYE_INNER))


@dataclass(frozen=True)
class LivenessStatus:
    """What to show now and how far the check is."""

    prompt: str
    action: str  # center | turn_left | turn_right | blink | done
    completed: tuple[str, ...]
    passed: bool = False
    failed: str | None = None  # why, once failed

    @property
    def done(self) -> bool:
        return self.passed or self.failed is not None


@dataclass(frozen=True)
class TurnEvidence:
    """One prompted turn's depth evidence: medians over its TURN_FRAMES frames."""

    action: str
    planar: float  # depth.planar_residual
    shading: float  # depth.shading_score
    outline: float  # depth.outline_parallax (NaN where the outline was not found)


class LivenessCheck:
    """update(landmarks or None, t_s, image) -> LivenessStatus, once per camera frame.

    ``parallax=False`` checks the prompts on landmarks alone (no image needed): a test
    of the prompt logic, never enough to enroll (a warp of a photo passes it).
    """

    def __init__(self, actions: Sequence[str] = ACTIONS, timeout_s: float = 8.0,
                 rng: random.Random | None = None, parallax: bool = True) -> None:
        unknown = set(actions) - set(ACTIONS)
        if unknown or not actions:
            raise ValueError(f"actions must be some of {ACTIONS}, got {list(actions)}")
        if parallax and not {"turn_left", "turn_right"} & set(actions):
            raise ValueError("a parallax check needs a turn among its actions: without one "
                             "it has no depth to measure and would pass a renderer")
        rng = rng or random.SystemRandom()
        order = list(actions)
        rng.shuffle(order)
        self.order = tuple(order)
        # A random hold: a recording cannot know when the first prompt comes.
        self.hold_s = rng.uniform(*CENTER_HOLD_S)
        self.timeout_s = timeout_s
        self.parallax = parallax
        self.turns: list[TurnEvidence] = []
        self._step = -1  # -1: holding still for the baseline
        self._done: list[str] = []
        self._step_start: float | None = None
        self._frontal_since: float | None = None
        self._hold: list[float] = []  # turn ratios of the current frontal run
        self.baseline = 0.0  # the person's frontal turn ratio, from the hold
        self._eyes: list[tuple[float, float]] = []  # (t, eye aspect), last OPEN_WINDOW_S
        self._open_ref = 0.0  # the open level when the eyes started to close
        self._closed_at: float | None = None
        self._last_seen: float | None = None
        self._failed: str | None = None
        self._ref: tuple[float, np.ndarray, np.ndarray, float] | None = None
        self._evidence: list[tuple[float, float, float]] = []
        self._outliner: depth.Outliner | None = None
        self._settled = False  # the head was back from the last turn in this step

    def status(self) -> LivenessStatus:
        """What to show now and how far the check is."""
        if self._failed is not None:
            return LivenessStatus(f"Liveness check failed: {self._failed}", "done",
                                  tuple(self._done), failed=self._failed)
        if self._step >= len(self.order):
            return LivenessStatus("Thank you", "done", tuple(self._done), passed=True)
        action = "center" if self._step < 0 else self.order[self._step]
        return LivenessStatus(PROMPTS[action], action, tuple(self._done))

    def update(self, landmarks: Landmarks | None, t_s: float | None = None,
               image: np.ndarray | None = None) -> LivenessStatus:
        """Feed one frame's landmarks (None: no face) and, with ``parallax``, its BGR
        image; ``t_s`` defaults to the capture time."""
        if self._failed is not None or self._step >= len(self.order):
            return self.status()
        if landmarks is None:
            if t_s is not None and self._last_seen is not None \
                    and t_s - self._last_seen > LOST_MAX_S:
                self._failed = "the face left the picture"
            return self.status()
        if self.parallax and image is None:
            raise ValueError("a parallax check needs each frame's image")
        t = landmarks.t_capture_ns / 1e9 if t_s is None else t_s
        self._last_seen = t
        if self._step_start is None:
            self._step_start = t
        if t - self._step_start > self.timeout_s:
            what = "hold still facing the camera" if self._step < 0 else \
                PROMPTS[self.order[self._step]].lower()
            self._failed = f"did not {what} within {self.timeout_s:.0f} s"
            return self.status()
        points = landmarks.points
        # Relative to the frontal pose once the hold has measured it (0 until then).
        turn, eyes = turn_ratio(points) - self.baseline, eye_aspect(points)
        if self.parallax and image is not None and abs(turn) < REF_FRONTAL \
                and (self._ref is None or t - self._ref[0] >= REF_EVERY_S):
            self._ref = (t, points.copy(), depth.face_shading(image, points),
                         depth.outline_centre(self._mask(image), points))
        # Every frame: the eyes' open level and blinks are followed throughout, so a blink
        # right after its prompt is measured against the opening just before it.
        blinked = self._blinked(t, eyes)
        if self._step < 0:
            self._center(t, turn, eyes)
            return self.status()
        action = self.order[self._step]
        # Signed so that the prompted way is positive; the head may still be turned from
        # the last prompt when this one starts, so the wrong way counts once it was back.
        toward = turn if action == "turn_left" else -turn
        if abs(turn) < TURN:
            self._settled = True
        if action in ("turn_left", "turn_right") and self._settled and toward < -TURN:
            self._failed = "turned the wrong way"
        elif self._satisfied(action, turn, blinked, points, image):
            self._done.append(action)
            self._next(t)
            if self._step >= len(self.order):
                self._judge_depth()
        return self.status()

    def _mask(self, image: np.ndarray) -> np.ndarray:
        if self._outliner is None:
            self._outliner = depth.Outliner()
        return self._outliner.mask(image)

    def _center(self, t: float, turn: float, eyes: float) -> None:
        del eyes  # the blink's open level is measured when the blink is asked
        steady = not self._hold or abs(turn - float(np.median(self._hold))) < HOLD_STEADY
        if abs(turn) > HOLD_MAX or not steady:
            self._frontal_since, self._hold = None, []
            return
        if self._frontal_since is None:
            self._frontal_since = t
        self._hold.append(turn)
        if t - self._frontal_since >= self.hold_s:
            self.baseline = float(np.median(self._hold))
            self._next(t)

    def _next(self, t: float) -> None:
        self._step += 1
        self._step_start = t
        self._evidence = []
        self._settled = False

    def _satisfied(self, action: str, turn: float, blinked: float | None,
                   points: np.ndarray, image: np.ndarray | None) -> bool:
        if action in ("turn_left", "turn_right"):
            if (turn > TURN) if action == "turn_left" else (turn < -TURN):
                return self._turned(action, turn, points, image)
            return False
        # A blink that started closing once the prompt was shown.
        return blinked is not None and blinked >= (self._step_start or 0.0)

    def _blinked(self, t: float, eyes: float) -> float | None:
        """When a blink that ends with this frame began to close, else None: closed well
        below the open level just before, then open again soon (a still photo never dips;
        a closed-eyes one never reopens)."""
        if self._closed_at is not None:
            closed_at = self._closed_at
            if eyes > REOPENED * self._open_ref:
                self._closed_at = None
                return closed_at if t - closed_at <= BLINK_MAX_S else None
            if t - closed_at > BLINK_MAX_S:
                self._closed_at = None  # shut, not a blink: measure the opening anew
                self._eyes = []
            return None
        self._eyes = [(s, e) for s, e in self._eyes if t - s <= OPEN_WINDOW_S]
        if self._eyes and t - self._eyes[0][0] >= 0.3 * OPEN_WINDOW_S:
            level = float(np.percentile([e for _s, e in self._eyes], 90))
            if eyes < CLOSED * level:
                self._closed_at, self._open_ref = t, level
                return None
        self._eyes.append((t, eyes))
        return None

    def _turned(self, action: str, turn: float, points: np.ndarray,
                image: np.ndarray | None) -> bool:
        """One more frame turned the prompted way; True once the turn is complete."""
        if not self.parallax:
            return True
        if self._ref is None or image is None:
            return False  # no frontal reference yet: nothing to measure against
        _t, ref, ref_shading, ref_outline = self._ref
        outline = depth.outline_centre(self._mask(image), points)
        self._evidence.append((
            depth.planar_residual(ref, points),
            depth.shading_score(ref, ref_shading, depth.face_shading(image, points),
                                   turn),
            depth.outline_parallax(ref, ref_outline, points, outline)))
        if len(self._evidence) < TURN_FRAMES:
            return False
        e = np.array(self._evidence, dtype=np.float64)
        with np.errstate(all="ignore"):
            med = [float(np.nanmedian(c)) if np.isfinite(c).any() else float("nan")
                   for c in e.T]
        self.turns.append(TurnEvidence(action, *med))
        return True

    def _judge_depth(self) -> None:
        """After the last prompt: did the turns show a 3D head?"""
        if not self.parallax or not self.turns:
            return
        planar = float(np.nanmedian([e.planar for e in self.turns]))
        shading = [e.shading for e in self.turns if np.isfinite(e.shading)]
        outline = [e.outline for e in self.turns if np.isfinite(e.outline)]
        if not planar >= PLANAR_MIN:
            self._failed = "the face moved like a flat picture (a photo?)"
        elif not ((shading and float(np.median(shading)) >= SHADE_MIN)
                  or (outline and float(np.median(outline)) >= OUTLINE_MIN)):
            self._failed = ("the head turned without depth: its light and outline stayed "
                            "as in a picture (a photo animated by a renderer?)")

    def close(self) -> None:
        if self._outliner is not None:
            self._outliner.close()
            self._outliner = None

    def __enter__(self) -> LivenessCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
