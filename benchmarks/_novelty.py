"""How new a held-out slice is outside the face (part ``novelty`` of quality.py).

Landmarks drive the face; hair, neck, shoulders and background can only come from what
the generator saw in training. For each held-out frame this finds the training frame
most like it there: the best SSIM outside the landmarks' hull (``evaluate``'s face /
rest split) among the ``NEAR`` training frames closest to it by a 32 px thumbnail.
Averaged over the held-out frames, it says how much of what landmarks cannot drive
appears anywhere in training. It is not a bound on the generator (which blends what it
saw), but a held-out slice showing a posture or a background that training never showed
scores low here, whatever the generator, and a slice that training covers scores high.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch

from avatar_cam.calibrate.dataset import Clip, split
from avatar_cam.calibrate.evaluate import face_mask
from avatar_cam.calibrate.train import to_tensor
from avatar_cam.model import losses

NEAR = 16  # training frames compared in full per held-out frame


def _thumbs(clip: Clip) -> np.ndarray:
    small = [cv2.resize(c, (32, 32), interpolation=cv2.INTER_AREA) for c in clip.crops]
    return np.stack(small).reshape(len(clip), -1).astype(np.float32) / 255.0


def nearest_rest(train: Clip, test: Clip, near: int = NEAR) -> dict[str, float]:
    """Mean and quartiles over ``test`` of the best SSIM outside the face against
    ``train``'s frames (``near`` candidates each)."""
    a, b = _thumbs(train), _thumbs(test)
    dist = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    best = []
    with torch.no_grad():
        for i in range(len(test)):
            cand = np.argsort(dist[i])[:near]
            t = to_tensor(np.repeat(test.crops[i:i + 1], len(cand), axis=0))
            maps = losses.ssim_map(to_tensor(train.crops[cand]), t).numpy()
            rest = ~face_mask(test.points[i], test.resolution)
            best.append(max(float(m[rest].mean()) for m in maps))
    q = np.percentile(best, [25, 50, 75])
    return {"mean": float(np.mean(best)), "q25": float(q[0]), "median": float(q[1]),
            "q75": float(q[2]), "near": near}


Load = Callable[[str], tuple[Clip | None, str]]
Blocks = Callable[[Clip, str], tuple[Clip, Clip, Clip]]


def part_novelty(data: dict[str, Any], megamind: Load, clip: Load,
                 blocks: Blocks) -> None:
    """Adds ``novelty`` to every measured Megamind person and clip in ``data`` (their
    own split: calibrate's, or ``blocks`` for a ``--split blocks`` run)."""
    for key, m in data.get("megamind", {}).items():
        if key.startswith("person") and key[6:].isdigit() and isinstance(m, dict):
            c, why = megamind(key[6:])
            m["novelty"] = {"skipped": why} if c is None else nearest_rest(*split(c)[::2])
    for key, m in data.get("clips", {}).items():
        if not isinstance(m, dict) or "ssim" not in m:
            continue
        name = key.removesuffix("-blocks")
        c, why = clip(name)
        if c is None:
            m["novelty"] = {"skipped": why}
            continue
        parts = blocks(c, name) if m.get("split_kind") == "blocks" else split(c)
        if len(parts[2]) != m["split"]["held_out"]:  # prepared differently since
            m["novelty"] = {"skipped": "the clip's preparation changed since it was measured"}
            continue
        m["novelty"] = nearest_rest(parts[0], parts[2])
        print(f"{key}: {m['novelty']['mean']:.3f}", flush=True)


def novelty_text(data: dict[str, Any], label: Callable[[str, dict[str, Any]], str]) -> str:
    """One sentence per measured case: what training shows of its held-out slice."""
    items = []
    for group in ("megamind", "clips"):
        for key, m in data.get(group, {}).items():
            n = m.get("novelty") if isinstance(m, dict) else None
            if n and "mean" in n:
                items.append(f"{label(key, m)} {n['mean']:.3f} (SSIM outside the face "
                             f"{m['ssim_outside']:.3f})")
    if not items:
        return ""
    return ("How new each held-out slice is outside the face (part `novelty`, _novelty.py): "
            "for every held-out frame, the best SSIM outside the landmarks' hull against "
            f"the {NEAR} training frames nearest by thumbnail, averaged: "
            + "; ".join(items) + ". Low means the slice shows a posture, hair or background "
            "that training never showed, which no face-driven generator can draw.")
