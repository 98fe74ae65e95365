"""Offline TensorRT builder: ONNX -> serialized engine (plan), for TensorRT 10 and 11.

The two majors differ in how a precision is asked for:

- TensorRT 11 removed the precision builder flags (FP16, INT8, OBEY_PRECISION_CONSTRAINTS)
  and the implicit-quantization calibrators: every network is *strongly typed*, the types
  in the ONNX are the types that run. So the builder parses the ONNX exported in the
  wanted precision (export.py: half precision with float32 norms, or QDQ int8) into a
  network created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
- TensorRT 10 parses the float32 ONNX and sets ``BuilderFlag.FP16`` (and ``INT8`` with an
  ``IInt8EntropyCalibrator2`` fed from the person's own enrollment sketches); every layer
  in a normalization scope (recorded in the ONNX metadata by export.py) is pinned to
  float32 with ``OBEY_PRECISION_CONSTRAINTS``, so AdaIN statistics stay float32.

Both keep a timing cache in engines/ (later builds on the same GPU and TensorRT version
skip most kernel timing). The major is detected by feature (``BuilderFlag.FP16`` exists
or not), not only by the version string, so a 10.x with strong typing forced behaves the
same. Written against NVIDIA's documented Python API; this repository's machines have
no TensorRT, so it is exercised only where ``tests/test_backends.py`` finds one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .base import BackendError
from .fingerprint import PRECISIONS

log = logging.getLogger(__name__)


def trt_module() -> Any:
    """``import tensorrt`` or BackendError saying how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError("TensorRT is not installed",
                           "pip install 'avatar-cam[tensorrt]' on a machine with an NVIDIA "
                           "GPU, or use --backend onnxruntime") from exc
    return tensorrt


def strongly_typed_only(trt: Any) -> bool:
    """True on TensorRT 11+, where weak typing (precision flags) no longer exists."""
    return not hasattr(trt.BuilderFlag, "FP16") or int(trt.__version__.split(".")[0]) >= 11


@dataclass(frozen=True)
class TrtBuildOptions:
    precision: str  # fp32 | fp16 | int8
    resolution: int
    max_batch: int = 1
    workspace_mb: int = 1024  # builder scratch memory (MemoryPoolType.WORKSPACE)
    timing_cache: Path | None = None  # read if present, written after the build
    calibration_cache: Path | None = None  # TensorRT 10 int8: the calibrator's cache

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workspace_mb < 16 or self.max_batch < 1:
            raise ValueError("workspace_mb must be >= 16 and max_batch >= 1")


def build_plan(onnx_for: Callable[[str], bytes], opts: TrtBuildOptions,
               calibration: np.ndarray | None,
               write_file: Callable[[Path, bytes], None]) -> tuple[bytes, dict[str, Any]]:
    """Build and serialize an engine. ``onnx_for(precision)`` gives the ONNX export at that
    precision; ``calibration`` (N, C, R, R) float32 conditioning images for int8 on TensorRT 10;
    ``write_file`` stores the timing/calibration caches (atomically). Returns the plan
    and what to remember about the build."""
    trt = trt_module()
    typed = strongly_typed_only(trt)
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if typed:
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is not None:  # 11 may make it the only mode and drop the name
            flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    source = opts.precision if typed else "fp32"
    onnx_bytes = onnx_for(source)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError("TensorRT could not parse the generator's ONNX export: "
                         + "; ".join(errors[:3]),
                         "check the TensorRT version (10 or 11) or use --backend onnxruntime")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    try:
        timing = config.create_timing_cache(_read(opts.timing_cache))
    except Exception as exc:  # a damaged cache only costs build time: start afresh
        log.warning("ignoring the timing cache %s (%s)", opts.timing_cache, exc)
        timing = config.create_timing_cache(b"")
    config.set_timing_cache(timing, False)  # False: refuse a cache from another device
    if opts.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 convs miss the 1e-4 fp32 parity bound

    r, b = opts.resolution, opts.max_batch
    inp = network.get_input(0)
    profile = builder.create_optimization_profile()
    c = _input_channels(onnx_bytes)  # 3: sketch, 6: sketch + warp render
    profile.set_shape(inp.name, (1, c, r, r), (b, c, r, r), (b, c, r, r))
    config.add_optimization_profile(profile)

    pinned = 0
    calibrator = None
    if not typed and opts.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
        pinned = pin_float32(trt, network, _scopes(onnx_bytes))
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if not typed and opts.precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("an int8 build on TensorRT 10 needs calibration sketches")
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = make_calibrator(trt, calibration, b, opts.calibration_cache, write_file)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT failed to build the {opts.precision} engine (its log "
                         "above says why)",
                         "retry with a larger --workspace, or --precision fp32")
    if opts.timing_cache is not None:
        write_file(opts.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    del calibrator  # kept alive until here: TensorRT calls it during the build
    info = {"tensorrt": str(trt.__version__), "strongly_typed": typed, "onnx": source,
            "float32_layers": pinned, "workspace_mb": opts.workspace_mb,
            "build_s": round(time.perf_counter() - t0, 1)}
    log.info("built TensorRT %s engine in %.0f s (%s)", opts.precision, info["build_s"],
             "strongly typed" if typed else f"{pinned} layers pinned to float32")
    return bytes(memoryview(plan)), info


def _read(path: Path | None) -> bytes:
    if path is None or not path.is_file():
        return b""
    return path.read_bytes()


def _scopes(onnx_bytes: bytes) -> list[str]:
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    meta = {p.key: p.value for p in model.metadata_props}
    return list(json.loads(meta.get("avatar_cam.float32_scopes", "[]")))


def pin_float32(trt: Any, network: Any, scopes: list[str]) -> int:
    """Constrain normalization layers (and AdaIN's scale/shift in the same ONNX scope) to
    float32 compute and outputs. The parser names layers after the ONNX nodes, so the
    scopes recorded at export (``/mids.0/n1/``) find them. Returns how many were pinned."""
    skip = {trt.LayerType.CONSTANT, trt.LayerType.SHAPE}
    floats = {trt.float32, trt.float16}
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        in_scope = layer.type == trt.LayerType.NORMALIZATION or any(
            s in layer.name for s in scopes)
        if not in_scope or layer.type in skip:
            continue
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outs or any(o.dtype not in floats for o in outs):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        count += 1
    return count


def _input_channels(onnx_bytes: bytes) -> int:
    import onnx

    dims = onnx.load_from_string(onnx_bytes).graph.input[0].type.tensor_type.shape.dim
    return int(dims[1].dim_value)


def make_calibrator(trt: Any, sketches: np.ndarray, batch: int, cache_path: Path | None,
                    write_file: Callable[[Path, bytes], None]) -> Any:
    """An IInt8EntropyCalibrator2 over the person's sketches (TensorRT 10 only).

    Calibration runs at the profile's optimum shape, so batches are ``batch`` sketches
    (the set is tiled up to a multiple). Device memory comes from torch: no pycuda."""
    import torch

    n = -(-len(sketches) // batch) * batch
    data = np.resize(sketches.astype(np.float32), (n, *sketches.shape[1:]))
    device_data = torch.from_numpy(np.ascontiguousarray(data)).cuda()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.data = device_data
            self.index = 0

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index + batch > len(self.data):
                return None
            chunk = self.data[self.index:self.index + batch]
            self.index += batch
            return [int(chunk.data_ptr())]  # contiguous: a slice along the batch axis

        def read_calibration_cache(self) -> bytes | None:
            data = _read(cache_path)
            return data or None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path is not None:
                write_file(cache_path, bytes(memoryview(cache)))

    return Calibrator()
