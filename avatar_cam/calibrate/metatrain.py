"""Meta-learning (`avatar-cam metatrain`) over many people, and the dataset it reads
(`avatar-cam prepare`).

Dataset layout (VoxCeleb2-like, one folder per person, one per video)::

    DATASET/
      dataset.json                 {"format": 1, "resolution": R, "rasterizer": ...}
      PERSON/VIDEO/00000.png ...   aligned (R, R) BGR crops, time order
      PERSON/VIDEO/points.npy      (N, 478, 3) float32 landmarks in crop pixels
      PERSON/VIDEO/index.npy       (N,) int32 frame numbers in the source video

``prepare`` builds it from ``VIDEOS/PERSON/*.mp4`` (also .avi, .mkv, .mov) with the same
tracking, filtering and cropping as enrollment (``dataset.prepare_clip``).

An episode (the paper's K-shot step): pick a person and a video, K frames go through the
embedder E and are averaged into e, psi = P e styles G, which renders one more frame of
that video from its landmarks; losses are L1 + (1 - MS-SSIM), hinge adversarial and
feature matching against D with the person's row W_i, and the paper's embedding match
|W_i - e|. A ``sketch+warp`` generator also gets the episode's first shot warped onto the
target's landmarks, as enrollment gives it the person's photo. The checkpoint
(safetensors: E, P, G, D; config in the header) is the ``--init`` of enrollment, which
starts psi at P e and D's person column at e.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AvatarCamError, ModelError, VideoError
from ..model import losses
from ..model.config import ModelConfig
from ..model.discriminator import Discriminator
from ..model.embedder import Embedder
from ..model.generator import Generator, Projection
from ..raster import RASTER_VERSION
from ..render.condition import Conditioner
from .dataset import prepare_clip, read_video, save_clip
from .train_common import TrainConfig, autocast, cond_tensor, pick_device, sketches, to_tensor

META_FORMAT = "avatar-cam-meta-1"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
W_MATCH = 0.1  # weight of the embedding-match loss |W_i - e|


def prepare_dataset(videos: Path, dataset: Path, resolution: int,
                    log: Callable[[str], None] = print) -> int:
    """VIDEOS/PERSON/*.mp4 -> DATASET (layout above). Returns the number of videos kept."""
    from ..tracking import MediaPipeTracker

    people = sorted(p for p in Path(videos).iterdir() if p.is_dir()) if videos.is_dir() else []
    if not people:
        raise VideoError(f"{videos} holds no person folders",
                         "lay the clips out as VIDEOS/PERSON/CLIP.mp4")
    dataset.mkdir(parents=True, exist_ok=True)
    kept = 0
    for person in people:
        for video in sorted(v for v in person.iterdir() if v.suffix.lower() in VIDEO_SUFFIXES):
            out = dataset / person.name / video.stem
            try:
                with MediaPipeTracker(smoothing=None) as tracker:
                    clip = prepare_clip(read_video(video), tracker.track, resolution, str(video))[0]
            except AvatarCamError as exc:
                log(f"skipping {video}: {exc}")
                continue
            tmp = out.with_name(out.name + ".tmp")
            save_clip(clip, tmp)
            if out.exists():
                import shutil

                shutil.rmtree(out)
            tmp.rename(out)
            kept += 1
            log(f"{person.name}/{video.stem}: {len(clip)} frames ({clip.stats})")
    if not kept:
        raise VideoError(f"no usable video under {videos}", "check the clips show a face")
    (dataset / "dataset.json").write_text(json.dumps(
        {"format": 1, "resolution": resolution, "rasterizer": RASTER_VERSION}) + "\n")
    return kept


@dataclass
class Video:
    person: int
    folder: Path
    points: np.ndarray  # (N, 478, 3)

    def frames(self, idx: np.ndarray) -> np.ndarray:
        return np.stack([cv2.imread(str(self.folder / f"{i:05d}.png")) for i in idx])


def load_dataset(dataset: Path, resolution: int) -> tuple[list[str], list[Video]]:
    try:
        info = json.loads((dataset / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        raise VideoError(f"{dataset} is not a prepared dataset ({exc})",
                         "build it with `avatar-cam prepare VIDEOS DATASET`") from exc
    if info.get("resolution") != resolution or info.get("rasterizer") != RASTER_VERSION:
        raise VideoError(f"{dataset} holds {info.get('resolution')} px crops "
                         f"({info.get('rasterizer')}), not {resolution} px ({RASTER_VERSION})",
                         f"re-run prepare with --resolution {resolution}")
    people = sorted(p.name for p in dataset.iterdir() if p.is_dir())
    videos = [Video(i, v, np.load(v / "points.npy", allow_pickle=False))
              for i, name in enumerate(people) for v in sorted((dataset / name).iterdir())
              if (v / "points.npy").is_file()]
    videos = [v for v in videos if len(v.points) >= 2]
    if len({v.person for v in videos}) < 2:
        raise VideoError(f"{dataset} holds fewer than 2 people with usable videos",
                         "meta-learning needs many people; prepare more clips")
    return people, videos


@dataclass
class Meta:
    cfg: ModelConfig
    e: Embedder
    p: Projection
    g: Generator
    d: Discriminator


def save_meta(path: Path, meta: Meta, w: torch.Tensor, info: dict) -> None:
    from safetensors.torch import save_file

    t = {}
    for prefix, module in (("e", meta.e), ("p", meta.p), ("g", meta.g), ("d", meta.d)):
        t.update({f"{prefix}.{k}": v.detach().cpu().contiguous()
                  for k, v in module.state_dict().items()})
    t["w"] = w.detach().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(t, str(tmp), metadata={"format": META_FORMAT, "config": meta.cfg.to_json(),
                                     "info": json.dumps(info)})
    tmp.replace(path)


def load_meta(path: Path, resolution: int | None = None) -> Meta:
    """A metatrain checkpoint, checked; ModelError with the fix when it is unusable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    fix = "pass a checkpoint written by `avatar-cam metatrain` for this resolution"
    if not Path(path).is_file():
        raise ModelError(f"--init checkpoint {path} does not exist", fix)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        if header.get("format") != META_FORMAT:
            raise ValueError(f"format {header.get('format')!r}")
        cfg = ModelConfig.from_dict(json.loads(header["config"]))
        t = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type on a bad file
        raise ModelError(f"--init checkpoint {path} is corrupt or not a metatrain "
                         f"checkpoint ({exc})", fix) from exc
    if resolution is not None and cfg.resolution != resolution:
        raise ModelError(f"--init checkpoint {path} is for {cfg.resolution} px, "
                         f"not {resolution} px", f"use --resolution {cfg.resolution}, or {fix}")
    g = Generator(cfg)
    meta = Meta(cfg, Embedder(cfg), Projection(cfg.person_dim, g.n_adain), g,
                Discriminator(cfg))
    for prefix, module in (("e", meta.e), ("p", meta.p), ("g", meta.g), ("d", meta.d)):
        own = {k[len(prefix) + 1:]: v for k, v in t.items() if k.startswith(prefix + ".")}
        try:
            module.load_state_dict(own)
        except RuntimeError as exc:
            raise ModelError(f"--init checkpoint {path} does not match its config", fix) from exc
    return meta


def warped(frames: np.ndarray, pts: np.ndarray, shots: int, dev: torch.device) -> torch.Tensor:
    """For a sketch+warp generator: each episode's first shot (its "photo") warped onto
    the target frame's landmarks, (B, 3, R, R) in [0, 1]."""
    r = frames.shape[2]
    out = []
    for f, p in zip(frames, pts, strict=True):
        with Conditioner(r, True, (f[0], p[0])) as conditioner:
            out.append(conditioner(p[shots])[:, :, 3:])
    return cond_tensor(np.stack(out), dev)


def metatrain(dataset: Path, out: Path, cfg: ModelConfig, tc: TrainConfig, shots: int = 8,
              device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """Run ``tc.steps`` steps of ``tc.batch`` episodes; write the checkpoint to ``out``."""
    dev = pick_device(device)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    people, videos = load_dataset(dataset, cfg.resolution)
    r = cfg.resolution
    g = Generator(cfg)
    meta = Meta(cfg, Embedder(cfg), Projection(cfg.person_dim, g.n_adain), g,
                Discriminator(cfg))
    for m in (meta.e, meta.p, meta.g, meta.d):
        m.to(dev).train()
    w_table = torch.nn.Parameter(torch.zeros(len(people), cfg.person_dim, device=dev))
    opt_g = torch.optim.Adam([*meta.e.parameters(), *meta.p.parameters(),
                              *meta.g.parameters()], lr=tc.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*meta.d.parameters(), w_table], lr=tc.lr_d, betas=(0.5, 0.999))
    history, t0 = [], time.perf_counter()
    for step in range(tc.steps):
        eps = [videos[i] for i in rng.integers(0, len(videos), tc.batch)]
        k = [rng.choice(len(v.points), size=shots + 1, replace=len(v.points) < shots + 1)
             for v in eps]
        frames = np.stack([v.frames(i) for v, i in zip(eps, k, strict=True)])  # (B, K+1, ...)
        pts = np.stack([v.points[i] for v, i in zip(eps, k, strict=True)])
        b = len(eps)
        conds = cond_tensor(sketches(pts.reshape(-1, 478, 3), r), dev).view(b, shots + 1, 3, r, r)
        imgs = to_tensor(frames.reshape(-1, r, r, 3), dev).view(b, shots + 1, 3, r, r)
        person = torch.tensor([v.person for v in eps], device=dev)
        adv = step >= tc.adv_start
        cond, real = conds[:, shots], imgs[:, shots]
        g_in = torch.cat([cond, warped(frames, pts, shots, dev)], 1) if cfg.warp else cond
        with autocast(dev):
            e = meta.e(imgs[:, :shots].reshape(-1, 3, r, r),
                       conds[:, :shots].reshape(-1, 3, r, r)).view(b, shots, -1).mean(1)
            fake = meta.g(g_in, meta.p(e)).float()
            l1 = (fake - real).abs().mean()
            ms = losses.ms_ssim(fake, real).mean()
            match = F.l1_loss(w_table[person].detach(), e)
            loss = tc.w_l1 * l1 + tc.w_ssim * (1 - ms) + W_MATCH * match
            if adv:
                score, f_fake = meta.d(fake, cond, w_table[person])
                with torch.no_grad():
                    _, f_real = meta.d(real, cond, w_table[person])
                loss = loss + tc.w_adv * losses.hinge_g(score) \
                    + tc.w_fm * losses.feature_matching(f_real, f_fake)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        d_val = 0.0
        if adv:
            with autocast(dev):
                s_real, _ = meta.d(real, cond, w_table[person])
                s_fake, _ = meta.d(fake.detach(), cond, w_table[person])
                d_loss = losses.hinge_d(s_real.float(), s_fake.float()) \
                    + W_MATCH * F.l1_loss(w_table[person], e.detach())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            d_val = d_loss.item()
        history.append({"step": step + 1, "l1": l1.item(), "msssim": ms.item(), "d": d_val})
        if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
            log(f"metatrain step {step + 1}/{tc.steps}: L1 {l1.item():.4f}, "
                f"MS-SSIM {ms.item():.4f}")
    seconds = time.perf_counter() - t0
    info = {"people": people, "videos": len(videos), "steps": tc.steps, "batch": tc.batch,
            "shots": shots, "seconds": round(seconds, 2),
            "seconds_per_step": round(seconds / max(tc.steps, 1), 4), "device": str(dev),
            "history": history[-20:]}
    save_meta(out, meta, w_table, info)
    log(f"wrote {out}: {tc.steps} steps in {seconds:.1f} s "
        f"({info['seconds_per_step']} s/step, {tc.batch} episodes of K={shots})")
    return info
