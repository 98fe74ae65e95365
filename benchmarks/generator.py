"""Generator speed per backend and precision: ms per frame (median, p95) and frames/s at
batch 1 and at the best batch tried, 256 and 512 px, for the real-time variant and the
full-size G, with the max abs error against float32 PyTorch.

Weights are random (speed does not depend on them), folded with a random psi, with the
sketch+warp conditioning calibrate trains (6 input channels); the int8 models are
calibrated on the demo identity's conditioning images and every error is measured on the
other half of them. One extra row set runs the trained demo generator (calibration/demo),
where the int8 error means something. Every backend is driven through the same interface
the live pipeline uses (``backends.base.Backend.infer``, host numpy in and out; on a
GPU also device-resident). ONNX Runtime gets 2 intra-op threads, torch 2 threads.

    .venv/bin/python benchmarks/generator.py [--quick] [--no-readme]
-> benchmarks/results/generator.json and the ``generator`` table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import HERE, machine, markdown_table, met, now, section, write, write_section

from avatar_cam.backends.base import Backend
from avatar_cam.backends.export import calibration_inputs, export_onnx
from avatar_cam.backends.ort_backend import OrtBackend
from avatar_cam.backends.runtime import unavailable
from avatar_cam.backends.torch_backend import TorchBackend
from avatar_cam.model.config import ModelConfig, full_config
from avatar_cam.model.generator import Generator, count_macs, load_generator

THREADS = 2
WARP = "sketch+warp"  # the conditioning calibrate trains: 6 input channels
DEMO = HERE.parent / "calibration" / "demo"
BATCHES = {"realtime": (1, 8), "full": (1,)}  # the full G at batch > 1 would take minutes


def timing(b: Backend, x: Any, budget_s: float, sync: Callable[[], None] | None) -> list[float]:
    """ms per call: one warm-up, then as many calls as fit in ``budget_s`` (3 to 30; on a
    GPU, where a call takes under a millisecond, up to 300)."""
    b.infer(x)
    out: list[float] = []
    most = 30 if sync is None else 300
    while len(out) < most and (len(out) < 3 or sum(out) < budget_s * 1e3):
        t0 = time.perf_counter()
        b.infer(x)
        if sync:
            sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


Opener = Callable[[], Backend]


def open_cases(g: Generator, onnx: dict[str, bytes], cal: np.ndarray, batch: int,
               gpu: bool, cpu: bool = True) -> list[Opener]:
    """Every backend x precision this machine can run, for one model and batch size; each
    is opened, timed and closed before the next (idle sessions would steal the CPU).
    ``cpu=False``: the GPU backends alone."""
    r = g.cfg.resolution
    cases: list[Opener] = []
    if cpu:
        cases.append(partial(TorchBackend, g, "fp32", batch, threads=THREADS))
        for p in onnx:
            cases.append(partial(OrtBackend, onnx[p], "cpu", p, r, batch, THREADS))
    if gpu:
        cases += _gpu_cases(g, onnx, cal, batch)
    return cases


def _gpu_cases(g: Generator, onnx: dict[str, bytes], cal: np.ndarray,
               batch: int) -> list[Opener]:
    r = g.cfg.resolution
    gc = Generator(g.cfg)
    gc.load_state_dict(g.state_dict())
    gc = gc.cuda().eval()
    out: list[Opener] = []
    for p in ("fp32", "fp16"):
        out.append(partial(TorchBackend, gc, p, batch))
        out.append(partial(TorchBackend, gc, p, batch, cuda_graphs=True))
    for ep in ("cuda", "tensorrt"):
        if unavailable(f"onnxruntime-{ep}") is None:
            for p in onnx:
                out.append(partial(OrtBackend, onnx[p], ep, p, r, batch))
    if unavailable("tensorrt") is None:
        from avatar_cam.backends.tensorrt_build import TrtBuildOptions, build_plan
        from avatar_cam.backends.trt_backend import TrtBackend

        def write(path: Path, data: bytes) -> None:
            path.write_bytes(data)

        def trt(p: str) -> Backend:
            plan, _ = build_plan(onnx.__getitem__, TrtBuildOptions(p, r, max_batch=batch),
                                 cal, write)
            return TrtBackend(plan, p, r, batch)

        for p in onnx:
            out.append(partial(trt, p))
    return out


def gpu_input(b: Backend, cal: np.ndarray) -> tuple[np.ndarray, Any]:
    """Real conditioning images (never zeros) for a timed call: on the host, and on the
    device for a device-resident backend (None for a CPU one)."""
    shape = b.input_spec().shape
    x = np.ascontiguousarray(np.resize(cal, shape).astype(np.float32))
    dev = b.input_spec().device
    return x, (torch.from_numpy(x).to(dev) if dev != "cpu" else None)


def bench_model(label: str, g: Generator, gpu: bool, precisions: tuple[str, ...],
                errors_on: int, cpu: bool = True) -> list[dict[str, Any]]:
    r = g.cfg.resolution
    cal = calibration_inputs(DEMO, r, 8 if g.cfg.variant == "realtime" else 4)
    held = cal[1::2][:errors_on]
    with torch.inference_mode():
        ref = g(torch.from_numpy(held)).numpy()
    budget = 2.0
    gmac = round(count_macs(g) / 1e9, 2)
    onnx = {p: export_onnx(g, p, cal if p == "int8" else None) for p in precisions}
    rows: dict[str, dict[str, Any]] = {}
    for batch in BATCHES[g.cfg.variant]:
        for opener in open_cases(g, onnx, cal, batch, gpu, cpu):
            b = opener()
            key = f"{b.name} {b.precision}"
            row = rows.setdefault(key, {"model": label, "resolution": r,
                                        "gmac": gmac,
                                        "backend": b.name,
                                        "precision": b.precision, "batches": {}})
            sync = torch.cuda.synchronize if b.input_spec().device != "cpu" else None
            x = np.zeros(b.input_spec().shape, np.float32)
            on_dev = None
            if sync is not None:  # host copies timed, then device-resident input/output
                x, on_dev = gpu_input(b, cal)
            ms = np.asarray(timing(b, x, budget if batch == 1 else budget / 2, sync)) / batch
            row["batches"][batch] = {"median_ms": round(float(np.median(ms)), 3),
                                     "p95_ms": round(float(np.percentile(ms, 95)), 3),
                                     "fps": round(1e3 / float(np.median(ms)), 1),
                                     "runs": len(ms)}
            if on_dev is not None:
                dms = np.asarray(timing(b, on_dev, budget / 2, sync)) / batch
                row["batches"][batch]["device_resident_median_ms"] = \
                    round(float(np.median(dms)), 4)
            if batch == 1:
                got = np.concatenate([np.array(b.infer(held[i:i + 1])) for i in
                                      range(len(held))])
                err = np.abs(got.astype(np.float64) - ref)
                row["max_abs_error"] = float(err.max())
                row["mean_abs_error"] = float(err.mean())
            b.close()
            print(f"  {label} {r} {key} batch {batch}: "
                  f"{row['batches'][batch]['median_ms']:.2f} ms/frame", flush=True)
    for row in rows.values():
        best = max(row["batches"], key=lambda k: row["batches"][k]["fps"])
        row["best_batch"] = best
    return list(rows.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="real-time variant at 256 only")
    ap.add_argument("--gpu-only", action="store_true",
                    help="GPU backends alone, kept beside the CPU figures already measured")
    ap.add_argument("--no-readme", action="store_true", help="print; do not write results")
    ap.add_argument("--table", "--table-only", dest="table", action="store_true",
                    help="rebuild the README section from results/generator.json alone")
    args = ap.parse_args()
    if args.table:
        write_section("generator", summary(_readable(HERE / "results" / "generator.json")))
        return
    torch.set_num_threads(THREADS)
    torch.backends.cudnn.allow_tf32 = False
    gpu = torch.cuda.is_available()
    if args.gpu_only and not gpu:
        raise SystemExit("--gpu-only: no CUDA GPU is visible")
    t_start = time.perf_counter()
    every: tuple[str, ...] = ("fp32", "fp16", "int8")
    if args.gpu_only and all(unavailable(f"onnxruntime-{ep}") for ep in ("cuda", "tensorrt")):
        every = ()  # ONNX models only feed ONNX Runtime's GPU providers here: none
    # (label, model, ONNX precisions, sketches for the error): the full G at 512 px takes
    # ~1.4 s a frame here, so it runs fp32 only to keep the whole run near 5 minutes.
    models: list[tuple[str, Callable[[], Generator], tuple[str, ...], int]] = [
        ("realtime (random)", lambda: _random(ModelConfig(resolution=256, condition=WARP)),
         every, 4)]
    if (DEMO / "generator.safetensors").is_file():
        models.append(("realtime (demo, trained)",
                       lambda: load_generator(DEMO / "generator.safetensors")[0], every, 4))
    if not args.quick:
        models += [("full (random)", lambda: _random(full_config(256, WARP)), every, 2),
                   ("realtime (random)",
                    lambda: _random(ModelConfig(resolution=512, condition=WARP)), every, 4),
                   ("full (random)", lambda: _random(full_config(512, WARP)),
                    every if gpu else ("fp32",), 1)]
    rows: list[dict[str, Any]] = []
    for label, make, precisions, errors_on in models:
        g = make()
        print(label, g.cfg.resolution, flush=True)
        rows += bench_model(label, g, gpu, precisions, errors_on, cpu=not args.gpu_only)
    elapsed = time.perf_counter() - t_start
    info = machine()
    info["load_average_1m"] = round(os.getloadavg()[0], 2)
    info["gpu"] = torch.cuda.get_device_name(0) if gpu else None
    info["torch"] = torch.__version__
    path = HERE / "results" / "generator.json"
    old = _readable(path)
    if args.gpu_only:
        data = old
        data["gpu"] = {"machine": info, "elapsed_s": round(elapsed, 1), "rows": rows,
                       "measured": time.strftime("%Y-%m-%d %H:%M")}
    else:
        data = {"machine": info, "measured": now(), "threads": THREADS,
                "elapsed_s": round(elapsed, 1),
                "rows": rows, "ran": RAN if not gpu else "CPU and GPU backends on this machine",
                "not_measured": NOT_MEASURED if not gpu else []}
        if "gpu" in old:  # a GPU machine's figures stay until that machine measures again
            data["gpu"] = old["gpu"]
    if args.no_readme:
        print(_tables(data))
    else:
        write("generator", data, summary(data))


RAN = ("ONNX Runtime CPU (fp32, fp16, QDQ int8) and torch CPU eager (fp32), same run, "
       "2 threads each")
NOT_MEASURED = [
    "GPU backends (torch eager CUDA, torch + CUDA graphs, ONNX Runtime CUDA/TensorRT "
    "providers): no GPU in this session",
    "TensorRT: not installed here, and its wheels are too large to bring to the GPU "
    "machines available for checks (torch + CUDA graphs is the floor TensorRT must meet)",
]


def render(rows: list[dict[str, Any]], info: dict[str, Any], gpu: bool,
           elsewhere: bool = False) -> str:
    """The CPU run's table; ``elsewhere``: GPU rows from another machine follow it."""
    headers = ["model", "px", "GMAC", "backend", "precision", "b1 median ms", "b1 p95 ms",
               "b1 fps", "best batch", "fps at best", "max abs err vs fp32 torch"]
    table = []
    for row in rows:
        b1, best = row["batches"][1], row["batches"][row["best_batch"]]
        table.append([row["model"], row["resolution"], row["gmac"], row["backend"],
                      row["precision"], f"{b1['median_ms']:.2f}", f"{b1['p95_ms']:.2f}",
                      f"{b1['fps']:.1f}", row["best_batch"], f"{best['fps']:.1f}",
                      f"{row['max_abs_error']:.1e}"])
    rt = [r for r in rows if r["model"].startswith("realtime") and r["resolution"] == 256
          and r["backend"] == "onnxruntime-cpu" and r["precision"] == "fp32"]
    target = (f"Target: real-time G at 256 px <= 20 ms/frame through ONNX Runtime on 2 CPU "
              f"cores; measured {', '.join(str(r['batches'][1]['median_ms']) for r in rt)} "
              "ms (batch 1, fp32, median).") if rt else ""
    where = (f"Machine: {info['cpu']}, {info['cores']} cores"
             + (f", GPU {info['gpu']}" if gpu else ", no GPU")
             + f"; load average {info['load_average_1m']} during the run (the CPU is shared "
             "with other jobs, so figures are noisy, torch's most). Batches tried: real-time "
             "1 and 8, full-size 1; ms are per frame. The full-size G at 512 px ran fp32 only "
             "(1.4 s a frame here).")
    ran = f"Ran: {RAN if not gpu else 'all backends available on this machine'}."
    missing = "".join(f"\n- not measured: {m}" for m in (NOT_MEASURED if not gpu else [])
                      if not (elsewhere and m.startswith("GPU backends")))
    return "\n".join([where, "", ran + missing, "", target, "",
                      markdown_table(headers, table)])


