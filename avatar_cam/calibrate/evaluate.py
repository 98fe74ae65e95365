"""`avatar-cam evaluate`: how well a person's generator reproduces frames it never saw.

On the held-out set saved at enrollment (or on a given clip of the same person):

- PSNR (dB, on uint8 BGR), SSIM and multi-scale SSIM (11-tap Gaussian, per channel).
- NME: the generated frame goes through MediaPipe (static mode); the mean distance of the
  478 points it finds to the driving landmarks, over the driving inter-ocular distance.
  ``face_found`` is the share of generated frames where it finds a face at all, and
  ``nme_real`` is the same measure on the real crops: the tracker's own floor.
- temporal stability: mean absolute frame-to-frame change of the output over that of the
  real frames, on consecutive frames (1.0: as steady as reality; above: flicker).
- render time per frame: conditioning image (sketch, warp render) and generator, in ms.

A side-by-side PNG (sketch | real | generated, one row per sample) is written for a
person to look at.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .. import mesh
from ..model import losses
from ..person import load_person
from ..render.condition import Conditioner
from ..render.neural import Infer, NeuralRenderer
from ..types import Frame
from .dataset import Clip, load_clip, prepare_clip, read_video
from .train_common import to_tensor

MAX_FRAMES = 400  # a longer clip is subsampled evenly


def nme(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean point distance (x, y) over the inter-ocular distance of ``truth``."""
    d = np.linalg.norm(found[:, :2] - truth[:, :2], axis=1).mean()
    return float(d / max(mesh.inter_ocular(truth), 1e-6))


def evaluate_clip(infer: Infer, clip: Clip, rows: int = 4, png: Path | None = None,
                  conditioner: Conditioner | None = None) -> dict[str, Any]:
    """All figures for ``clip`` rendered by ``infer`` from ``conditioner``'s images (the
    sketch alone by default); writes the side-by-side to ``png``."""
    from ..tracking import MediaPipeTracker

    r = clip.resolution
    conditioner = conditioner or Conditioner(r, warp=False)
    sketches, gens, times = [], [], []
    for pts in clip.points:
        t0 = time.perf_counter()
        cond = conditioner(pts, (r, r))
        gens.append(infer(cond))
        times.append((time.perf_counter() - t0) * 1e3)
        sketches.append(cond[:, :, :3])
    gen = np.stack(gens)
    mse = ((gen.astype(np.float64) - clip.crops.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    psnr = [10 * math.log10(255.0**2 / max(m, 1e-10)) for m in mse]
    ssim, msssim, face, outside = [], [], [], []
    with torch.no_grad():
        for a in range(0, len(gen), 16):
            g, t = to_tensor(gen[a:a + 16]), to_tensor(clip.crops[a:a + 16])
            ssim += losses.ssim(g, t).tolist()
            msssim += losses.ms_ssim(g, t).tolist()
            for m, pts in zip(losses.ssim_map(g, t).numpy(), clip.points[a:a + 16],
                              strict=True):
                inside = face_mask(pts, r)
                face.append(float(m[inside].mean()) if inside.any() else math.nan)
                outside.append(float(m[~inside].mean()) if (~inside).any() else math.nan)
    errs, errs_real = [], []
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        for i in range(len(gen)):
            lm = tracker.track(Frame(i, 0, gen[i]))
            if lm is not None:
                errs.append(nme(lm.points, clip.points[i]))
            real = tracker.track(Frame(i, 0, clip.crops[i]))
            if real is not None:
                errs_real.append(nme(real.points, clip.points[i]))
    consecutive = np.flatnonzero(np.diff(clip.index) == 1)
    if len(consecutive):
        d_gen = np.abs(gen[consecutive + 1].astype(np.float32) - gen[consecutive]).mean()
        d_real = np.abs(clip.crops[consecutive + 1].astype(np.float32)
                        - clip.crops[consecutive]).mean()
        temporal: dict[str, Any] = {"ratio": float(d_gen / max(d_real, 1e-6)),
                                    "output_change": float(d_gen), "real_change": float(d_real)}
    else:
        temporal = {"ratio": None, "output_change": None, "real_change": None}
    if png is not None:
        idx = np.linspace(0, len(gen) - 1, min(rows, len(gen))).astype(int)
        grid = np.vstack([np.hstack([sketches[i], clip.crops[i], gen[i]]) for i in idx])
        png.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(png), grid)
    return {
        "frames": len(gen), "resolution": r,
        "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
        "ms_ssim": float(np.mean(msssim)),
        # SSIM split by where it is lost: inside the face (the landmarks' hull, what the
        # landmarks drive) and outside it (hair, neck, background: what they cannot).
        "ssim_face": float(np.nanmean(face)), "ssim_outside": float(np.nanmean(outside)),
        "nme": float(np.mean(errs)) if errs else None,  # None: no face found at all
        "face_found": len(errs) / len(gen),
        "nme_real": float(np.mean(errs_real)) if errs_real else None,
        "temporal": temporal,
        "render_ms": float(np.median(times[1:] if len(times) > 1 else times)),
    }


def face_mask(points: np.ndarray, resolution: int) -> np.ndarray:
    """(R - 10, R - 10) bool: the landmarks' convex hull, on ``losses.ssim_map``'s grid."""
    mask = np.zeros((resolution, resolution), np.uint8)
    hull = cv2.convexHull(np.round(points[:, :2]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, (1,))
    h = losses.WINDOW // 2
    return mask[h:resolution - h, h:resolution - h].astype(bool)


def evaluate_person(name: str, video: Path | None = None, png: Path | None = None,
                    json_path: Path | None = None, device: str = "cpu",
                    root: Path | None = None) -> dict[str, Any]:
    """Evaluate calibration/NAME on its held-out set or on ``video``; write PNG and JSON."""
    from ..tracking import MediaPipeTracker

    person = load_person(name, root)
    with NeuralRenderer(person, device=device) as renderer:
        r = renderer.resolution
        if video is not None:
            with MediaPipeTracker(smoothing=None) as tracker:
                clip = prepare_clip(read_video(video), tracker.track, r, str(video))[0]
            what = str(video)
        else:
            clip = load_clip(person.folder / "heldout")
            what = "held-out set"
        if len(clip) > MAX_FRAMES:
            clip = clip.take(np.linspace(0, len(clip) - 1, MAX_FRAMES).astype(int))
        if png is None:
            png = json_path.with_suffix(".png") if json_path else person.folder / "evaluation.png"
        report = evaluate_clip(renderer.generate, clip, png=png,
                               conditioner=renderer.conditioner)
    held = renderer.meta.get("source", {}).get("split", {})
    report.update(person=name, on=what, png=str(png),
                  generator=renderer.meta.get("model", {}).get("variant"),
                  # how much of the held-out slice, outside the face, training showed
                  rest_in_training=held.get("rest_in_training") if video is None else None)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    return report
