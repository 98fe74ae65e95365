"""Enrollment training: fine-tune G (and its person's AdaIN parameters psi) and D on one
person's aligned crops, keep the generator that does best on the validation slice.

Per step: a batch of training crops with landmarks, jointly jittered (small random
scale, rotation and shift of image and landmarks alike, plus sub-pixel landmark noise,
so the generator learns to follow the sketch instead of memorizing frames), the
conditioning re-made from the jittered landmarks by ``render.condition.Conditioner``
(the sketch, and for a ``sketch+warp`` generator the warp render of the person's photo,
``reference``); G's loss is L1 + (1 - MS-SSIM) + (1 - SSIM) and, after
``adv_start`` steps, hinge adversarial + feature matching against the projection D
(person column w, started from e in the paper's way when ``--init`` gives E and P).
Every ``eval_every`` steps the validation SSIM decides the best generator so far; no
improvement for ``patience`` evaluations stops training early.

Checkpoints (``work/ckpt.safetensors`` + ``work/state.json``) hold G, psi, D, w and both
Adam states, so an interrupted run resumes where it was.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from ..errors import ModelError
from ..model import losses
from ..model.config import ModelConfig
from ..model.discriminator import Discriminator
from ..model.generator import Generator
from ..render.condition import Conditioner, Reference
from .batches import Batches, default_workers
from .dataset import Clip
from .metatrain import load_meta
from .scenes import Scenes, by_scene
from .train_common import (
    TrainConfig,
    autocast,
    cond_tensor,
    pick_device,
    sketches,
    to_images,
    to_tensor,
)


@dataclass
class Result:
    generator: Generator  # folded, eval mode, on CPU
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    best_val_ssim: float = float("nan")
    steps_run: int = 0
    seconds: float = 0.0
    seconds_per_step: float = 0.0
    stopped_early: bool = False


@dataclass
class Models:
    """Everything one person's fine-tuning optimizes."""

    g: Generator
    d: Discriminator
    psi: torch.nn.Parameter  # (1, n_adain)
    w: torch.nn.Parameter  # (1, person_dim): D's person column (beside its w0)


def new_models(cfg: ModelConfig, init: Path | None, data: Clip,
               device: torch.device) -> Models:
    """From scratch (psi = 0, w = 0), or from a meta-learned checkpoint: psi = P e and
    w = e with e the embedder's mean over up to 32 training frames (the paper's start)."""
    if init is None:
        g, d = Generator(cfg), Discriminator(cfg)
        psi = torch.zeros(1, g.n_adain)
        w = torch.zeros(1, cfg.person_dim)
    else:
        meta = load_meta(init, cfg.resolution)
        if meta.cfg != cfg:
            cfg = meta.cfg  # the checkpoint's shape wins; the caller reads it back from g
        g, d = meta.g, meta.d
        k = np.linspace(0, len(data) - 1, min(32, len(data))).astype(int)
        with torch.no_grad():
            e = meta.e.embed(to_tensor(data.crops[k]),
                             cond_tensor(sketches(data.points[k], cfg.resolution)))
            psi, w = meta.p(e), e
    return Models(g.to(device).train(), d.to(device).train(),
                  torch.nn.Parameter(psi.to(device)), torch.nn.Parameter(w.to(device)))


@torch.no_grad()
def evaluate_ssim(g: Generator, psi: Tensor | None, data: Clip, cond_images: np.ndarray,
                  device: torch.device, batch: int = 16) -> tuple[float, float]:
    """(mean SSIM, mean L1) of G on ``data`` (no augmentation), given its conditioning
    images (made once: they do not change between evaluations)."""
    g.eval()
    s_sum, l_sum = 0.0, 0.0
    for a in range(0, len(data), batch):
        cond = cond_tensor(cond_images[a:a + batch], device)
        real = to_tensor(data.crops[a:a + batch], device)
        with autocast(device):
            fake = g(cond, None if psi is None else psi.expand(len(cond), -1)).float()
        s_sum += float(losses.ssim(fake, real).sum())
        l_sum += float((fake - real).abs().mean(dim=(1, 2, 3)).sum())
    g.train()
    return s_sum / len(data), l_sum / len(data)


def preview(g: Generator, psi: Tensor | None, data: Clip, conditioner: Conditioner,
            device: torch.device, path: Path, rows: int = 4) -> None:
    """PNG grid, one row per sample: sketch | (warp render |) real | generated."""
    idx = np.linspace(0, len(data) - 1, min(rows, len(data))).astype(int)
    cond = conditioner.batch(data.points[idx])
    g.eval()
    with torch.no_grad(), autocast(device):
        fake = g(cond_tensor(cond, device), None if psi is None else psi.expand(len(idx), -1))
    g.train()
    gen = to_images(fake)
    parts = [[cond[i, :, :, c:c + 3] for c in range(0, cond.shape[3], 3)]
             + [data.crops[j], gen[i]] for i, j in enumerate(idx)]
    cv2.imwrite(str(path), np.vstack([np.hstack(row) for row in parts]))


