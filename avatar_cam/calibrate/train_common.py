"""What enrollment training (train.py), its batches (batches.py) and meta-learning
(metatrain.py) share: the training settings (``TrainConfig``), images and sketches to
and from tensors, and the device with its autocast.

Its own module so that those three import it and not each other: train.py imports
batches.py and metatrain.py (``load_meta`` for ``--init``), and neither imports it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ModelError
from ..raster import rasterize


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500  # upper bound; early stopping usually ends sooner
    batch: int = 8
    lr_g: float = 5e-4
    lr_d: float = 2e-4
    w_l1: float = 1.0
    w_ssim: float = 1.0  # weight of (1 - MS-SSIM)
    w_ssim1: float = 1.0  # weight of (1 - SSIM) at full resolution: fine structure
    w_adv: float = 0.02
    w_fm: float = 1.0
    w_perceptual: float = 0.1  # used only with a local perceptual weights file
    adv_start: int = 300  # adversarial terms join once G draws the face (cheaper, steadier)
    augment: bool = True
    jitter_scale: float = 0.06  # +- relative scale
    jitter_rotate: float = 5.0  # +- degrees
    jitter_shift: float = 0.05  # +- of the side
    landmark_noise: float = 0.35  # px at 256, scaled with resolution
    eval_every: int = 50
    patience: int = 6  # evaluations without a better validation SSIM before stopping
    preview_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    workers: int | None = None  # batch-making processes; None: 0 on a CPU, cores-1 on a GPU


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """(B, H, W, 3) uint8 BGR -> (B, 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_images(t: Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 BGR."""
    x = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def sketches(points: np.ndarray, resolution: int) -> np.ndarray:
    """(B, 478, 3) crop-pixel landmarks -> (B, R, R, 3) uint8 sketches."""
    return np.stack([rasterize(p, (resolution, resolution), resolution) for p in points])


def cond_tensor(sk: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """(B, R, R, C) uint8 conditioning images -> (B, C, R, R) float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(sk)).to(device)
    return t.permute(0, 3, 1, 2).float() / 255.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but no CUDA GPU is visible",
                         "use --device cpu (slower) or check the GPU driver")
    return torch.device(name)


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA (norm statistics stay float32 in AdaNorm); a no-op on CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=device.type == "cuda")
