"""The generator G(landmark image) -> face, with AdaIN parameters projected from a person
vector, and the personalized generator file (AdaIN folded in, safetensors).

Every adaptive layer is an ``AdaNorm``: instance norm (statistics in float32), then a
per-channel ``scale`` and ``shift``. Unfolded, they come from psi = P e (the projection
``Projection`` of the embedder's person vector e) or from a fine-tuned psi; folded, they
are stored buffers, so the personalized generator takes only the conditioning image.
Folding uses the very same arithmetic, which is why folded == unfolded bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError
from .config import ModelConfig

EPS = 1e-5
WEIGHTS_FORMAT = "avatar-cam-generator-1"


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


class AdaNorm(nn.Module):
    """Instance norm, then scale and shift per channel: from psi (AdaIN) or stored (folded)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.offset = 0  # where this layer's (gamma, beta) start in psi; set by the generator
        self.scale: Tensor
        self.shift: Tensor
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))

    def forward(self, x: Tensor, psi: Tensor | None) -> Tensor:
        y = F.instance_norm(x.float(), eps=EPS)  # statistics stay float32 (also under AMP)
        if psi is None:
            y = y * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)
        else:
            c, o = self.channels, self.offset
            gamma, beta = psi[:, o:o + c].float(), psi[:, o + c:o + 2 * c].float()
            y = y * (1.0 + gamma)[:, :, None, None] + beta[:, :, None, None]
        return y.to(x.dtype)

    def fold(self, psi: Tensor) -> None:
        """Store psi's (gamma, beta) for this layer; psi is (1, n_adain)."""
        c, o = self.channels, self.offset
        self.scale.copy_(1.0 + psi[0, o:o + c].float())
        self.shift.copy_(psi[0, o + c:o + 2 * c].float())


class ResBlock(nn.Module):
    """Pre-activation AdaIN residual block at constant width."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.n1, self.c1, self.n2, self.c2 = AdaNorm(c), conv3(c, c), AdaNorm(c), conv3(c, c)

    def forward(self, x: Tensor, psi: Tensor | None) -> Tensor:
        h = self.c1(F.relu(self.n1(x, psi)))
        return x + self.c2(F.relu(self.n2(h, psi)))


class DownBlock(nn.Module):
    """The paper's residual down block (plain instance norm): pool first, convs at 1/2 res."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.InstanceNorm2d(cin), conv3(cin, cout)
        self.n2, self.c2 = nn.InstanceNorm2d(cout), conv3(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.c1(F.avg_pool2d(F.relu(self.n1(x)), 2))
        return self.skip(F.avg_pool2d(x, 2)) + self.c2(F.relu(self.n2(h)))


class UpBlock(nn.Module):
    """The paper's AdaIN residual up block (nearest 2x)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n1, self.c1 = AdaNorm(cin), conv3(cin, cout)
        self.n2, self.c2 = AdaNorm(cout), conv3(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, psi: Tensor | None) -> Tensor:
        h = self.c1(F.interpolate(F.relu(self.n1(x, psi)), scale_factor=2.0, mode="nearest"))
        s = self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return s + self.c2(F.relu(self.n2(h, psi)))


class FastDown(nn.Module):
    """Realtime: one stride-2 conv, instance norm, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv, self.norm = conv3(cin, cout, 2), nn.InstanceNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


class FastUp(nn.Module):
    """Realtime: nearest 2x, conv + AdaIN + ReLU, add the skip, conv + AdaIN + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c1, self.n1 = conv3(cin, cout), AdaNorm(cout)
        self.c2, self.n2 = conv3(cout, cout), AdaNorm(cout)

    def forward(self, x: Tensor, skip: Tensor, psi: Tensor | None) -> Tensor:
        h = F.relu(self.n1(self.c1(F.interpolate(x, scale_factor=2.0, mode="nearest")), psi))
        return F.relu(self.n2(self.c2(h + skip), psi))


class Generator(nn.Module):
    """G: conditioning image -> face image, styled by psi (AdaIN parameters).

    forward(cond (B, C, R, R) float32 in [0, 1], psi (B, n_adain) or None when folded)
      -> (B, 3, R, R) float32 in [-1, 1], BGR like the training crops.

    C = cfg.cond_channels: the sketch, then (``sketch+warp``) the warp render, BGR. With
    the warp render the output is that render plus G's correction, clipped to [-1, 1];
    the correction's last conv starts at zero.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.g_widths()
        c = cfg.cond_channels
        self.realtime = cfg.variant == "realtime"
        if self.realtime:
            self.stem = conv3(c * 16, w[0])  # after pixel-unshuffle by 4
            self.downs = nn.ModuleList(FastDown(w[i], w[i + 1]) for i in range(cfg.g_depth))
            self.ups = nn.ModuleList(FastUp(w[i + 1], w[i]) for i in reversed(range(cfg.g_depth)))
            self.head = conv3(w[0], 3 * 16)  # before pixel-shuffle by 4
        else:
            self.stem = conv3(c, w[0])
            self.downs = nn.ModuleList(DownBlock(w[i], w[i + 1]) for i in range(cfg.g_depth))
            self.ups = nn.ModuleList(UpBlock(w[i + 1], w[i]) for i in reversed(range(cfg.g_depth)))
            self.head_norm = AdaNorm(w[0])
            self.head = conv3(w[0], 3)
        self.mids = nn.ModuleList(ResBlock(w[-1]) for _ in range(cfg.g_res_blocks))
        # Learned constants (StyleGAN's constant input, per person after fine-tuning): what
        # stays put in every frame (background, hair, clothes) need not be re-derived from
        # the sketch. One feature map at the first conv level and one image bias.
        low = cfg.resolution // 4 if self.realtime else cfg.resolution
        self.const = nn.Parameter(torch.zeros(1, w[0], low, low))
        self.image_bias = nn.Parameter(torch.zeros(1, 3, cfg.resolution, cfg.resolution))
        if cfg.warp:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]  # conv3 has a bias
        offset = 0
        for m in self.modules():
            if isinstance(m, AdaNorm):
                m.offset = offset
                offset += 2 * m.channels
        self.n_adain = offset

    def forward(self, cond: Tensor, psi: Tensor | None = None) -> Tensor:
        x = F.pixel_unshuffle(cond, 4) if self.realtime else cond
        x = self.stem(x) + self.const  # (B, w0, R/4 or R, ...)
        skips = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        for mid in self.mids:
            x = mid(x, psi)  # (B, w[-1], bottom, bottom)
        skips.pop()
        for up in self.ups:
            skip = skips.pop()
            x = up(x, skip, psi) if self.realtime else up(x, psi) + skip
        if self.realtime:
            y = F.pixel_shuffle(self.head(x), 4) + self.image_bias  # (B, 3, R, R)
        else:
            y = self.head(F.relu(self.head_norm(x, psi))) + self.image_bias
        if self.cfg.warp:
            return torch.clamp(cond[:, 3:6] * 2.0 - 1.0 + y, -1.0, 1.0)
        return torch.tanh(y)

    @torch.no_grad()
    def fold(self, psi: Tensor) -> None:
        """Bake psi (1, n_adain) into every AdaNorm; then call forward(cond) without psi."""
        if psi.shape != (1, self.n_adain):
            raise ValueError(f"psi must be (1, {self.n_adain}), got {tuple(psi.shape)}")
        for m in self.modules():
            if isinstance(m, AdaNorm):
                m.fold(psi)


