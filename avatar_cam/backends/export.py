"""A personalized generator -> ONNX (opset 17) in float32, float16 or QDQ int8, with a
parity check against float32 PyTorch.

Input ``cond``: (B, C, R, R) float32 conditioning image in [0, 1] (C = 3, the sketch, or
6, the sketch and the warp render); output ``face``: (B, 3, R, R)
float32 in [-1, 1] (BGR). R is fixed by the model; B is a dynamic axis so one file serves
batch 1 (live) and batched serving. Every precision keeps float32 I/O, so callers never
care which one they got.

- fp16: the generator in half precision with every instance norm (AdaIN's statistics and
  the realtime variant's plain norms) computed in float32: a half-precision variance
  over 64x64 activations loses the small differences the face depends on. Built by
  casting in PyTorch, so the ONNX is *strongly typed*: TensorRT 11 builds it as is.
- int8: explicit quantization (QuantizeLinear/DequantizeLinear pairs, symmetric, per
  output channel for weights) around every convolution, scales calibrated on the
  person's own enrollment sketches (``calibration_inputs``); norms stay float32. The
  format TensorRT 10/11 (strongly typed) and ONNX Runtime both run.

Instance norms are exported as primitives with two-stage means (``_instance_norm``), not
as ONNX InstanceNormalization, whose single-pass sum in ONNX Runtime misses the 1e-4
float32 bound on the full-size G. The ONNX metadata records the precision and the
node-name scopes that must stay float32 (``float32_scopes``), which the TensorRT 10
builder turns into layer constraints.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..model.generator import EPS, Generator
from .fingerprint import PRECISIONS

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "cond", "face"
PARITY_LIMITS: dict[str, float | None] = {"fp32": 1e-4, "fp16": 1e-2, "int8": None}
CALIBRATION_FRAMES = 32


class _Float32Norm(nn.Module):
    """Run a norm layer in float32 inside a half-precision network."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.float()).to(x.dtype)


class _HalfIO(nn.Module):
    """float32 in, half inside, float32 out: the same interface at every precision."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, cond: Tensor) -> Tensor:
        return self.inner(cond.half()).float()


def half_generator(g: Generator) -> nn.Module:
    """A float16 copy of ``g`` with float32 norms and float32 I/O (``g`` is untouched).

    AdaNorm already computes its statistics in float32 and casts back; the plain
    ``nn.InstanceNorm2d`` layers are wrapped here."""
    h = copy.deepcopy(g).eval()
    for module in list(h.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                setattr(module, name, _Float32Norm(child))
    # Keep the norms' own parameters (affine=False here, but be safe) in float32.
    h.half()
    for module in h.modules():
        if isinstance(module, _Float32Norm):
            module.norm.float()
    return _HalfIO(h).eval()


def float32_scopes(model: Any) -> list[str]:
    """Node-name scopes of every instance norm (its reductions, and AdaIN's scale and
    shift, which share the scope), e.g. ``/mids.0/n1/``: what must stay float32."""
    scopes = set()
    for node in model.graph.node:
        if node.op_type in NORM_OPS and "/" in node.name:
            scopes.add(node.name.rsplit("/", 1)[0] + "/")
    return sorted(scopes)


NORM_OPS = ("InstanceNormalization", "ReduceMean")


def _instance_norm(g: Any, x: Any, weight: Any, bias: Any, running_mean: Any,
                   running_var: Any, use_input_stats: Any, momentum: Any, eps: Any,
                   cudnn_enabled: Any) -> Any:
    """aten::instance_norm as ONNX primitives, the mean taken row by row and then over the
    rows. ONNX Runtime's InstanceNormalization sums all H*W values in one float32 pass,
    whose error grows with H*W: on the full-size G it missed float32 PyTorch by 3.7e-4 at
    256 px and 2.2e-3 at 512 (measured against float64); two-stage means bring it to
    4e-6 and 9e-6 for ~7 % more time on the full G, none on the real-time one."""

    def mean_hw(t: Any) -> Any:
        rows = g.op("ReduceMean", t, axes_i=[3], keepdims_i=1)
        return g.op("ReduceMean", rows, axes_i=[2], keepdims_i=1)

    centered = g.op("Sub", x, mean_hw(x))
    var = mean_hw(g.op("Mul", centered, centered))
    eps_t = g.op("Constant", value_t=torch.tensor(EPS, dtype=torch.float32))
    return g.op("Div", centered, g.op("Sqrt", g.op("Add", var, eps_t)))


def _check_norms(module: nn.Module) -> None:
    """The decomposition above covers the generator's norms only: no affine, no running
    statistics, eps = EPS (AdaNorm always uses EPS)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.InstanceNorm2d) and (
                m.affine or m.track_running_stats or m.eps != EPS):
            raise ValueError(f"{name}: only plain instance norms (eps {EPS}) export")


