"""Meta-learning's time per step (part ``metatrain`` of quality.py).

A small multi-person dataset built the way the tests build theirs: three looks of the
demo identity's photo (as is, channels rotated, contrast lowered), each acting random
motions under the warp renderer, written as mp4 clips, then ``prepare_dataset`` (real
MediaPipe tracking) at each resolution. ``metatrain`` runs with calibrate's defaults
(episodes of K = 8 shots, 8 episodes a step) and the adversarial terms on from the first
step, so every step is a full one; one step first as a warm-up.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from _report import machine

from avatar_cam.calibrate.dataset import widen_photos
from avatar_cam.calibrate.metatrain import metatrain, prepare_dataset
from avatar_cam.calibrate.train_common import TrainConfig
from avatar_cam.model.config import ModelConfig

LOOKS = (lambda c: c, lambda c: np.ascontiguousarray(c[:, :, [1, 2, 0]]),
         lambda c: cv2.convertScaleAbs(c, alpha=0.7, beta=40))


def write_identities(folder: Path, size: int, frames: int) -> None:
    from avatar_cam.person import load_person

    base = load_person("demo")
    for i, look in enumerate(LOOKS):
        person = replace(base, crop=look(base.crop))
        train, _ = widen_photos(person, size, count=frames, held=1, seed=i)
        (folder / f"id{i}").mkdir(parents=True)
        writer = cv2.VideoWriter(str(folder / f"id{i}" / "clip.mp4"),
                                 cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (size, size))
        for img in train.crops:
            writer.write(img)
        writer.release()


def part_metatrain(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(2)
    out: dict[str, Any] = {"people": len(LOOKS), "machine": machine(), "runs": {}}
    steps = {256: 3, 64: 10}
    with tempfile.TemporaryDirectory() as tmp:
        write_identities(Path(tmp) / "videos", 320, 24)
        for r, n in steps.items():
            data = Path(tmp) / f"data{r}"
            prepare_dataset(Path(tmp) / "videos", data, r, log=lambda _s: None)
            cfg = ModelConfig(resolution=r, condition="sketch+warp")
            tc = TrainConfig(steps=n, adv_start=0, eval_every=10**9)
            metatrain(data, Path(tmp) / "warm.safetensors", cfg, replace(tc, steps=1),
                      device="cpu", log=lambda _s: None)
            info = metatrain(data, Path(tmp) / f"meta{r}.safetensors", cfg, tc,
                             device="cpu", log=print)
            out["runs"][str(r)] = {k: info[k] for k in ("steps", "batch", "shots", "videos",
                                                        "seconds", "seconds_per_step")}
    return out


def meta_text(m: dict[str, Any]) -> str:
    runs = "; ".join(f"{r} px {v['seconds_per_step']:.2f} s" for r, v in m["runs"].items())
    any_run = next(iter(m["runs"].values()))
    return (f"Meta-learning (`metatrain`, {m['people']} synthetic identities, episodes of "
            f"K = {any_run['shots']}, {any_run['batch']} a step, adversarial terms on), "
            f"time per step on {m['machine']['cpu']} ({m['machine']['cores']} cores): "
            f"{runs} (measured {m.get('measured', '?')}; not measured on a GPU).")
