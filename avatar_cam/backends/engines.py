"""A person's generator -> the artifact a runtime loads, through the engine cache.

``onnx_model`` (ONNX Runtime; any device) and ``tensorrt_plan`` (one GPU model and
TensorRT version) return the cached bytes when the stamp matches, and otherwise export or
build them (or, with ``rebuild=False``, raise an error that gives the command to run).
Exports are parity-checked against float32 PyTorch before they are cached.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .cache import EngineCache
from .fingerprint import ANY_DEVICE, Fingerprint, gpu_identity, model_hash

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator.safetensors"
ONNX_SUFFIX, TRT_SUFFIX = ".onnx.engine", ".trt.engine"


@dataclass(frozen=True)
class Model:
    """A personalized generator on disk: calibration/NAME/generator.safetensors."""

    person: str
    folder: Path
    path: Path
    sha256: str
    resolution: int
    variant: str


def find_model(folder: Path | str, resolution: int | None = None) -> Model:
    """Read the generator's header (not its weights); ModelError if it is missing, damaged
    or built for another resolution than ``resolution``."""
    from ..model.generator import read_header

    folder = Path(folder)
    path = folder / GENERATOR_FILE
    if not path.is_file():
        raise ModelError(f"{folder} has no personalized generator ({GENERATOR_FILE})",
                         f"train one: avatar-cam calibrate {folder.name} --video CLIP "
                         "(or --images PHOTO), or use --renderer warp")
    meta = read_header(path)
    try:
        cfg = json.loads(meta["config"])
        res, variant = int(cfg["resolution"]), str(cfg["variant"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"generator {path} has a bad header ({exc})",
                         f"re-run `avatar-cam calibrate {folder.name}`") from exc
    if resolution is not None and resolution != res:
        raise ModelError(f"generator {path} was built for {res}x{res}, not "
                         f"{resolution}x{resolution}",
                         f"use --resolution {res} or re-run calibrate at {resolution}")
    return Model(folder.name, folder, path, model_hash(path), res, variant)


def build_command(person: str, backend: str, precision: str, max_batch: int = 1) -> str:
    cmd = f"avatar-cam build-engine {person} --backend {backend} --precision {precision}"
    return cmd + (f" --max-batch {max_batch}" if max_batch != 1 else "")


# -- ONNX (for ONNX Runtime) -------------------------------------------------------------


def onnx_fingerprint(model: Model, precision: str) -> Fingerprint:
    from .export import OPSET

    # Batch is a dynamic axis in the ONNX, so max_batch stays 1 for every use.
    return Fingerprint(model.sha256, model.resolution, precision, ANY_DEVICE, "onnx",
                       f"opset{OPSET}")


def onnx_model(model: Model, precision: str, cache: EngineCache, *,
               rebuild: bool = True) -> bytes:
    """The parity-checked ONNX export at ``precision`` (cached)."""
    fp = onnx_fingerprint(model, precision)
    how = build_command(model.person, "onnxruntime", precision)
    return cache.get_or_build(model.person, fp, ONNX_SUFFIX,
                              lambda: _export(model, precision), rebuild=rebuild, how=how)


def _export(model: Model, precision: str) -> tuple[bytes, dict[str, Any]]:
    from ..model.generator import load_generator
    from .export import calibration_inputs, check_parity, export_onnx, require_parity

    t0 = time.perf_counter()
    g, _ = load_generator(model.path, model.resolution)
    sketches = calibration_inputs(model.folder, model.resolution)
    data = export_onnx(g, precision, sketches if precision == "int8" else None)
    # Parity on every other sketch: for int8 half of them were not used to calibrate.
    parity = check_parity(g, data, precision, sketches[1::2])
    log.info("ONNX export %s", parity.describe())
    require_parity(parity, f"the {precision} ONNX export of {model.person}")
    return data, {"parity": {**asdict(parity), "ok": parity.ok},
                  "export_s": round(time.perf_counter() - t0, 2), "variant": model.variant}


# -- TensorRT -----------------------------------------------------------------------------


def tensorrt_fingerprint(model: Model, precision: str, max_batch: int = 1) -> Fingerprint:
    from .tensorrt_build import trt_module

    trt = trt_module()
    return Fingerprint(model.sha256, model.resolution, precision, gpu_identity(), "tensorrt",
                       str(trt.__version__), max_batch)


def tensorrt_plan(model: Model, precision: str, cache: EngineCache, *, max_batch: int = 1,
                  workspace_mb: int = 1024, rebuild: bool = True) -> bytes:
    """The serialized TensorRT engine for this GPU and TensorRT version (cached)."""
    fp = tensorrt_fingerprint(model, precision, max_batch)
    how = build_command(model.person, "tensorrt", precision, max_batch)
    return cache.get_or_build(
        model.person, fp, TRT_SUFFIX,
        lambda: _build_plan(model, fp, cache, workspace_mb), rebuild=rebuild, how=how)


def _build_plan(model: Model, fp: Fingerprint, cache: EngineCache,
                workspace_mb: int) -> tuple[bytes, dict[str, Any]]:
    from .export import calibration_inputs
    from .tensorrt_build import TrtBuildOptions, build_plan

    log.warning("building the TensorRT %s engine for %s on %s: this takes a minute or "
                "two, once", fp.precision, model.person, fp.device)
    opts = TrtBuildOptions(
        precision=fp.precision, resolution=model.resolution, max_batch=fp.max_batch,
        workspace_mb=workspace_mb,
        timing_cache=cache.timing_cache_path(fp.runtime, fp.runtime_version, fp.device),
        calibration_cache=cache.root / (f"calib.{model.person}.{model.sha256[:12]}."
                                        f"{fp.runtime_version}.r{model.resolution}.cache"))
    sketches = calibration_inputs(model.folder, model.resolution) \
        if fp.precision == "int8" else None
    return build_plan(lambda precision: onnx_model(model, precision, cache), opts, sketches,
                      cache.write_bytes)
