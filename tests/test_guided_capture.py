"""Guided capture (`calibrate --camera`): the recording prompts for what the reference
bank lacks, with real MediaPipe on real pixels and a real mp4 writer. The webcam is the
one fake: a recording stand-in that shows the demo person, animated by the warp
renderer, doing what the liveness check and then the guide ask for (or holding still,
or unplugged mid-recording), and records what it was asked and how often it was read."""

from __future__ import annotations

import io
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from avatar_cam import bank, motion
from avatar_cam.calibrate import guide as guide_module
from avatar_cam.calibrate.camera import KEEP_MIN_S, record_camera
from avatar_cam.calibrate.guide import STEPS, Coverage, Display, has_display, window_works
from avatar_cam.errors import AvatarCamError, CameraError
from avatar_cam.honesty.liveness import PROMPTS, LivenessCheck
from avatar_cam.person import Person, load_person
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks

SIZE = 256  # small frames: MediaPipe and the warp are quicker, the face still ~150 px
NO_CAMERAS: Callable[[], list[dict[str, Any]]] = list
RAMP_S = (0.15, 0.3)  # the person reacts this late, then moves over this long


def act(action: str, since: float) -> motion.Motion:
    """What a cooperating person does ``since`` seconds after ``action`` was asked."""
    u = float(np.clip((since - RAMP_S[0]) / RAMP_S[1], 0.0, 1.0))
    return {
        "turn_left": motion.Motion(yaw=30.0 * u),
        "turn_right": motion.Motion(yaw=-30.0 * u),
        "look_up": motion.Motion(pitch=-20.0 * u),
        "look_down": motion.Motion(pitch=20.0 * u),
        "tilt": motion.Motion(roll=15.0 * u),
        "open_mouth": motion.Motion(jaw_open=u),
        "smile": motion.Motion(smile=u),
        "close_eyes": motion.Motion(blink_left=u, blink_right=u),
        "blink": motion.Motion(blink_left=1.0, blink_right=1.0)
        if 0.3 <= since % 1.0 < 0.55 else motion.Motion(),
        "talk": motion.Motion(jaw_open=0.5 - 0.5 * math.cos(2 * math.pi * 2.0 * since)),
    }.get(action, motion.Motion())


class GuidedCamera:
    """cv2.VideoCapture stand-in: the demo person at 30 frames a second doing what
    ``check`` asks and then, if ``cooperate``, what ``guide`` asks (else holding still);
    it stops (reads fail) ``stop_s`` seconds after the check is done. Records every
    action it was asked for (``asked``), its reads and whether it was released."""

    def __init__(self, person: Person, warp: WarpRenderer, check: LivenessCheck,
                 guide: Coverage, cooperate: bool = True, stop_s: float | None = None) -> None:
        self.neutral = (person.neutral * (SIZE / person.crop_size)).astype(np.float32)
        self.warp, self.check, self.guide = warp, check, guide
        self.cooperate, self.stop_s = cooperate, stop_s
        self.reads, self.guided_reads, self.released = 0, 0, False
        self.asked: list[str] = []  # the guide's actions, as this camera was asked them
        self._action, self._since = "", time.monotonic()
        self._guided_at: float | None = None
        self._last = self._since

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        now = self._last = time.monotonic()
        if self.check.status().done:
            self._guided_at = now if self._guided_at is None else self._guided_at
            if self.stop_s is not None and now - self._guided_at >= self.stop_s:
                return False, None
            self.guided_reads += 1
            action = self.guide.status().action
            if action != self._action and action != "done":
                self.asked.append(action)
            if not self.cooperate:
                action = "center"
        else:
            action = self.check.status().action
        if action != self._action:
            self._action, self._since = action, now
        points = motion.animate(self.neutral, act(action, now - self._since))
        time.sleep(1 / 30)
        return True, self.warp.render(Landmarks(0, 0, points, (SIZE, SIZE)))

    def release(self) -> None:
        self.released = True

    def guided_seconds(self) -> float:
        """From the first read after the check to the last read."""
        return 0.0 if self._guided_at is None else self._last - self._guided_at


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


@pytest.fixture(scope="module")
def warp(person: Person) -> WarpRenderer:
    return WarpRenderer(person.crop, person.neutral, resolution=SIZE)


