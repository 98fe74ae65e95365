"""The factory that opens the personalized generator on the fastest way available to run
it; each way is a ``base.Backend``, so one interface covers them all.

    backend = open_backend(person_folder, resolution=None, backend="auto")
    backend.input_spec()   # TensorSpec("cond", (B, C, R, R), "float32", "cpu" | "cuda:0")
    y = backend.infer(x)   # (B, C, R, R) float32 conditioning in [0, 1] -> face in [-1, 1]

``infer`` takes a numpy array (host in, host out) or a torch tensor; a CUDA tensor stays on
the GPU (the result is a CUDA tensor too, no host round trip). Buffers are allocated once
at open; the returned array/tensor is the backend's output buffer, valid until the next
call (copy it to keep it).

Candidates, fastest first (``backend="auto"``)::

    tensorrt              TensorRT engine, execute_async_v3 on a CUDA stream
    onnxruntime-tensorrt  ONNX Runtime's TensorRT execution provider
    onnxruntime-cuda      ONNX Runtime's CUDA execution provider
    torch-cuda-graphs     PyTorch on the GPU, replayed as one CUDA graph
    onnxruntime-cpu       ONNX Runtime on the CPU
    torch-cpu             PyTorch eager on the CPU (the reference)

``backend="measure"`` opens every available candidate and keeps the one with the lowest
median time on this machine. The choice and why each other candidate was skipped are
logged (and kept in ``backend.skipped``); if none opens, one BackendError lists why each
failed.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import engines
from .base import Backend, BackendError
from .cache import EngineCache
from .fingerprint import PRECISIONS

log = logging.getLogger(__name__)

CANDIDATES = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda-graphs",
              "onnxruntime-cpu", "torch-cpu")
GROUPS: dict[str, tuple[str, ...]] = {
    "auto": CANDIDATES,
    "measure": CANDIDATES,
    "onnxruntime": ("onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"),
    "torch": ("torch-cuda-graphs", "torch-cuda", "torch-cpu"),
    **{name: (name,) for name in (*CANDIDATES, "torch-cuda")},
}
SUPPORTED = {"tensorrt": PRECISIONS, "onnxruntime-tensorrt": PRECISIONS,
             "onnxruntime-cuda": PRECISIONS, "onnxruntime-cpu": PRECISIONS,
             "torch-cuda-graphs": ("fp32", "fp16"), "torch-cuda": ("fp32", "fp16"),
             "torch-cpu": ("fp32",)}


@dataclass
class OpenOptions:
    batch: int = 1
    threads: int | None = None  # CPU threads (ONNX Runtime intra-op / torch)
    build: bool = True  # build or export a missing/stale engine instead of failing
    workspace_mb: int = 1024
    cache: EngineCache = field(default_factory=EngineCache)


def _cuda_problem() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not importable"
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    return None


def unavailable(name: str) -> str | None:
    """Why ``name`` cannot run on this machine, found without opening anything; None if
    it might."""
    if name == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (pip install tensorrt; NVIDIA GPU only)"
    if name.startswith("onnxruntime-") and name != "onnxruntime-cpu":
        import onnxruntime as ort

        provider = {"onnxruntime-tensorrt": "TensorrtExecutionProvider",
                    "onnxruntime-cuda": "CUDAExecutionProvider"}[name]
        have = ort.get_available_providers()
        if provider not in have:
            return (f"onnxruntime has no {provider} (it has {', '.join(have)}; "
                    "onnxruntime-gpu provides it)")
    if name in ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda",
                "torch-cuda-graphs"):
        return _cuda_problem()
    return None


def resolve_precision(name: str, precision: str) -> str:
    """"auto" -> fp16 on a GPU, fp32 on the CPU; ValueError when ``name`` cannot run it."""
    if precision == "auto":
        return "fp32" if name.endswith("cpu") else "fp16"
    if precision not in SUPPORTED[name]:
        raise ValueError(f"{name} runs {'/'.join(SUPPORTED[name])}, not {precision}")
    return precision


def open_backend(person_folder: Path | str, resolution: int | None = None,
                 backend: str = "auto", precision: str = "auto",
                 options: OpenOptions | None = None) -> Backend:
    """Open the generator of calibration/NAME (``person_folder``) on the best backend.

    ``backend``: auto | measure | tensorrt | onnxruntime | torch | any candidate name.
    ``precision``: auto | fp32 | fp16 | int8. Raises ModelError when the person has no
    usable generator (no backend can fix that) and BackendError when none opens."""
    opts = options or OpenOptions()
    if backend not in GROUPS:
        raise BackendError(f"unknown backend {backend!r}",
                           f"use one of {', '.join(sorted(GROUPS))}")
    if precision != "auto" and precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}", "use auto, fp32, fp16 or int8")
    model = engines.find_model(Path(person_folder), resolution)
    reasons: dict[str, str] = {}
    opened: list[Backend] = []
    for name in GROUPS[backend]:
        if opened and backend != "measure":
            reasons[name] = f"not needed: {opened[0].name} comes first"
            continue
        try:
            prec = resolve_precision(name, precision)
        except ValueError as exc:
            reasons[name] = str(exc)
            continue
        why = unavailable(name)
        if why is not None:
            reasons[name] = why
            continue
        try:
            opened.append(_open_one(name, model, prec, opts))
        except Exception as exc:  # any failure of one candidate is a reason to try the next
            log.debug("%s failed to open", name, exc_info=True)
            reasons[name] = f"{type(exc).__name__}: {exc}"
    if not opened:
        detail = "; ".join(f"{n}: {r}" for n, r in reasons.items())
        raise BackendError(f"no generator backend could be opened ({detail})",
                           "install onnxruntime (CPU) or torch, or pick another --backend")
    chosen = _fastest(opened, reasons) if backend == "measure" else opened[0]
    chosen.skipped = reasons
    log.info("generator backend: %s", chosen.describe())
    for n, r in reasons.items():
        log.info("  skipped %s: %s", n, r)
    return chosen


def _fastest(opened: list[Backend], reasons: dict[str, str], runs: int = 10) -> Backend:
    times = {b.name: float(np.median(measure(b, runs))) for b in opened}
    best = min(opened, key=lambda b: times[b.name])
    for b in opened:
        if b is not best:
            reasons[b.name] = f"measured {times[b.name]:.2f} ms vs {times[best.name]:.2f} ms"
            b.close()
    return best


def measure(b: Backend, runs: int, warmup: int = 3, device: bool = False) -> list[float]:
    """Milliseconds per call of ``b.infer`` on a zero input (host or device-resident),
    sorted. Synchronizes the GPU around each call."""
    spec = b.input_spec()
    x: Any = np.zeros(spec.shape, np.float32)
    sync = None
    if spec.device.startswith("cuda"):
        import torch

        sync = torch.cuda.synchronize
        if device:
            x = torch.zeros(spec.shape, dtype=torch.float32, device=spec.device)
    for _ in range(warmup):
        b.infer(x)
    out = []
    for _ in range(runs):
        if sync:
            sync()
        t0 = time.perf_counter()
        b.infer(x)
        if sync:
            sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return sorted(out)


def _open_one(name: str, model: Any, precision: str, opts: OpenOptions) -> Backend:
    # The runtimes load torch, onnxruntime or tensorrt: only the one asked for is imported.
    if name == "tensorrt":
        from .trt_backend import TrtBackend

        plan = engines.tensorrt_plan(model, precision, opts.cache, max_batch=opts.batch,
                                     workspace_mb=opts.workspace_mb, rebuild=opts.build)
        how = engines.build_command(model.person, "tensorrt", precision, opts.batch)
        return TrtBackend(plan, precision, model.resolution, opts.batch, how)
    if name.startswith("onnxruntime-"):
        from .ort_backend import OrtBackend

        data = engines.onnx_model(model, precision, opts.cache, rebuild=opts.build)
        return OrtBackend(data, name.removeprefix("onnxruntime-"), precision,
                          model.resolution, opts.batch, opts.threads,
                          opts.cache.root / "ort-tensorrt", opts.workspace_mb)
    from ..model.generator import load_generator
    from .torch_backend import TorchBackend

    device = "cpu" if name == "torch-cpu" else "cuda:0"
    g, _ = load_generator(model.path, model.resolution, device)
    return TorchBackend(g, precision, opts.batch, cuda_graphs=name == "torch-cuda-graphs",
                        threads=opts.threads, name=name)