# Issue 4's targets.
TARGETS_CPU_MS = 20.0  # real-time G at 256 px, batch 1, ONNX Runtime on 2 CPU cores
TARGETS_GPU = [("real-time G, batch 1", 256, 0.5), ("real-time G, batch 1", 512, 1.5)]
TARGET_GPU_BATCHED_FPS = 10_000.0  # real-time G at 256 px, batched, one datacenter GPU


def summary(data: dict[str, Any]) -> str:
    """The README section: issue 4's targets against the best measured row for each."""
    rows: list[list[Any]] = []
    for r in data.get("rows", []):
        if (r["model"].startswith("realtime") and r["resolution"] == 256
                and r["backend"] == "onnxruntime-cpu" and r["precision"] == "fp32"):
            ms = r["batches"][1]["median_ms"]
            rows.append([f"{r['model']}, 256 px, batch 1, ONNX Runtime fp32",
                         f"CPU, {data.get('threads', '?')} threads", f"<= {TARGETS_CPU_MS:.0f} ms",
                         f"{ms:.1f} ms", met(ms <= TARGETS_CPU_MS)])
    gpu = data.get("gpu", {})
    card = gpu.get("machine", {}).get("gpu", "GPU")
    for what, px, target in TARGETS_GPU:
        cands = [(r["batches"][1]["device_resident_median_ms"], r) for r in gpu.get("rows", [])
                 if r["model"].startswith("realtime") and r["resolution"] == px
                 and "device_resident_median_ms" in r["batches"].get(1, {})]
        if cands:
            ms, r = min(cands, key=lambda c: c[0])
            rows.append([f"{what}, {px} px (best: {r['backend']} {r['precision']}, "
                         "device-resident)", card, f"<= {target} ms", f"{ms:.3f} ms",
                         met(ms <= target)])
    batched = [(1000.0 / b["device_resident_median_ms"], r, n) for r in gpu.get("rows", [])
               if r["model"].startswith("realtime") and r["resolution"] == 256
               for n, b in r["batches"].items() if n > 1 and b.get("device_resident_median_ms")]
    if batched:
        fps, r, n = max(batched, key=lambda c: c[0])
        rows.append([f"real-time G, 256 px, batched (best: {r['backend']} {r['precision']}, "
                     f"batch {n})", card, f">= {TARGET_GPU_BATCHED_FPS:,.0f} frames/s",
                     f"{fps:,.0f} frames/s", met(fps >= TARGET_GPU_BATCHED_FPS)])
    table = markdown_table(["figure", "where", "target", "measured", "target met"], rows)
    extra = []
    if gpu:
        gm = gpu["machine"]
        extra.append(f"GPU rows: {gm.get('gpu')} (torch {gm.get('torch')}, host {gm['cpu']}, "
                     f"{gm['cores']} cores), measured {gpu.get('measured', '?')}. Every "
                     "backend, precision and batch, and what was not measured: the JSON.")
    return section("generator", data, "Generator ms per frame by backend and precision "
                   "against issue 4's targets (CPU and datacenter GPU).", table, extra=extra)


