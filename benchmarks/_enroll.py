"""Enrollment speed on the machine at hand (a GPU where there is one), and, back on a
machine with MediaPipe, the held-out quality of what that machine trained. Two parts of
quality.py:

  enroll       run where the GPU is; needs no MediaPipe (the people's crops come from
               .cache/quality/megamind-p{who}-256.npz, which the megamind part makes):
               1. throughput of calibrate's training step (G + D with the adversarial
                  and feature-matching terms on; bf16 autocast on CUDA) at batch 8 and
                  32: images/s with batches made as calibrate makes them, and with
                  one batch repeated (the model alone), so the data making's share shows;
               2. calibrate's default training (``TrainConfig()``: up to 1500 steps of 8,
                  early stopping, checkpoints and previews every 100 steps) on each
                  ``--who`` person's Megamind frames, timed; the generators are saved
                  for enroll-eval;
               3. a 60 s clip's worth of frames (the man's, repeated to 1800: time per
                  step does not depend on what the frames show) with all 1500 steps run:
                  the most training time a 60 s clip takes.
  enroll-eval  the held-out figures of part 2's generators (MediaPipe for NME), and
               the time per frame here of preparing a clip as calibrate does (tracking in
               one process per core, hands, sharpness, identity, crops; one process
               beside it), so a 60 s clip's enrollment = 1800 x that + part 3.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from typing import Any

import numpy as np
import torch
from _report import machine

from avatar_cam.calibrate.batches import Batches, default_workers
from avatar_cam.calibrate.dataset import Clip, photo_index, prepare_scanned, read_video, split
from avatar_cam.calibrate.evaluate import evaluate_clip
from avatar_cam.calibrate.train import fit, new_models, train_step
from avatar_cam.calibrate.train_common import TrainConfig, cond_tensor, pick_device, to_tensor
from avatar_cam.model.config import ModelConfig
from avatar_cam.model.generator import load_generator, save_generator
from avatar_cam.render.condition import Conditioner
from avatar_cam.render.neural import torch_infer

CFG = ModelConfig(resolution=256, condition="sketch+warp")
CLIP_60S = 1800  # frames in 60 s at 30 fps


def where() -> dict[str, Any]:
    info = machine()
    info["torch"] = torch.__version__
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def throughput(train: Clip, reference: tuple[np.ndarray, np.ndarray], dev: torch.device,
               batch: int, steps: int = 40, warm: int = 10) -> dict[str, float]:
    """images/s of the training step with real batches, and with one batch repeated."""
    tc = TrainConfig(batch=batch)
    m = new_models(CFG, None, train, dev)
    opt_g = torch.optim.Adam([*m.g.parameters(), m.psi], lr=tc.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*m.d.parameters(), m.w], lr=tc.lr_d, betas=(0.5, 0.999))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    out: dict[str, float] = {}
    with Conditioner(CFG.resolution, True, reference) as cond, \
            Batches(train, cond, reference, tc, np.random.default_rng(0),
                    default_workers(dev.type)) as batches:
        for _ in range(2 * max(default_workers(dev.type), 1)):  # every worker started
            crops, images = batches.next()
        fixed = cond_tensor(images, dev), to_tensor(crops, dev)
        for mode in ("with batches", "model alone"):
            for i in range(warm + steps):
                if i == warm:
                    sync()
                    t0 = time.perf_counter()
                if mode == "model alone":
                    c, r = fixed
                else:
                    crops, images = batches.next()
                    c, r = cond_tensor(images, dev), to_tensor(crops, dev)
                train_step(m, opt_g, opt_d, c, r, tc, True, dev)
            sync()
            out[mode] = round(steps * batch / (time.perf_counter() - t0), 1)
    return out


def _keep(out: dict[str, Any]) -> None:
    """What the enroll part has measured so far, in case the machine is taken back."""
    from quality import CACHE

    (CACHE / "enroll-partial.json").write_text(json.dumps(out, indent=1) + "\n")


def tiled(clip: Clip, n: int) -> Clip:
    """``clip``'s frames repeated to ``n``, in time order (for timing only)."""
    k = np.arange(n) % len(clip)
    return Clip(clip.crops[k], clip.points[k], np.arange(n), dict(clip.stats))


def timed_fit(clip: Clip, tc: TrainConfig, dev: torch.device, tag: str) -> dict[str, Any]:
    from quality import CACHE

    train, val, test = split(clip)
    k = photo_index(clip)
    work = CACHE / f"work-enroll-{tag}"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    res = fit(CFG, train, val, tc, device=str(dev), work=work,
              reference=(clip.crops[k], clip.points[k]), progress=False, log=print)
    wall = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    save_generator(res.generator, CACHE / f"enroll-{tag}.safetensors", {"person": tag})
    return {"wall_s": round(wall, 1), "train_s": round(res.seconds, 1), "steps": res.steps_run,
            "best_step": res.best_step, "best_val_ssim": round(res.best_val_ssim, 4),
            "stopped_early": res.stopped_early, "batch": tc.batch,
            "images_per_s": round(res.steps_run * tc.batch / res.seconds, 1),
            "split": {"train": len(train), "val": len(val), "held_out": len(test)},
            "photo_frame": int(clip.index[k])}