def fit(cfg: ModelConfig, train: Clip, val: Clip, tc: TrainConfig, *, device: str = "cpu",
        init: Path | None = None, work: Path | None = None, perceptual: Path | None = None,
        reference: Reference | None = None, progress: bool = True,
        log: Callable[[str], None] = lambda _s: None, watch: Clip | None = None,
        scenes: Scenes | None = None) -> Result:
    """Train on ``train``, select and stop on ``val``; returns the folded best generator.
    ``reference``: the person's crop and neutral landmarks, which a ``sketch+warp``
    generator warps (required for one). ``scenes``: a sketch+warp generator trains and
    validates each frame on its own scene's reference instead (``scenes.py``); the
    photo stays what it renders from. ``watch``: frames whose SSIM each evaluation
    records (history ``watch_ssim``, made from the photo) and nothing uses: a
    benchmark's held-out slice, to see what selecting on ``val`` costs."""
    from tqdm import tqdm

    dev = pick_device(device)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    if train.resolution != cfg.resolution or val.resolution != cfg.resolution:
        raise ValueError(f"data at {train.resolution} px for a {cfg.resolution} px model")
    m = new_models(cfg, init, train, dev)
    cfg = m.g.cfg
    if cfg.warp and reference is None:
        raise ValueError("a sketch+warp generator trains with the person's crop (reference)")
    conditioner = Conditioner(cfg.resolution, cfg.warp, reference)
    opt_g = torch.optim.Adam([*m.g.parameters(), m.psi], lr=tc.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*m.d.parameters(), m.w], lr=tc.lr_d, betas=(0.5, 0.999))
    perc = losses.Perceptual(perceptual).to(dev) if perceptual is not None else None
    state: dict[str, Any] = {"step": 0, "best_val_ssim": -1.0, "best_step": 0, "history": [],
                             "bad_evals": 0, "seconds": 0.0}
    best = (copy.deepcopy(m.g.state_dict()), m.psi.detach().clone())
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        if (work / "state.json").is_file():
            state, best = load_checkpoint(work, m, opt_g, opt_d, cfg, tc)
            log(f"resuming from step {state['step']} in {work}")
    if not cfg.warp:
        scenes = None  # a sketch generator warps nothing
    val_cond = conditioner.batch(val.points) if scenes is None else by_scene(scenes, val)
    watch_cond = None if watch is None else conditioner.batch(watch.points)
    workers = default_workers(dev.type) if tc.workers is None else tc.workers
    batches = Batches(train, conditioner, reference, tc, rng, workers, scenes)
    bar = tqdm(total=tc.steps, initial=state["step"], desc="enroll", unit="step",
               disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter() - state["seconds"]
    stopped = False
    try:
        while state["step"] < tc.steps:
            step = state["step"]
            crops, cond_images = batches.next()
            cond = cond_tensor(cond_images, dev)
            real = to_tensor(crops, dev)
            adv = step >= tc.adv_start and (tc.w_adv > 0 or tc.w_fm > 0)
            logs = train_step(m, opt_g, opt_d, cond, real, tc, adv, dev, perc)
            state["step"] = step + 1
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)
            bar.update(1)
            if state["step"] % tc.eval_every == 0 or state["step"] == tc.steps:
                vs, vl = evaluate_ssim(m.g, m.psi, val, val_cond, dev)
                logs.update(step=state["step"], val_ssim=vs, val_l1=vl,
                            seconds=time.perf_counter() - t0)
                if watch is not None and watch_cond is not None:
                    logs["watch_ssim"] = evaluate_ssim(m.g, m.psi, watch, watch_cond, dev)[0]
                state["history"].append(logs)
                if vs > state["best_val_ssim"]:
                    state.update(best_val_ssim=vs, best_step=state["step"], bad_evals=0)
                    best = (copy.deepcopy(m.g.state_dict()), m.psi.detach().clone())
                else:
                    state["bad_evals"] += 1
                log(f"step {state['step']}: val SSIM {vs:.4f} (best {state['best_val_ssim']:.4f}"
                    f" at {state['best_step']}), {logs['seconds']:.0f} s")
                if state["bad_evals"] >= tc.patience:
                    stopped = True
            if work is not None and state["step"] % tc.preview_every == 0:
                preview(m.g, m.psi, val, conditioner, dev, work / "preview.png")
            state["seconds"] = time.perf_counter() - t0
            if work is not None and (state["step"] % tc.checkpoint_every == 0 or stopped):
                save_checkpoint(work, m, opt_g, opt_d, state, best, cfg, tc)
            if stopped:
                break
    finally:
        bar.close()
        batches.close()
        conditioner.close()
    seconds = time.perf_counter() - t0
    g = Generator(cfg)
    g.load_state_dict(best[0])
    g.fold(best[1].cpu())
    return Result(g.eval(), state["history"], state["best_step"], state["best_val_ssim"],
                  state["step"], seconds, seconds / max(state["step"], 1), stopped)


