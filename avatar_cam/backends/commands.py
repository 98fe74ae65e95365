"""argparse wiring for `avatar-cam build-engine NAME [--backend tensorrt|onnxruntime]
[--precision fp32|fp16|int8] [--workspace MB]`.

``add_parser(subparsers)`` adds the command; ``build_engine_main(args)`` runs it and
returns an exit status (user errors are raised as AvatarCamError for the CLI to print).
The engine lands in engines/ named after its fingerprint; running the command again is a
no-op unless the model, GPU or runtime changed (or --force).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..argtypes import int_in
from ..person import check_name, find_root

log = logging.getLogger("avatar_cam")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `build-engine` to an argparse subparsers object."""
    p: argparse.ArgumentParser = sub.add_parser(
        "build-engine", help="compile a person's generator for fast inference (engines/)")
    p.add_argument("name", help="the enrolled person (calibration/NAME)")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto",
                   help="tensorrt (NVIDIA GPU), onnxruntime (any machine), or auto: "
                        "tensorrt when it and a GPU are present (default)")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8"), default="auto",
                   help="auto: fp16 for tensorrt, fp32 for onnxruntime; int8 is calibrated "
                        "on the person's own enrollment frames")
    p.add_argument("--workspace", type=int_in(16, 1 << 20, "workspace MB"), default=1024,
                   metavar="MB",
                   help="TensorRT builder workspace in MB (1024)")
    p.add_argument("--max-batch", type=int_in(1, 4096, "max batch"), default=1, metavar="N",
                   help="TensorRT: largest batch the engine accepts (1: live use)")
    p.add_argument("--resolution", type=int, choices=(64, 128, 256, 512),
                   help="fail unless the generator was trained at this resolution")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid engine exists")
    return p


def build_engine_main(args: argparse.Namespace) -> int:
    from .cache import EngineCache
    from .engines import (
        ONNX_SUFFIX,
        TRT_SUFFIX,
        find_model,
        onnx_fingerprint,
        onnx_model,
        tensorrt_fingerprint,
        tensorrt_plan,
    )

    name = check_name(args.name)
    model = find_model(find_root(name) / name, args.resolution)
    backend = args.backend
    if backend == "auto":
        from .runtime import unavailable

        why = unavailable("tensorrt")
        backend = "onnxruntime" if why else "tensorrt"
        if why:
            log.info("building for onnxruntime: %s", why)
    precision = args.precision
    if precision == "auto":
        precision = "fp16" if backend == "tensorrt" else "fp32"
    cache = EngineCache()
    if backend == "tensorrt":
        fp = tensorrt_fingerprint(model, precision, args.max_batch)
        path = cache.path_for(name, fp, TRT_SUFFIX)
        if args.force:
            path.unlink(missing_ok=True)
        tensorrt_plan(model, precision, cache, max_batch=args.max_batch,
                      workspace_mb=args.workspace)
    else:
        if args.max_batch != 1:
            log.info("--max-batch is ignored for onnxruntime: its batch size is dynamic")
        fp = onnx_fingerprint(model, precision)
        path = cache.path_for(name, fp, ONNX_SUFFIX)
        if args.force:
            path.unlink(missing_ok=True)
        onnx_model(model, precision, cache)
    stamp = cache.read_stamp(path)
    parity = stamp.info.get("parity")
    log.info("%s %s engine for %s (%dx%d, %s): %s", backend, precision, name,
             model.resolution, model.resolution, fp.device, path)
    if parity:
        log.info("parity against float32 PyTorch: max abs error %.2e (bound %s)",
                 parity["max_abs_error"], parity["limit"] if parity["limit"] else "none")
    if backend == "tensorrt":
        _check_tensorrt(model, precision, args.max_batch, cache)
    return 0


def _check_tensorrt(model: Any, precision: str, batch: int, cache: Any) -> None:
    """Run the engine once against float32 PyTorch on the GPU and report the error."""
    import numpy as np
    import torch

    from ..model.generator import load_generator
    from .engines import build_command, tensorrt_plan
    from .export import PARITY_LIMITS, calibration_inputs
    from .trt_backend import TrtBackend

    plan = tensorrt_plan(model, precision, cache, max_batch=batch, rebuild=False)
    how = build_command(model.person, "tensorrt", precision, batch)
    x = calibration_inputs(model.folder, model.resolution, 8)
    g, _ = load_generator(model.path, model.resolution, "cuda")
    errs = []
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the reference must be true float32
    try:
        with TrtBackend(plan, precision, model.resolution, 1, how) as engine, torch.no_grad():
            for i in range(len(x)):
                got = engine.infer(x[i:i + 1])
                ref = g(torch.from_numpy(x[i:i + 1]).cuda()).cpu().numpy()
                errs.append(float(np.abs(got - ref).max()))
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    limit = PARITY_LIMITS[precision]
    worst = max(errs)
    log.info("TensorRT engine vs float32 PyTorch: max abs error %.2e (bound %s)", worst,
             limit if limit is not None else "none, reported")
    if limit is not None and worst > limit:
        log.warning("the %s engine drifts beyond %g: consider --precision fp32", precision,
                    limit)
