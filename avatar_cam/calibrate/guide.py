"""Guided capture: what a camera recording still lacks for the reference bank, and the
prompt that records it next.

``Coverage.add(landmarks, t_s)`` takes one tracked frame (None: no face) and returns a
``GuideStatus``. The first frontal frame with open eyes and a closed mouth becomes the
reference ("Look straight at the camera" until then); every later frame's shape features
(bank.shape_features) are taken against it and bank.covered says which of bank.COVERAGE
they show, so the guide and the bank judge with the same thresholds. The prompt is the
first need still missing, in COVERAGE's order; one not done within ``prompt_s`` gives way
to the next missing one (and comes round again), so a person who cannot tilt their head
still gets asked for the rest. Once all are covered the person is asked to talk for
``talk_s`` seconds with the face in view: the minimum a finished capture records after
the poses, so that the clip holds a few seconds of a real talking mouth (what the
generator learns the mouth from) and, at 30 fps, far more than the 12 usable frames
enrollment needs (calibrate/dataset.py). That talk is asked for and timed, not verified.

``Display.show`` draws a prompt, a checklist and the time left: in an OpenCV window where
one can open (``window_works``), on the terminal otherwise (stderr, one line rewritten in
place on a tty, a log line per change of prompt elsewhere). No threads: the recording
loop (camera.py) calls both once a frame, with its own clock.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from .. import bank
from ..honesty.liveness import FRONTAL, turn_ratio
from ..types import Landmarks

log = logging.getLogger("avatar_cam")

TALK_S = 3.0  # talking recorded once every pose and expression is covered (see above)
PROMPT_S = 5.0  # a prompt not done in this long gives way to the next missing one
OPEN_EYES = 0.2  # the reference frame's lids (bank.py: about 0.3 open, under 0.1 shut)
GAP_MAX_S = 0.5  # a face unseen longer than this adds nothing to the talk time
WINDOW = "avatar-cam: guided capture"
LABELS = {"turn_left": "left", "turn_right": "right", "look_up": "up", "look_down": "down",
          "tilt": "tilt", "open_mouth": "mouth open", "smile": "smile",
          "close_eyes": "eyes closed", "talk": "talk", "blink": "blink", "center": "centre"}
STEPS = tuple(need.action for need in bank.COVERAGE) + ("talk",)


@dataclass(frozen=True)
class GuideStatus:
    """What to show now: ``prompt`` (bank.ASK's wording) for ``action`` (a key of ASK,
    "done" once everything is recorded); ``covered`` and ``missing`` are actions in
    STEPS order."""

    prompt: str
    action: str
    covered: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def done(self) -> bool:
        return not self.missing

    def checklist(self) -> list[tuple[str, bool]]:
        return [(LABELS[a], a in self.covered) for a in STEPS]


_NEED = {need.action: need for need in bank.COVERAGE}
_MOUTH, _EYES = bank.FEATURES.index("mouth_open"), (bank.FEATURES.index("eye_right"),
                                                    bank.FEATURES.index("eye_left"))


def _frontal(points: np.ndarray) -> bool:
    """Facing the camera (as the liveness check's hold measures it), eyes open, mouth
    closed (by the bank's own threshold for an open mouth)."""
    f = bank.shape_features(points, points)
    return abs(turn_ratio(points)) < FRONTAL and f[_MOUTH] < _NEED["open_mouth"].threshold \
        and min(f[_EYES[0]], f[_EYES[1]]) >= OPEN_EYES


class Coverage:
    """add(landmarks or None, t_s) -> GuideStatus, once per tracked frame."""

    def __init__(self, talk_s: float = TALK_S, prompt_s: float = PROMPT_S) -> None:
        if not (talk_s >= 0 and prompt_s > 0):
            raise ValueError(f"need talk_s >= 0 and prompt_s > 0, got {talk_s}, {prompt_s}")
        self.talk_s, self.prompt_s = float(talk_s), float(prompt_s)
        self.reference: np.ndarray | None = None  # (478, 3) the first frontal frame
        self._ref_row: np.ndarray | None = None
        self._flags = [False] * len(bank.COVERAGE)
        self.talked = 0.0  # seconds of face in view while asked to talk
        self.asked: list[str] = []  # every prompt shown, in order (actions)
        self._action = "center"
        self._since: float | None = None
        self._last_face: float | None = None

    def status(self) -> GuideStatus:
        covered = {n.action for n, ok in zip(bank.COVERAGE, self._flags, strict=True) if ok}
        if self.talked >= self.talk_s and all(self._flags):
            covered.add("talk")
        missing = tuple(a for a in STEPS if a not in covered)
        action = self._action if missing else "done"
        prompt = bank.ASK[action] if missing else "Thank you: all recorded"
        return GuideStatus(prompt, action, tuple(a for a in STEPS if a in covered), missing)

    def lacks(self) -> list[str]:
        """What the frames so far do not show, as bank.missing words it (and the talk)."""
        out = [n.text for n, ok in zip(bank.COVERAGE, self._flags, strict=True) if not ok]
        if self.talked < self.talk_s:
            out.append(f"less than {self.talk_s:g} s of talking ({self.talked:.1f} s): "
                       f"{bank.ASK['talk'].lower()}")
        return out

    def add(self, landmarks: Landmarks | None, t_s: float) -> GuideStatus:
        """Feed one tracked frame (None: no face) taken at ``t_s`` (seconds, any origin)."""
        if not np.isfinite(t_s):
            raise ValueError(f"t_s must be a finite time in seconds, got {t_s}")
        if self._since is None:
            self._since = t_s
            self.asked.append(self._action)
        if landmarks is not None:
            points = landmarks.points
            if self.reference is None or self._ref_row is None:
                if _frontal(points):
                    self.reference = points.astype(np.float64)
                    self._ref_row = bank.shape_features(self.reference, self.reference)
            else:
                row = bank.shape_features(points, self.reference)
                flags = bank.covered(np.stack([self._ref_row, row]))
                self._flags = [a or b for a, b in zip(self._flags, flags, strict=True)]
                if self._action == "talk" and self._last_face is not None:
                    self.talked += min(t_s - self._last_face, GAP_MAX_S)
            self._last_face = t_s
        self._choose(t_s)
        return self.status()

    def _choose(self, t_s: float) -> None:
        if self.reference is None:
            return  # still "center"
        missing = [n.action for n, ok in zip(bank.COVERAGE, self._flags, strict=True)
                   if not ok]
        if not missing:
            if self._action != "talk":
                self._ask("talk", t_s)
            return
        if self._action in missing and t_s - (self._since or t_s) < self.prompt_s:
            return
        # The next missing need after the current one in COVERAGE order, round again (the
        # same one, asked afresh, when it is the only one left).
        at = STEPS.index(self._action) if self._action in STEPS else -1
        later = [a for a in missing if STEPS.index(a) > at]
        self._ask((later or missing)[0], t_s)

    def _ask(self, action: str, t_s: float) -> None:
        if action != self._action:
            self.asked.append(action)
        self._action, self._since = action, t_s


def has_display(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a desktop is there to open a window on: DISPLAY or WAYLAND_DISPLAY on
    Linux and other Unixes; always on macOS and Windows."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _gui_backend() -> str:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip()
    return "NONE"


_PROBE = ("import cv2, numpy\ncv2.imshow('avatar-cam', numpy.zeros((8, 8, 3), numpy.uint8))\n"
          "cv2.waitKey(1)\ncv2.destroyAllWindows()\n")


def window_works(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether an OpenCV window can open here: a display, OpenCV built with a GUI and,
    on Linux, a child process that opened one (OpenCV's Qt aborts the whole process
    when the display in DISPLAY cannot be reached, so it is tried where that costs
    nothing; about a second)."""
    platform = sys.platform if platform is None else platform
    if not has_display(env, platform) or _gui_backend().upper() in ("NONE", ""):
        return False
    if platform == "darwin" or platform.startswith("win"):
        return True
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True,
                              timeout=20, env=dict(os.environ if env is None else env),
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class Display:
    """show(prompt, checklist, seconds left or None, BGR image) once a frame, close().

    ``window``: None tries one where ``window_works``; on the terminal ``stream``
    (stderr) gets one line rewritten in place where it is a tty, else each new prompt
    is logged."""

    def __init__(self, window: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.window = window_works() if window is None else window
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._line, self._prompt, self._width = "", "", 0
        self._opened = False

    def show(self, prompt: str, checklist: Sequence[tuple[str, bool]],
             left_s: float | None, image: np.ndarray | None = None) -> None:
        if self.window and image is not None:
            try:
                self._draw(prompt, checklist, left_s, image)
                return
            except Exception as exc:  # noqa: BLE001 - any GUI failure: the terminal
                log.warning("cannot show the capture window (%s); prompts on the terminal",
                            exc)
                self.window = False
        self._terminal(prompt, checklist, left_s)

    def _terminal(self, prompt: str, checklist: Sequence[tuple[str, bool]],
                  left_s: float | None) -> None:
        items = " ".join(f"[{'x' if ok else ' '}] {label}" for label, ok in checklist)
        left = "" if left_s is None else f"  {max(left_s, 0.0):.0f} s left"
        if not self.tty:
            if prompt != self._prompt:
                self._prompt = prompt
                log.info("%s  %s%s", prompt, items, left)
            return
        line = f"{prompt}  {items}{left}"
        if line != self._line:
            pad = " " * max(self._width - len(line), 0)
            self.stream.write(f"\r{line}{pad}")
            self.stream.flush()
            self._line, self._width = line, len(line)

    def _draw(self, prompt: str, checklist: Sequence[tuple[str, bool]],
              left_s: float | None, image: np.ndarray) -> None:
        import cv2

        # Mirrored, as a selfie preview is: turning left moves the face to the left.
        view = np.ascontiguousarray(image[:, ::-1])
        h, w = view.shape[:2]
        scale = max(w / 960.0, 0.4)
        thick = max(int(round(2 * scale)), 1)
        font = cv2.FONT_HERSHEY_SIMPLEX
        left = "" if left_s is None else f"   {max(left_s, 0.0):.0f} s left"
        bar = int(44 * scale)
        cv2.rectangle(view, (0, 0), (w, bar), (0, 0, 0), -1)
        cv2.putText(view, prompt + left, (int(10 * scale), int(31 * scale)), font,
                    0.9 * scale, (255, 255, 255), thick, cv2.LINE_AA)
        for i, (label, ok) in enumerate(checklist):
            y = bar + int((30 + 30 * i) * scale)
            colour = (80, 220, 80) if ok else (200, 200, 200)
            cv2.putText(view, f"{'[x]' if ok else '[ ]'} {label}", (int(10 * scale), y),
                        font, 0.7 * scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(view, f"{'[x]' if ok else '[ ]'} {label}", (int(10 * scale), y),
                        font, 0.7 * scale, colour, thick, cv2.LINE_AA)
        cv2.imshow(WINDOW, view)
        cv2.waitKey(1)
        self._opened = True

    def close(self) -> None:
        if self._opened:
            import cv2

            try:
                cv2.destroyWindow(WINDOW)
                cv2.waitKey(1)
            except Exception:  # noqa: BLE001 - closing a window that failed: nothing lost
                pass
            self._opened = False
        if self.tty and self._line:
            self.stream.write("\n")
            self.stream.flush()
            self._line, self._width = "", 0

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