def _tables(data: dict[str, Any]) -> str:
    table = render(data["rows"], data["machine"], data["machine"].get("gpu") is not None,
                   "gpu" in data)
    return table + ("\n\n" + render_gpu(data["gpu"]) if "gpu" in data else "")


def _readable(path: Path) -> dict[str, Any]:
    """An earlier results file, batch sizes back to ints (JSON keys are strings)."""
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    for rows in (data.get("rows", []), data.get("gpu", {}).get("rows", [])):
        for row in rows:
            row["batches"] = {int(k): v for k, v in row["batches"].items()}
            row["best_batch"] = int(row["best_batch"])
    return data


def render_gpu(gpu: dict[str, Any]) -> str:
    """The GPU rows of a ``--gpu-only`` run (another machine than the CPU table's)."""
    info = gpu["machine"]
    headers = ["model", "px", "backend", "precision", "b1 ms (host I/O)", "b1 ms (on GPU)",
               "b8 ms/frame (on GPU)", "max abs err vs fp32 torch CPU"]
    table = []
    for row in gpu["rows"]:
        b = row["batches"]
        table.append([row["model"], row["resolution"], row["backend"], row["precision"],
                      f"{b[1]['median_ms']:.3f}", f"{b[1].get('device_resident_median_ms', 0):.3f}",
                      f"{b[8]['device_resident_median_ms']:.3f}" if 8 in b else "",
                      f"{row['max_abs_error']:.1e}"])
    rt = [r["batches"][1].get("device_resident_median_ms") for r in gpu["rows"]
          if r["model"].startswith("realtime") and r["resolution"] == 256]
    return "\n".join([
        f"GPU ({gpu['measured']}): {info['gpu']}, torch {info['torch']}, host "
        f"{info['cpu']} ({info['cores']} cores). Medians of up to 300 calls after a warm-up, "
        "each call synchronized; host I/O = numpy in and out (the copies timed), on GPU = "
        "device-resident tensors. ONNX Runtime's GPU providers and TensorRT were not "
        "installed there.", "",
        f"Target: real-time G at 256 px <= 0.5 ms/frame on a datacenter GPU; measured "
        f"{', '.join(f'{v:.3f}' for v in rt if v)} ms (batch 1, device-resident, per "
        "backend and precision).", "", markdown_table(headers, table)])


def _random(cfg: ModelConfig) -> Generator:
    torch.manual_seed(0)
    g = Generator(cfg).eval()
    with torch.no_grad():  # a sketch+warp G starts as the identity: give it a correction
        g.head.weight.normal_(0, 0.02)
    g.fold(torch.randn(1, g.n_adain) * 0.3)
    return g


if __name__ == "__main__":
    Path(HERE / "results").mkdir(exist_ok=True)
    main()
