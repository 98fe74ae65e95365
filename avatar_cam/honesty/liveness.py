"""Liveness for camera enrollment: a person in front of the camera, not a photo of one.

The check prompts a few actions in a random order (turn the head to your left, to your
right, blink) and verifies each with the tracker's landmarks within a time limit. A
printed or on-screen photo cannot blink, and turning a flat picture does not move the
nose across the eyes (every point of a plane shifts alike), so it cannot pass the turns;
a replayed video does not know the order.

Measures (from Landmarks in pixels; no z, so the mirroring and scale of the camera do
not matter):
  turn: the nose tip's offset from the midpoint of the outer eye corners, along the line
    from the subject's right eye to the left eye, in inter-ocular distances (about
    0.0075 per degree of yaw); positive when the subject turns to their left.
  blink: the eye aspect ratio (lid gap over eye width, both eyes averaged) falling
    below half of its open value and reopening within BLINK_MAX_S.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import mesh
from ..types import Landmarks

ACTIONS = ("turn_left", "turn_right", "blink")
PROMPTS = {
    "center": "Look straight at the camera",
    "turn_left": "Slowly turn your head to your left",
    "turn_right": "Slowly turn your head to your right",
    "blink": "Blink once",
}
TURN = 0.12  # nose offset (inter-ocular distances) that counts as a turn: ~16 degrees
FRONTAL = 0.06  # ... and within which the face counts as frontal
CENTER_HOLD_S = 0.5  # frontal this long first: the baseline for the eyes
# Eye aspect ratio as shares of the open baseline. MediaPipe reads a closed eye of the
# warp renderer at 0.69 of open (measured on the demo identity) and a real blink lower;
# still eyes stay within 5% of their baseline, so 0.75 still needs a real change.
CLOSED, REOPENED = 0.75, 0.9
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


class LivenessCheck:
    """update(landmarks or None, t_s) -> LivenessStatus, once per camera frame."""

    def __init__(self, actions: Sequence[str] = ACTIONS, timeout_s: float = 8.0,
                 rng: random.Random | None = None) -> None:
        unknown = set(actions) - set(ACTIONS)
        if unknown or not actions:
            raise ValueError(f"actions must be some of {ACTIONS}, got {list(actions)}")
        order = list(actions)
        (rng or random.SystemRandom()).shuffle(order)
        self.order = tuple(order)
        self.timeout_s = timeout_s
        self._step = -1  # -1: holding still for the baseline
        self._done: list[str] = []
        self._step_start: float | None = None
        self._frontal_since: float | None = None
        self._open: list[float] = []
        self._eyes_open = 0.0
        self._closed_at: float | None = None
        self._last_seen: float | None = None
        self._failed: str | None = None

    def _status(self) -> LivenessStatus:
        if self._failed is not None:
            return LivenessStatus(f"Liveness check failed: {self._failed}", "done",
                                  tuple(self._done), failed=self._failed)
        if self._step >= len(self.order):
            return LivenessStatus("Thank you", "done", tuple(self._done), passed=True)
        action = "center" if self._step < 0 else self.order[self._step]
        return LivenessStatus(PROMPTS[action], action, tuple(self._done))

    def update(self, landmarks: Landmarks | None, t_s: float | None = None) -> LivenessStatus:
        """Feed one frame's landmarks (None: no face); ``t_s`` defaults to the capture time."""
        if self._failed is not None or self._step >= len(self.order):
            return self._status()
        if landmarks is None:
            if t_s is not None and self._last_seen is not None \
                    and t_s - self._last_seen > LOST_MAX_S:
                self._failed = "the face left the picture"
            return self._status()
        t = landmarks.t_capture_ns / 1e9 if t_s is None else t_s
        self._last_seen = t
        if self._step_start is None:
            self._step_start = t
        if t - self._step_start > self.timeout_s:
            what = "hold still facing the camera" if self._step < 0 else \
                PROMPTS[self.order[self._step]].lower()
            self._failed = f"did not {what} within {self.timeout_s:.0f} s"
            return self._status()
        turn, eyes = turn_ratio(landmarks.points), eye_aspect(landmarks.points)
        if self._step < 0:
            self._center(t, turn, eyes)
        elif self._satisfied(self.order[self._step], t, turn, eyes):
            self._done.append(self.order[self._step])
            self._next(t)
        return self._status()

    def _center(self, t: float, turn: float, eyes: float) -> None:
        if abs(turn) > FRONTAL:
            self._frontal_since, self._open = None, []
            return
        if self._frontal_since is None:
            self._frontal_since = t
        self._open.append(eyes)
        if t - self._frontal_since >= CENTER_HOLD_S:
            self._eyes_open = float(np.median(self._open))
            self._next(t)

    def _next(self, t: float) -> None:
        self._step += 1
        self._step_start = t
        self._closed_at = None

    def _satisfied(self, action: str, t: float, turn: float, eyes: float) -> bool:
        if action == "turn_left":
            return turn > TURN
        if action == "turn_right":
            return turn < -TURN
        # Blink: closed, then open again soon (a closed-eyes photo never reopens).
        if abs(turn) > FRONTAL * 2:
            return False
        if eyes < CLOSED * self._eyes_open:
            if self._closed_at is None:
                self._closed_at = t
            return False
        if self._closed_at is not None and eyes > REOPENED * self._eyes_open:
            quick = t - self._closed_at <= BLINK_MAX_S
            self._closed_at = None
            return quick
        return False

    def close(self) -> None:
        pass

    def __enter__(self) -> LivenessCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