def part_enroll(args: argparse.Namespace) -> dict[str, Any]:
    from quality import megamind_clip

    dev = pick_device(args.device)
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    out: dict[str, Any] = {"machine": where(), "device": str(dev),
                           "workers": default_workers(dev.type), "runs": {}}
    man, why = megamind_clip(256, 1)
    if man is None:
        return {"skipped": why}
    short = args.enroll_steps is not None  # a smoke run: few steps everywhere
    steps = {} if not short else {"steps": args.enroll_steps}
    for who in (int(w) for w in args.who.split(",")):
        clip, why = megamind_clip(256, who)
        if clip is not None:
            out["runs"][f"person{who}"] = timed_fit(clip, TrainConfig(**steps), dev,
                                                  f"p{who}")
            print(f"person {who}:", out["runs"][f"person{who}"], flush=True)
            _keep(out)
    long = timed_fit(tiled(man, CLIP_60S), TrainConfig(patience=10**9, **steps), dev, "60s")
    out["runs"]["60s"] = long
    print("60 s clip:", long, flush=True)
    _keep(out)
    train = split(man)[0]
    k = photo_index(man)
    ref = (man.crops[k], man.points[k])
    out["throughput"] = {b: throughput(train, ref, dev, b, *((2, 1) if short else ()))
                         for b in (8, 32)}
    print("throughput (images/s):", out["throughput"], flush=True)
    return out


def part_enroll_eval(data: dict[str, Any]) -> dict[str, Any]:
    """Adds held-out figures to ``data`` (an enroll part's result) for each person run
    whose generator is in the cache, and this machine's time per frame preparing a clip."""
    from _clips import CLIPS, fetch
    from quality import CACHE, fetch_megamind, megamind_clip

    from avatar_cam.calibrate.scan import default_workers as scan_workers
    from avatar_cam.calibrate.scan import scan_video, segments
    from avatar_cam.tracking import HandFinder

    torch.set_num_threads(2)
    for key, run in data.get("runs", {}).items():
        path = CACHE / f"enroll-p{key[len('person'):]}.safetensors"
        if not key.startswith("person") or not path.is_file():
            continue
        clip, _ = megamind_clip(256, int(key[len("person"):]))
        assert clip is not None
        test = split(clip)[2]
        k = photo_index(clip)
        g = load_generator(path)[0]
        with Conditioner(256, True, (clip.crops[k], clip.points[k])) as c:
            rep = evaluate_clip(torch_infer(g), test, conditioner=c)
        run["held_out"] = {f: rep[f] for f in ("ssim", "psnr", "ms_ssim", "nme", "face_found",
                                               "ssim_face", "ssim_outside")}
        print(key, run["held_out"], flush=True)
    # A long real clip, as a 60 s enrollment is (Megamind's 270 frames if it cannot be had).
    video, _ = fetch(CACHE, CLIPS["cap12"])
    if video is None:
        video, _ = fetch_megamind()
    if video is not None:
        per: dict[str, float] = {}
        for workers in sorted({1, scan_workers()}):  # calibrate's default last
            t0 = time.perf_counter()
            scanned = scan_video(video, workers)
            with HandFinder() as hands:
                prepare_scanned(read_video(video), scanned, 256, video.name,
                                covered=hands.covers)
            per[str(workers)] = round((time.perf_counter() - t0) / scanned.total * 1e3, 1)
            print(f"prepare, {workers} process(es): {per[str(workers)]} ms a frame", flush=True)
        used = len(segments(scanned.total, scan_workers()))
        data["prepare"] = {"ms_per_frame": per[str(scan_workers())], "workers": used,
                           "ms_per_frame_by_workers": per, "machine": machine(),
                           "frames": scanned.total, "file": video.name}
    return data


def sixty_seconds(e: dict[str, Any]) -> tuple[float, bool] | None:
    """A 60 s clip's whole enrollment on the enroll part's machine, in seconds, and whether
    its training ran to the end (False: extrapolated from where the device's time ran out);
    None without the 60 s run or the preparation's timing."""
    long, prep = e.get("runs", {}).get("60s"), e.get("prepare")
    if not long or not prep:
        return None
    done = "killed_at_step" not in long
    train_s = float(long["wall_s"] if done else long["projected_train_s"])
    setup = [r["wall_s"] - r["train_s"] for k, r in e["runs"].items() if k.startswith("person")]
    return CLIP_60S * prep["ms_per_frame"] / 1e3 + train_s + (setup[0] if setup else 0.0), done


