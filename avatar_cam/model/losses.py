"""Losses that need no downloaded weights: L1, (multi-scale) SSIM, hinge adversarial,
discriminator feature matching; plus an optional perceptual loss from a local file.

Images here are (B, 3, H, W) in [-1, 1]; SSIM works on [0, 1] with the usual
11-tap Gaussian window (sigma 1.5), each channel on its own, then averaged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError

C1, C2 = 0.01**2, 0.03**2
MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
WINDOW = 11


def _gauss(device: torch.device) -> Tensor:
    x = torch.arange(WINDOW, dtype=torch.float32, device=device) - WINDOW // 2
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    return g / g.sum()


def _blur(x: Tensor, g: Tensor) -> Tensor:
    """Separable 11x11 Gaussian, 'valid' borders; all five SSIM maps in one batch."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, WINDOW, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, WINDOW), groups=c)


def float32(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Run ``fn`` in float32 even inside a bf16/fp16 autocast region: SSIM's variances
    are differences of near-equal means (E[x^2] - E[x]^2), which bf16's 8-bit mantissa
    turns into noise (MS-SSIM 0.95 for 0.99 on the same pair), and training on that
    noise wrecks the generator."""

    @functools.wraps(fn)
    def run(a: Tensor, b: Tensor) -> Tensor:
        with torch.autocast(a.device.type, enabled=False):
            return fn(a.float(), b.float())

    return run


def _ssim_maps(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """SSIM and contrast-structure maps (B, C, H - 10, W - 10); a, b in [0, 1]."""
    c = a.shape[1]
    maps = _blur(torch.cat([a, b, a * a, b * b, a * b], 1), _gauss(a.device))
    mu_a, mu_b, eaa, ebb, eab = maps.split(c, 1)
    saa, sbb, sab = eaa - mu_a**2, ebb - mu_b**2, eab - mu_a * mu_b
    cs = (2 * sab + C2) / (saa + sbb + C2)
    lum = (2 * mu_a * mu_b + C1) / (mu_a**2 + mu_b**2 + C1)
    return lum * cs, cs


def _ssim_parts(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image SSIM and contrast-structure means, (B,) each; a, b in [0, 1]."""
    s, cs = _ssim_maps(a, b)
    return s.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def to_unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) * 0.5).clamp(0, 1)


@float32
def ssim(a: Tensor, b: Tensor) -> Tensor:
    """SSIM per image (B,) of [-1, 1] images."""
    return _ssim_parts(to_unit(a), to_unit(b))[0]


@float32
def ssim_map(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel SSIM (B, H - 10, W - 10), channels averaged, of [-1, 1] images: pixel
    (i, j) is the window centred on (i + 5, j + 5). Its mean is ``ssim``."""
    return _ssim_maps(to_unit(a), to_unit(b))[0].mean(1)


def ms_scales(size: int) -> int:
    """How many MS-SSIM scales fit: the coarsest must still hold the 11-tap window."""
    n = 1
    while n < len(MS_WEIGHTS) and size >> n >= WINDOW:
        n += 1
    return n


@float32
def ms_ssim(a: Tensor, b: Tensor) -> Tensor:
    """Multi-scale SSIM per image (B,) of [-1, 1] images (fewer scales on small images)."""
    x, y = to_unit(a), to_unit(b)
    n = ms_scales(min(x.shape[-2:]))
    weights = torch.tensor(MS_WEIGHTS[:n], device=x.device)
    weights = weights / weights.sum()
    vals = []
    for i in range(n):
        s, cs = _ssim_parts(x, y)
        vals.append((s if i == n - 1 else cs).clamp(min=1e-6))  # relu-like: keeps pow finite
        if i < n - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.prod(torch.stack(vals, 1) ** weights, dim=1)


def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def feature_matching(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Mean L1 between D's activations on real and generated pairs (real detached)."""
    return sum((F.l1_loss(f, r.detach()) for r, f in zip(real, fake, strict=True)),
               torch.zeros(())) / max(len(real), 1)


class Perceptual(nn.Module):
    """Optional VGG19-style perceptual loss from a LOCAL safetensors file whose keys are
    torchvision's ``features.N.weight/bias`` (conv layers of VGG19). Nothing is downloaded."""

    LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)
    TAPS = (1, 6, 11, 20)  # relu1_1, relu2_1, relu3_1, relu4_1 in features' numbering

    def __init__(self, path: Path) -> None:
        super().__init__()
        from safetensors.torch import load_file

        layers: list[nn.Module] = []
        cin = 3
        for v in self.LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, 1, 1), nn.ReLU()]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        try:
            state = load_file(str(path))
            own = {k: v for k, v in state.items() if k.startswith("features.")}
            self.load_state_dict(own, strict=False)
            if not own:
                raise ValueError("no features.* tensors")
        except Exception as exc:
            raise ModelError(f"perceptual weights {path} are unusable ({exc})",
                             "pass a safetensors file with VGG19 features.* keys") from exc
        self.requires_grad_(False).eval()
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.225, 0.224, 0.229]).view(1, 3, 1, 1))

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        x = (to_unit(fake) - self.mean) / self.std  # BGR order: the stats are reversed
        y = (to_unit(real) - self.mean) / self.std
        loss = torch.zeros((), device=fake.device)
        for i, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if i in self.TAPS:
                loss = loss + F.l1_loss(x, y)
            if i >= max(self.TAPS):
                break
        return loss