def train_step(m: Models, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
               cond: Tensor, real: Tensor, tc: TrainConfig, adv: bool, dev: torch.device,
               perc: losses.Perceptual | None = None) -> dict[str, float]:
    """One G step (and one D step when ``adv``); returns the loss values."""
    b = len(cond)
    # D's own gradients from G's loss would be thrown away (opt_d.zero_grad below): not
    # computing them skips D's weight-gradient kernels, the same result for less work.
    m.d.requires_grad_(False)
    m.w.requires_grad_(False)
    with autocast(dev):
        fake = m.g(cond, m.psi.expand(b, -1)).float()
        l1 = (fake - real).abs().mean()
        ms = losses.ms_ssim(fake, real).mean()
        s1 = losses.ssim(fake, real).mean()
        loss = tc.w_l1 * l1 + tc.w_ssim * (1 - ms) + tc.w_ssim1 * (1 - s1)
        logs = {"l1": l1.item(), "msssim": ms.item(), "ssim": s1.item()}
        if perc is not None:
            p = perc(fake, real)
            loss = loss + tc.w_perceptual * p
            logs["perc"] = p.item()
        sketch = cond[:, :3]  # D judges the image against the landmarks alone
        if adv:
            w = m.w.expand(b, -1)
            score_fake, f_fake = m.d(fake, sketch, w)
            with torch.no_grad():
                _, f_real = m.d(real, sketch, w)
            fm = losses.feature_matching(f_real, f_fake)
            g_adv = losses.hinge_g(score_fake)
            loss = loss + tc.w_adv * g_adv + tc.w_fm * fm
            logs.update(g_adv=g_adv.item(), fm=fm.item())
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    m.d.requires_grad_(True)
    m.w.requires_grad_(True)
    if adv:
        with autocast(dev):
            w = m.w.expand(b, -1)
            s_real, _ = m.d(real, sketch, w)
            s_fake, _ = m.d(fake.detach(), sketch, w)
            d_loss = losses.hinge_d(s_real.float(), s_fake.float())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        logs["d"] = d_loss.item()
    return logs


# --- resumable checkpoints: safetensors for tensors, JSON for the rest -----------------


def _opt_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{i}.{k}"] = torch.as_tensor(v).detach().cpu().float().reshape(-1) \
                if k == "step" else v.detach().cpu()
    return out


def _load_opt(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], prefix: str) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v.reshape(()) if k == "step" else v
    sd["state"] = state
    opt.load_state_dict(sd)


def save_checkpoint(work: Path, m: Models, opt_g: torch.optim.Optimizer,
                    opt_d: torch.optim.Optimizer, state: dict[str, Any],
                    best: tuple[dict[str, Tensor], Tensor], cfg: ModelConfig,
                    tc: TrainConfig) -> None:
    from safetensors.torch import save_file

    t: dict[str, Tensor] = {}
    t.update({f"g.{k}": v for k, v in m.g.state_dict().items()})
    t.update({f"d.{k}": v for k, v in m.d.state_dict().items()})
    t.update({f"best.{k}": v for k, v in best[0].items()})
    t["psi"], t["w"], t["best_psi"] = m.psi.detach(), m.w.detach(), best[1]
    t.update(_opt_tensors(opt_g, "opt_g"))
    t.update(_opt_tensors(opt_d, "opt_d"))
    tmp = work / "ckpt.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in t.items()}, str(tmp))
    tmp.replace(work / "ckpt.safetensors")
    doc = {"state": state, "model": json.loads(cfg.to_json()), "train": asdict(tc)}
    (work / "state.json.tmp").write_text(json.dumps(doc, indent=1) + "\n")
    (work / "state.json.tmp").replace(work / "state.json")


def load_checkpoint(work: Path, m: Models, opt_g: torch.optim.Optimizer,
                    opt_d: torch.optim.Optimizer, cfg: ModelConfig,
                    tc: TrainConfig) -> tuple[dict[str, Any], tuple[dict[str, Tensor], Tensor]]:
    from safetensors.torch import load_file

    fix = f"delete {work} to start over"
    try:
        doc = json.loads((work / "state.json").read_text())
        t = load_file(str(work / "ckpt.safetensors"))
    except Exception as exc:
        raise ModelError(f"the checkpoint in {work} is unreadable ({exc})", fix) from exc
    if ModelConfig.from_dict(doc["model"]) != cfg:
        raise ModelError(f"the checkpoint in {work} is for another model configuration", fix)
    dev = m.psi.device
    m.g.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("g.")})
    m.d.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("d.")})
    with torch.no_grad():
        m.psi.copy_(t["psi"])
        m.w.copy_(t["w"])
    _load_opt(opt_g, {k: v.to(dev) if k.split(".")[-1] != "step" else v
                      for k, v in t.items()}, "opt_g")
    _load_opt(opt_d, {k: v.to(dev) if k.split(".")[-1] != "step" else v
                      for k, v in t.items()}, "opt_d")
    best = ({k[5:]: v.to(dev) for k, v in t.items() if k.startswith("best.")},
            t["best_psi"].to(dev))
    state = doc["state"]
    if not math.isfinite(float(state.get("best_val_ssim", 0.0))):
        state["best_val_ssim"] = -1.0
    return state, best
