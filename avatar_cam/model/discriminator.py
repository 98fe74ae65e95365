"""The projection discriminator D(frame, landmark image, person column) -> realism score.

score = <v(x, y), w0 + w_person> + b, where v is D's pooled feature projected to the
person-vector length; in meta-learning w_person is a row of a per-person table, in
enrollment one vector that starts at the embedder's e (the paper's initialization).
``forward`` also returns the block activations for the feature-matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .embedder import _Down


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = cfg.d_widths()
        sn = nn.utils.parametrizations.spectral_norm
        self.stem = sn(nn.Conv2d(6, w[0], 3, 2, 1))  # (B, w0, R/2, R/2)
        self.blocks = nn.ModuleList(_Down(w[i], w[i + 1], sn=True) for i in range(cfg.d_depth))
        self.to_person = sn(nn.Linear(w[-1], cfg.person_dim))
        self.w0 = nn.Parameter(torch.zeros(cfg.person_dim))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, image: Tensor, cond: Tensor,
                w_person: Tensor) -> tuple[Tensor, list[Tensor]]:
        """image (B, 3, R, R) in [-1, 1], cond (B, 3, R, R) in [0, 1], w_person (B or 1,
        person_dim) -> (scores (B,), activations of every block)."""
        h = self.stem(torch.cat([image, cond], 1))
        feats = [h]
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        v = self.to_person(F.relu(h).mean(dim=(2, 3)))  # (B, person_dim)
        score = (v * (self.w0 + w_person)).sum(1) + self.b
        return score, feats