def quick_check() -> LivenessCheck:
    """The check's prompt logic on landmarks (a blink after the random hold): the test
    hook test_liveness.py uses; the depth check is test_enroll_camera.py's subject."""
    return LivenessCheck(("blink",), timeout_s=5.0, rng=random.Random(0), parallax=False)


def mp4_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_a_cooperating_person_is_prompted_for_what_is_missing_and_it_stops_early(
        person: Person, warp: WarpRenderer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    check, guide = quick_check(), Coverage(talk_s=1.5)
    cam = GuidedCamera(person, warp, check, guide)
    seconds = 60.0  # the most it may record: this person is done far sooner
    with caplog.at_level(logging.INFO, logger="avatar_cam"):
        path = record_camera("0", seconds, tmp_path, opener=lambda _d: cam, check=check,
                             cameras=NO_CAMERAS, guide=guide, display=Display(window=False))
    status = guide.status()
    assert check.status().passed and status.done and status.covered == STEPS
    # Asked in COVERAGE's order, the talk last; each one asked once (this person does
    # each at once) and none that was already covered.
    assert guide.asked[0] == "center" and guide.asked[-1] == "talk"
    assert cam.asked == guide.asked  # the camera was asked exactly these, in this order
    order = [STEPS.index(a) for a in guide.asked[1:]]
    assert order == sorted(order) and len(set(order)) == len(order)
    assert guide.talked >= 1.5
    # It stopped once covered, well before the maximum (and the camera was not read on).
    assert cam.guided_seconds() < seconds / 2, cam.guided_seconds()
    assert mp4_frames(path) == cam.guided_reads > 30  # every frame it read is in the clip
    assert cam.released
    assert "everything recorded" in caplog.text and "does not show" not in caplog.text
    for action in guide.asked:  # the log shows each prompt, in bank.ASK's wording
        assert bank.ASK[action] in caplog.text


def test_prompts_have_one_wording() -> None:
    assert PROMPTS["turn_left"] == bank.ASK["turn_left"]
    assert all(PROMPTS[a] == bank.ASK[a] for a in PROMPTS)
    left = next(n for n in bank.COVERAGE if n.action == "turn_left")
    assert left.text.endswith(bank.ASK["turn_left"].lower())


def test_a_person_who_holds_still_is_recorded_until_the_maximum_and_told_what_is_missing(
        person: Person, warp: WarpRenderer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    check, guide = quick_check(), Coverage()
    cam = GuidedCamera(person, warp, check, guide, cooperate=False)
    seconds = 3.0
    with caplog.at_level(logging.INFO, logger="avatar_cam"):
        path = record_camera("0", seconds, tmp_path, opener=lambda _d: cam, check=check,
                             cameras=NO_CAMERAS, guide=guide, display=Display(window=False))
    status = guide.status()
    assert guide.reference is not None  # facing the camera: the reference frame
    assert status.covered == () and status.missing == STEPS
    assert seconds - 0.5 < cam.guided_seconds() < seconds + 0.5  # one frame's slack
    assert mp4_frames(path) == cam.guided_reads > 0 and cam.released
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "the time was up" in caplog.text
    for need in bank.COVERAGE:  # every need by its bank wording, and the talk
        assert need.text in warning[0]
    assert "s of talking" in warning[0]


@pytest.mark.parametrize("stop_s", [0.5, KEEP_MIN_S + 0.5])
def test_a_camera_that_stops_mid_recording(person: Person, warp: WarpRenderer,
                                           tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                           stop_s: float) -> None:
    """Unplugged soon after the check: a clear CameraError and no clip; later: the clip so
    far (at least KEEP_MIN_S) is kept, with what it lacks named."""
    check, guide = quick_check(), Coverage()
    cam = GuidedCamera(person, warp, check, guide, stop_s=stop_s)
    kw: dict[str, Any] = {"opener": lambda _d: cam, "check": check, "cameras": NO_CAMERAS,
                          "guide": guide, "display": Display(window=False)}
    with caplog.at_level(logging.INFO, logger="avatar_cam"):
        if stop_s < KEEP_MIN_S:
            with pytest.raises(CameraError, match=r"camera 0 stopped .* into the recording"):
                record_camera("0", 60.0, tmp_path, **kw)
            assert not (tmp_path / "camera.mp4").exists()
        else:
            path = record_camera("0", 60.0, tmp_path, **kw)
            assert mp4_frames(path) == cam.guided_reads > 0
            assert "camera 0 stopped" in caplog.text and "does not show" in caplog.text
    assert cam.released


def test_coverage_moves_on_from_a_prompt_not_done_and_comes_back(person: Person) -> None:
    """On exact landmarks (no tracker): a need not done within prompt_s gives way to the
    next missing one, round again; a need done out of turn is never asked."""
    neutral = person.neutral.astype(np.float32)
    guide = Coverage(talk_s=0.5, prompt_s=1.0)

    def feed(m: motion.Motion, t: float) -> str:
        points = motion.animate(neutral, m)
        return guide.add(Landmarks(0, 0, points, (person.crop_size,) * 2), t).action

    assert feed(motion.Motion(yaw=40.0), 0.0) == "center"  # turned: not the reference
    assert feed(motion.Motion(), 0.1) == "turn_left" and guide.reference is not None
    assert feed(motion.Motion(smile=1.0), 0.2) == "turn_left"  # smiled out of turn
    assert feed(motion.Motion(), 1.2) == "turn_right"  # the left turn timed out
    for i, m in enumerate([motion.Motion(yaw=-30.0), motion.Motion(pitch=-20.0),
                           motion.Motion(pitch=20.0), motion.Motion(roll=15.0),
                           motion.Motion(jaw_open=1.0)]):
        feed(m, 1.3 + 0.1 * i)
    assert feed(motion.Motion(), 1.9) == "close_eyes"  # the smile is not asked
    feed(motion.Motion(blink_left=1.0, blink_right=1.0), 2.0)
    assert guide.status().action == "turn_left"  # round again to the one left
    assert feed(motion.Motion(yaw=30.0), 2.1) == "talk"
    assert feed(motion.Motion(jaw_open=0.5), 2.4) == "talk" and not guide.status().done
    assert feed(motion.Motion(), 2.7) == "done" and guide.status().covered == STEPS
    assert guide.asked == ["center", "turn_left", "turn_right", "look_up", "look_down",
                           "tilt", "open_mouth", "close_eyes", "turn_left", "talk"]
    with pytest.raises(ValueError, match="finite"):
        guide.add(None, float("nan"))
    with pytest.raises(ValueError, match="talk_s"):
        Coverage(talk_s=-1.0)


def test_a_display_is_looked_for_and_the_terminal_is_the_fallback(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert not has_display({}, "linux") and has_display({"DISPLAY": ":0"}, "linux")
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({}, "darwin") and has_display({}, "win32")
    assert not window_works({}, "linux")
    if guide_module._gui_backend().upper() not in ("NONE", ""):
        # A display that cannot be reached: OpenCV's Qt aborts the probe, not this process.
        assert not window_works({"DISPLAY": ":97", "PATH": "/usr/bin"}, "linux")
    # A window that fails while recording: the prompts go on on the terminal.
    def broken(*_a: object) -> None:
        raise cv2.error("no window here")

    monkeypatch.setattr(cv2, "imshow", broken)
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    shown = Display(window=True, stream=tty)
    image = np.zeros((120, 160, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="avatar_cam"):
        shown.show("Smile", [("left", True), ("smile", False)], 12.4, image)
    assert "cannot show the capture window" in caplog.text and not shown.window
    shown.show("Smile", [("left", True), ("smile", False)], 11.6, image)  # same line
    shown.show("Look up", [("left", True), ("up", False)], 11.0, image)
    shown.close()
    out = tty.getvalue()
    first, second = "Smile  [x] left [ ] smile  12 s left", "Look up  [x] left [ ] up  11 s left"
    pad = " " * (len(first) - len(second))  # what is left of the longer line is blanked
    assert out == f"\r{first}\r{second}{pad}\n", repr(out)


def test_bad_input_is_refused(tmp_path: Path) -> None:
    for seconds in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(AvatarCamError, match="not a positive number of seconds"):
            record_camera("0", seconds, tmp_path, cameras=NO_CAMERAS)
