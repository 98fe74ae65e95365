"""Real liveness attempts cut from real footage (for benchmarks/liveness.py).

The prompted motions are found in each clip by measures that are not the check's own:
- yaw: MediaPipe's 3D landmarks fitted (Umeyama, the rigid points) to the demo face's
  frontal mesh, the rotation's yaw in degrees, positive when the subject turns to their
  left (pose.angles; MediaPipe's own sign is the opposite);
- eye opening: the check's eye aspect ratio, against the person's open level just before.

Events:
- frontal run: at least RUN_S of frames with |yaw| <= FRONTAL_DEG, each within
  STEADY_DEG of the run's median: the person faces the camera (the check's random hold
  must fit in it);
- turn: after a frontal run, the yaw leaves the run's median by TURN_DEG or more; it
  begins at the last frame within 5 degrees of the median and is done where it passes
  TURN_DEG;
- blink: the eye aspect dips below half of its open level (the 90th percentile of the
  second before), stays under that half for at most 0.5 s, from open eyes (an open
  level of at least 0.6 of the clip's 75th percentile: not a flicker of eyes already
  nearly shut, as the crying Pexels woman's). How far the eyes reopen is measured, not
  required: the check's blink rule is judged on it.

An attempt is one contiguous stretch of the clip: the last RUN_S of a frontal run, then
the events that follow it, prompted in the order they happen (each action once, at its
first occurrence; a turn the other way before a prompted turn ends the list, as the check
would fail it; each event done within STEP_S of the one before, the first within STEP_S
of the earliest prompt). The check draws its own
random hold; the person in the clip acts when they did, which is after the prompt since
the frontal run lasts longer than any hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avatar_cam import geometry, mesh, pose
from avatar_cam.honesty import liveness as lv

RUN_S = 1.6  # > CENTER_HOLD_S's 1.5 s
FRONTAL_DEG = 8.0
STEADY_DEG = 3.0
TURN_DEG = 15.0  # a clear turn, as asked (the check's TURN is ~11-12 degrees on these
# faces; the clips' turns of 12-15 degrees are not taken for prompted ones)
STEP_S = 7.0  # < the check's 8 s per prompt
_RIGID = list(mesh.RIGID)


@dataclass(frozen=True)
class Event:
    action: str  # turn_left | turn_right | blink
    start: int  # frame where the motion begins
    at: int  # frame where it is done (turn: past TURN_DEG; blink: eyes back over half)
    size: float  # turn: degrees from the frontal median; blink: the dip (share of open)
    reopen: float = float("nan")  # blink: the highest opening within 0.8 s of the dip


@dataclass
class Attempt:
    start: int  # first frame (the hold's frontal run)
    end: int  # one past the last frame
    order: tuple[str, ...]
    events: list[Event] = field(default_factory=list)


def yaw_deg(points: np.ndarray, frontal: np.ndarray) -> float:
    _s, r, _t = geometry.fit_similarity(frontal[_RIGID].astype(np.float64),
                                        points[_RIGID].astype(np.float64))
    return -pose.angles(r)[0]


def measures(points: list[np.ndarray | None], frontal: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    yaw = np.array([np.nan if p is None else yaw_deg(p, frontal) for p in points])
    eyes = np.array([np.nan if p is None else lv.eye_aspect(p) for p in points])
    return yaw, eyes


def frontal_runs(yaw: np.ndarray, fps: float) -> list[tuple[int, int, float]]:
    """(start, end, median yaw) of each frontal run of at least RUN_S."""
    out: list[tuple[int, int, float]] = []
    start, vals = 0, list[float]()
    for i, y in enumerate([*yaw, np.nan]):
        ok = bool(np.isfinite(y) and abs(y) <= FRONTAL_DEG)
        if ok and vals and abs(y - float(np.median(vals))) > STEADY_DEG:
            ok = False
        if ok:
            if not vals:
                start = i
            vals.append(float(y))
            continue
        if len(vals) >= RUN_S * fps:
            out.append((start, i, float(np.median(vals))))
        start, vals = i, []
        if np.isfinite(y) and abs(y) <= FRONTAL_DEG:
            start, vals = i, [float(y)]
    return out[::-1]


def turns_after(yaw: np.ndarray, run: tuple[int, int, float], fps: float) -> list[Event]:
    """Turns away from the run's median within STEP_S * 3 after it."""
    _s, end, base = run
    out: list[Event] = []
    i, stop = end, min(len(yaw), end + int(3 * STEP_S * fps))
    last_near = end - 1
    while i < stop:
        d = yaw[i] - base
        if np.isfinite(d) and abs(d) < 5.0:
            last_near = i
        if np.isfinite(d) and abs(d) >= TURN_DEG:
            sign = np.sign(d)
            j = i
            while j < len(yaw) and np.isfinite(yaw[j]) and sign * (yaw[j] - base) >= 5.0:
                j += 1
            peak = float(np.nanmax(sign * (yaw[i:j] - base)))
            out.append(Event("turn_left" if sign > 0 else "turn_right", last_near + 1, i, peak))
            i = j
            last_near = j - 1
        i += 1
    return out[::-1]


def blinks(eyes: np.ndarray, fps: float) -> list[Event]:
    n, window = len(eyes), int(fps)
    floor = 0.6 * float(np.nanpercentile(eyes, 75))
    out: list[Event] = []
    i = 3
    while i < n - 1:
        o = float(np.nanpercentile(eyes[max(0, i - window):i], 90))
        if not (np.isfinite(eyes[i]) and o >= floor and eyes[i] < 0.5 * o):
            i += 1
            continue
        j = i
        while j + 1 < n and eyes[j + 1] < 0.5 * o:
            j += 1
        if (j - i + 1) / fps <= 0.5:
            low = i + int(np.nanargmin(eyes[i:j + 1]))
            reopen = float(np.nanmax(eyes[low:low + int(0.8 * fps) + 1])) / o
            out.append(Event("blink", i, j + 1, float(eyes[low]) / o, reopen))
        i = j + 2
    return out[::-1]


def attempts(yaw: np.ndarray, eyes: np.ndarray, fps: float) -> list[Attempt]:
    every_blink = blinks(eyes, fps)
    out: list[Attempt] = []
    # The runs from the last: of two runs before the same events, the nearer is kept.
    for run in reversed(frontal_runs(yaw, fps)):
        _s, end, _base = run
        events = sorted([*turns_after(yaw, run, fps),
                         *[b for b in every_blink if b.start >= end]], key=lambda e: e.start)
        chosen: list[Event] = []
        ready = end  # the earliest frame the next prompted motion may begin
        for e in events:
            if e.start < ready or any(c.action == e.action for c in chosen):
                continue
            # Done within STEP_S of the prompt: the last event, or the earliest the first
            # prompt can come (the shortest hold after the attempt's start).
            prompt = chosen[-1].at if chosen else end - int((RUN_S - 0.5) * fps)
            if e.at - prompt > STEP_S * fps:
                break
            if e.action.startswith("turn") and any(
                    o.action.startswith("turn") and o.action != e.action
                    and ready <= o.start < e.start for o in events):
                break  # the other way first: the check would fail it
            chosen.append(e)
            # A turn is done a few frames past its threshold (its depth evidence); a
            # blink that closes before then is not one the check saw prompted.
            ready = e.at + (lv.TURN_FRAMES + 2 if e.action.startswith("turn") else 1)
        if chosen and not (out and out[-1].events == chosen):
            out.append(Attempt(end - int(RUN_S * fps), min(len(yaw), chosen[-1].at
                                                        + int(fps)),
                               tuple(c.action for c in chosen), chosen))
    return out[::-1]