def _torch_export(module: nn.Module, resolution: int, channels: int) -> bytes:
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    _check_norms(module)
    example = torch.zeros(1, channels, resolution, resolution)
    register_custom_op_symbolic("::instance_norm", _instance_norm, OPSET)
    try:
        with tempfile.TemporaryDirectory(prefix="avatar-cam-onnx-") as tmp, \
                torch.no_grad(), warnings.catch_warnings():
            # The exporter warns that it is the legacy one and that shape checks were
            # traced as constants: both intended (the spatial size is fixed by design).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            path = Path(tmp) / "g.onnx"
            # dynamo=False: the TorchScript exporter needs no onnxscript and names nodes
            # by module scope (``/ups.0/n1/ReduceMean``), which the TRT builder reads.
            torch.onnx.export(module, (example,), path, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"},
                                            OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True, dynamo=False)
            return path.read_bytes()
    finally:
        unregister_custom_op_symbolic("::instance_norm", OPSET)


def _with_metadata(data: bytes, precision: str, resolution: int, scopes: list[str]) -> bytes:
    import onnx

    model = onnx.load_from_string(data)
    meta = {"avatar_cam.precision": precision, "avatar_cam.resolution": str(resolution),
            "avatar_cam.float32_scopes": json.dumps(scopes)}
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def export_onnx(g: Generator, precision: str = "fp32",
                calibration: np.ndarray | None = None) -> bytes:
    """ONNX bytes of a folded generator. int8 needs ``calibration``: (N, C, R, R) float32
    conditioning images in [0, 1] (``calibration_inputs``)."""
    import onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    r, c = g.cfg.resolution, g.cfg.cond_channels
    g = g.to("cpu").eval()
    fp32 = _torch_export(g, r, c)
    scopes = float32_scopes(onnx.load_from_string(fp32))
    if precision == "fp32":
        data = fp32
    elif precision == "fp16":
        data = _torch_export(half_generator(g), r, c)
        scopes = float32_scopes(onnx.load_from_string(data))
    else:
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 export needs calibration inputs")
        data = quantize_qdq(fp32, calibration)
    return _with_metadata(data, precision, r, scopes)


