"""The embedder E(frame, landmark image) -> person vector e (the paper's identity code).

Averaged over K frames of one person, e starts the personalized AdaIN parameters
(psi = P e) and the discriminator's person column (w0 + e).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


class _Down(nn.Module):
    """Residual down block without normalization (E and D keep per-image statistics)."""

    def __init__(self, cin: int, cout: int, sn: bool = False) -> None:
        super().__init__()
        wrap = nn.utils.parametrizations.spectral_norm if sn else (lambda m: m)
        self.c1 = wrap(nn.Conv2d(cin, cout, 3, 1, 1))
        self.c2 = wrap(nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = wrap(nn.Conv2d(cin, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.c1(F.avg_pool2d(F.leaky_relu(x, 0.2), 2))
        return self.skip(F.avg_pool2d(x, 2)) + self.c2(F.leaky_relu(h, 0.2))


class Embedder(nn.Module):
    """forward(frames (B, 3, R, R) in [-1, 1], conds (B, 3, R, R) in [0, 1]) -> (B, person_dim).

    ``embed`` averages over the K frames of one person: (K, ...) -> (1, person_dim).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = [min(cfg.e_base << i, 4 * cfg.person_dim) for i in range(6)]
        self.stem = nn.Conv2d(6, w[0], 3, 2, 1)  # (B, w0, R/2, R/2)
        blocks, size, i = [], cfg.resolution // 2, 0
        while size > 8:
            blocks.append(_Down(w[min(i, 5)], w[min(i + 1, 5)]))
            size //= 2
            i += 1
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(w[min(i, 5)], cfg.person_dim)

    def forward(self, frames: Tensor, conds: Tensor) -> Tensor:
        h = self.blocks(self.stem(torch.cat([frames, conds], 1)))  # (B, C, ~8, ~8)
        return self.out(F.relu(h).mean(dim=(2, 3)))

    def embed(self, frames: Tensor, conds: Tensor) -> Tensor:
        return self(frames, conds).mean(0, keepdim=True)