class Projection(nn.Module):
    """P: person vector e (B, person_dim) -> psi (B, n_adain). Starts at psi = 0 (identity)."""

    def __init__(self, person_dim: int, n_adain: int) -> None:
        super().__init__()
        self.linear = nn.Linear(person_dim, n_adain)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, e: Tensor) -> Tensor:
        return self.linear(e)


def count_macs(g: Generator) -> int:
    """Multiply-accumulates of one forward pass at the configured resolution (convs only)."""
    total = 0

    def hook(m: nn.Module, _inp: Any, out: Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += int(out.numel()) * k

    handles = [m.register_forward_hook(hook) for m in g.modules() if isinstance(m, nn.Conv2d)]
    r = g.cfg.resolution
    with torch.no_grad():
        g(torch.zeros(1, g.cfg.cond_channels, r, r), torch.zeros(1, g.n_adain))
    for h in handles:
        h.remove()
    return total


# --- the personalized generator file -------------------------------------------------


def save_generator(g: Generator, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write a folded generator as safetensors; config and ``extra`` go in the header."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous()
               for k, v in g.state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, "config": g.cfg.to_json(),
            "extra": json.dumps(extra or {}, sort_keys=True)}
    save_file(tensors, str(path), metadata=meta)
    path.chmod(0o644)  # safetensors writes 0600; the file is meant to be shared and committed


def read_header(path: Path) -> dict[str, str]:
    """The safetensors metadata of a generator file, or ModelError."""
    from safetensors import safe_open

    fix = "re-run `avatar-cam calibrate` for this person to rebuild the file"
    if not path.is_file():
        raise ModelError(f"generator weights {path} are missing", fix)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error type for a bad header
        raise ModelError(f"generator weights {path} are corrupt ({exc})", fix) from exc
    if meta.get("format") != WEIGHTS_FORMAT:
        raise ModelError(f"{path} is not an avatar-cam generator file "
                         f"(format {meta.get('format')!r})", fix)
    return dict(meta)


def generator_config(path: Path) -> ModelConfig:
    """The model configuration in a generator file's header, or ModelError."""
    try:
        return ModelConfig.from_dict(json.loads(read_header(path)["config"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"generator weights {path} have a bad header ({exc})",
                         "re-run `avatar-cam calibrate` for this person") from exc


def load_generator(path: Path, resolution: int | None = None,
                   device: str = "cpu") -> tuple[Generator, dict[str, Any]]:
    """Load a folded generator; check every tensor's name and shape (and the resolution,
    when given). Returns (generator in eval mode, the ``extra`` dict saved with it)."""
    from safetensors.torch import load_file

    fix = "re-run `avatar-cam calibrate` for this person to rebuild the file"
    meta = read_header(path)
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"generator weights {path} have a bad header ({exc})", fix) from exc
    if resolution is not None and cfg.resolution != resolution:
        raise ModelError(
            f"generator {path} was built for {cfg.resolution}x{cfg.resolution}, "
            f"not {resolution}x{resolution}",
            f"use --resolution {cfg.resolution} or re-run calibrate at {resolution}")
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # truncated data and bad offsets
        raise ModelError(f"generator weights {path} are corrupt ({exc})", fix) from exc
    g = Generator(cfg)
    expected = g.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    bad = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or bad:
        detail = (f"missing {missing[:3]}" if missing else
                  f"unexpected {unexpected[:3]}" if unexpected else f"wrong shape {bad[:3]}")
        raise ModelError(f"generator weights {path} do not match their config ({detail})", fix)
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise ModelError(f"generator weights {path} contain NaN or infinite values", fix)
    g.load_state_dict(tensors)
    return g.to(device).eval(), extra