def quantize_qdq(fp32: bytes, calibration: np.ndarray) -> bytes:
    """Explicit int8 quantization of the convolutions (QDQ format, symmetric scales as
    TensorRT requires), calibrated on ``calibration`` (N, C, R, R) float32.

    The first and the last convolution stay float: the sketch's thin lines and the output
    pixels are where 8 bits hurt most (on the demo generator this halves the max error)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration[i:i + 1].astype(np.float32)
                              for i in range(len(calibration)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {INPUT_NAME: item}

    convs = [n.name for n in onnx.load_from_string(fp32).graph.node if n.op_type == "Conv"]
    keep_float = [convs[0], convs[-1]] if len(convs) > 2 else []
    quiet = _DropAdvice()
    root = logging.getLogger()
    root.addFilter(quiet)  # the quantizer logs pre-processing advice to the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="avatar-cam-qdq-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(fp32)
            quantize_static(
                str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"], per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
            return dst.read_bytes()
    finally:
        root.removeFilter(quiet)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


# -- calibration data: the person's own conditioning images ---------------------------------


def calibration_inputs(folder: Path, resolution: int,
                       count: int = CALIBRATION_FRAMES) -> np.ndarray:
    """(N, C, R, R) float32 in [0, 1]: conditioning images of the person's own face, for
    the person's generator (C = 6 with the warp render when it is a sketch+warp one).

    From calibration/NAME/heldout/points.npy (the enrollment frames `calibrate` kept, in
    crop pixels of the held-out PNGs), topped up with the neutral face animated by the
    motion script (meta.json's neutral, else neutral.npy), so a person enrolled for the
    warp renderer only still calibrates on their face geometry."""
    import cv2

    from .. import motion
    from ..model.generator import generator_config
    from ..render.condition import for_folder
    from ..render.neural import GENERATOR_FILE

    folder = Path(folder)
    sets: list[tuple[np.ndarray, tuple[int, int]]] = []
    held = folder / "heldout"
    if (held / "points.npy").is_file() and (held / "00000.png").is_file():
        points = np.load(held / "points.npy", allow_pickle=False).astype(np.float32)
        first = cv2.imread(str(held / "00000.png"), cv2.IMREAD_COLOR)
        if first is not None and points.ndim == 3 and points.shape[1:] == (478, 3):
            side = (first.shape[1], first.shape[0])
            step = max(1, len(points) // count)
            sets += [(p, side) for p in points[::step][:count]]
    neutral, size = _neutral(folder)
    for i in range(max(0, count - len(sets))):
        t = i * motion.PERIOD_S / max(1, count - len(sets))
        sets.append((motion.animate(neutral, motion.script(t)).astype(np.float32), size))
    gen = folder / GENERATOR_FILE
    warp = gen.is_file() and generator_config(gen).warp
    with for_folder(folder, resolution, warp) as conditioner:
        conds = np.stack([conditioner(p, s) for p, s in sets])  # (N, R, R, C) uint8
    return np.ascontiguousarray(conds.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _neutral(folder: Path) -> tuple[np.ndarray, tuple[int, int]]:
    import cv2

    fix = f"re-run `avatar-cam calibrate {folder.name}`"
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if "neutral" in meta and "neutral_size" in meta:
            w, h = meta["neutral_size"]
            return np.asarray(meta["neutral"], dtype=np.float32), (int(w), int(h))
    try:
        neutral = np.load(folder / "neutral.npy", allow_pickle=False).astype(np.float32)
        crop = cv2.imread(str(folder / "crop.png"), cv2.IMREAD_COLOR)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder} has no landmarks to calibrate on ({exc})", fix) from exc
    if crop is None or neutral.shape != (478, 3):
        raise ModelError(f"{folder} has no usable neutral face to calibrate on", fix)
    return neutral, (crop.shape[1], crop.shape[0])


# -- parity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parity:
    """Max abs error of an exported model against float32 PyTorch on the same inputs."""

    precision: str
    max_abs_error: float
    mean_abs_error: float
    limit: float | None  # None: reported, not enforced (int8)
    samples: int

    @property
    def ok(self) -> bool:
        return self.limit is None or self.max_abs_error <= self.limit

    def describe(self) -> str:
        bound = f"<= {self.limit:g}" if self.limit is not None else "no bound, reported"
        return (f"{self.precision}: max abs error {self.max_abs_error:.2e} "
                f"(mean {self.mean_abs_error:.2e}, {bound}) on {self.samples} sketches "
                f"-> {'ok' if self.ok else 'FAILED'}")


def check_parity(g: Generator, onnx_bytes: bytes, precision: str,
                 inputs: np.ndarray) -> Parity:
    """Run the ONNX on ONNX Runtime's CPU provider and float32 PyTorch on ``inputs``
    (N, C, R, R) float32; compare outputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    got = np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + 4]})[0]
                          for i in range(0, len(x), 4)])
    with torch.inference_mode():
        ref = g.to("cpu").eval()(torch.from_numpy(x)).numpy()
    err = np.abs(got.astype(np.float64) - ref)
    return Parity(precision, float(err.max()), float(err.mean()), PARITY_LIMITS[precision],
                  len(x))


def require_parity(parity: Parity, what: str) -> None:
    """ModelError when an export drifts beyond its bound (it would render a wrong face)."""
    if not parity.ok:
        raise ModelError(f"{what} does not match PyTorch ({parity.describe()})",
                         "export in fp32 (--precision fp32) and report this model")