def enroll_text(e: dict[str, Any]) -> str:
    """The README paragraph for the enroll and enroll-eval parts."""
    m = e["machine"]
    dev = m["gpu"] or m["cpu"]
    text = (f"Enrollment speed, measured {e.get('measured', '?')} on {dev} (torch {m['torch']}"
            f"{', bf16 autocast' if m['gpu'] else ''}; batches made by {e['workers']} worker "
            f"processes on its {m['cores']}-core host).")
    tp = e.get("throughput")
    if tp:
        sizes = sorted(tp, key=int)
        text += (f" Training step (G + D), images/s at batch "
                 f"{'/'.join(str(b) for b in sizes)}: "
                 f"{'/'.join(str(tp[b]['with batches']) for b in sizes)} as calibrate feeds "
                 f"it, {'/'.join(str(tp[b]['model alone']) for b in sizes)} with one batch "
                 "repeated (the model alone).")
    for key, run in e["runs"].items():
        if key.startswith("person"):
            who = {0: "woman", 1: "man"}.get(int(key[len("person"):]), key)
            h = run.get("held_out")
            judged = (f"; held-out SSIM {h['ssim']:.3f} / {h['psnr']:.1f} dB, NME "
                      f"{h['nme']:.3f}" if h else "")
            if h and "ssim_face" in h:
                judged += f", SSIM face / rest {h['ssim_face']:.3f} / {h['ssim_outside']:.3f}"
            text += (f" calibrate's default training on the Megamind {who}: "
                     f"{run['train_s']:.0f} s of training ({run['wall_s']:.0f} s with "
                     f"starting the workers and saving) for {run['steps']} steps of "
                     f"{run['batch']} (best {run['best_step']}{judged}).")
            if "ms_per_step_with_d" in run:
                b = run["batch"]
                text += (f" A step took {run['ms_per_step_without_d']:.0f} ms before the "
                         f"adversarial terms join ({1e3 * b / run['ms_per_step_without_d']:.0f}"
                         f" images/s) and {run['ms_per_step_with_d']:.0f} ms after "
                         f"({1e3 * b / run['ms_per_step_with_d']:.0f} images/s); the issue's "
                         "U-Net baseline: ~830 images/s at 256 px on an H200 (bf16).")
    long = e["runs"].get("60s")
    prep = e.get("prepare")
    train_s = None
    if long and "killed_at_step" in long:
        train_s = long["projected_train_s"]
        text += (f" A 60 s clip's worth of frames ({long['split']['train']} train, "
                 f"{long['split']['val']} validation), all {long['steps_planned']} steps "
                 f"asked: the device's time ran out at step {long['killed_at_step']}, after "
                 f"{long['seconds_at_kill']:.0f} s; at the {long['ms_per_step_with_d']:.0f} "
                 f"ms a step it ran at since step 300, all of them would take about "
                 f"{train_s} s (extrapolated, not measured).")
    elif long:
        train_s = long["wall_s"]
        text += (f" A 60 s clip's worth of frames ({long['split']['train']} train, "
                 f"{long['split']['val']} validation), all {long['steps']} steps: "
                 f"{long['wall_s']:.0f} s of training.")
    setup = [r["wall_s"] - r["train_s"] for k, r in e["runs"].items() if k.startswith("person")]
    if train_s is not None and prep:
        train_s += setup[0] if setup else 0.0  # CUDA start, workers, saving
        total = CLIP_60S * prep["ms_per_frame"] / 1e3 + train_s
        by = prep.get("ms_per_frame_by_workers", {})
        one = (f"; {by['1']:.1f} ms in one process" if "1" in by and prep.get("workers", 1) > 1
               else "")
        text += (f" Preparing the frames of {prep.get('file', 'Megamind.avi')} "
                 f"({prep.get('frames', '?')} frames; MediaPipe tracking in "
                 f"{prep.get('workers', 1)} process(es), a hand judged every 6th frame, "
                 f"sharpness, identity, crops; starting the processes included) took "
                 f"{prep['ms_per_frame']:.1f} ms a frame{one} on {prep['machine']['cpu']} "
                 f"({prep['machine']['cores']} cores): {CLIP_60S} frames in "
                 f"{CLIP_60S * prep['ms_per_frame'] / 1e3:.0f} s. A 60 s clip therefore "
                 f"enrolls in about {total:.0f} s (target <= 180 s): tracking on that CPU, "
                 f"training on the GPU, and {setup[0] if setup else 0:.0f} s of starting and "
                 "saving as the man's run had.")
    return text
