"""Model configuration: one frozen dataclass shared by E, G and D, with commented defaults.

Two generator variants share the AdaIN machinery and the weight format:

- ``full``: the paper's layout (residual down blocks with instance norm, AdaIN residual
  blocks at the bottleneck and on the way up), plus U-Net skips, starting at full
  resolution. Several GFLOP a frame at 256: the quality reference.
- ``realtime``: the same idea sized for 2 CPU cores. A pixel-unshuffle stem moves the
  image to 1/4 resolution losslessly (a 256 px sketch becomes 48 channels at 64 px), all
  convolutions run at 64, 32 and 16 px, and a pixel-shuffle head returns to full size.
  About 0.3 GMAC a frame at 256 (``count_macs`` in generator.py says exactly).

Two conditionings (``condition``):

- ``sketch``: the paper's, G sees only the landmark sketch (3 channels) and must hold the
  person's whole appearance in its weights.
- ``sketch+warp``: the sketch plus the warp renderer's render of the person's own photo
  on the same landmarks (6 channels), and G outputs a correction added to that render
  (its last layer starts at zero, so an untrained G already equals the warp renderer).
  Texture, hair and background come from the photo; G learns what warping cannot do
  (shading, the inside of the mouth, eyelids, the drift of real frames from the photo).
  What ``calibrate`` trains by default: sharper faces from far fewer steps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

VARIANTS = ("full", "realtime")
CONDITIONS = ("sketch", "sketch+warp")
RESOLUTIONS = (64, 128, 256, 512)  # 64 and 128 are for tests and quick experiments


@dataclass(frozen=True)
class ModelConfig:
    resolution: int = 256  # square crop side in pixels; 512 is supported
    variant: str = "realtime"  # "full" (paper-like reference) or "realtime" (CPU budget)
    condition: str = "sketch"  # "sketch" (the paper's) or "sketch+warp" (see above)
    # Generator
    g_base: int = 24  # channels at the first (highest-resolution) conv level
    g_max: int = 128  # channel cap as widths double with depth
    g_depth: int = 2  # stride-2 levels below the first one (realtime: below 1/4 res)
    g_res_blocks: int = 2  # AdaIN residual blocks at the bottleneck
    # Embedder and person vector
    e_base: int = 16  # embedder channels at its first level (it runs at 1/2 res)
    person_dim: int = 128  # length of the person vector e (and of D's projection)
    # Discriminator
    d_base: int = 16  # channels at D's first level (it runs at 1/2 res)
    d_max: int = 128
    d_depth: int = 4  # stride-2 levels after the stem

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        low = self.resolution // (4 if self.variant == "realtime" else 1)
        if low >> self.g_depth < 4 or self.resolution >> (self.d_depth + 1) < 2:
            raise ValueError(f"depth too large for resolution {self.resolution}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and v <= 0 and f.name != "g_res_blocks":
                raise ValueError(f"{f.name} must be > 0, got {v}")

    @property
    def warp(self) -> bool:
        """True when G also takes the warp render and adds its output to it."""
        return self.condition == "sketch+warp"

    @property
    def cond_channels(self) -> int:
        """Channels of G's input: the sketch (3), then the warp render (3) if used."""
        return 6 if self.warp else 3

    def g_widths(self) -> list[int]:
        """Generator channels per level, finest first: len g_depth + 1."""
        return [min(self.g_base << i, self.g_max) for i in range(self.g_depth + 1)]

    def d_widths(self) -> list[int]:
        return [min(self.d_base << i, self.d_max) for i in range(self.d_depth + 1)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**data)  # files from before ``condition`` existed get "sketch"


def full_config(resolution: int = 256, condition: str = "sketch") -> ModelConfig:
    """The paper-sized reference generator (for quality comparisons and GPUs)."""
    return ModelConfig(resolution=resolution, variant="full", condition=condition, g_base=32,
                       g_max=256, g_depth=4, g_res_blocks=3, e_base=32, person_dim=256)


def tiny_config(resolution: int = 64, variant: str = "realtime",
                condition: str = "sketch") -> ModelConfig:
    """Tests: a few channels, a few milliseconds a step."""
    depth = 2 if variant == "realtime" else 3
    return ModelConfig(resolution=resolution, variant=variant, condition=condition,
                       g_base=8, g_max=16, g_depth=depth if resolution >= 64 else 1,
                       g_res_blocks=1, e_base=8, person_dim=16, d_base=8, d_max=16,
                       d_depth=3)
