"""ONNX export of a personalized generator: opset, fixed size, dynamic batch, parity with
float32 PyTorch (fp32 <= 1e-4, fp16 <= 1e-2), float32 norms in the fp16 graph, QDQ int8
calibrated on the person's own sketches, the calibration set itself, and norms exported
accurately enough for large images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from avatar_cam.backends import export
from avatar_cam.errors import ModelError
from avatar_cam.model.config import tiny_config
from avatar_cam.model.generator import Generator
from avatar_cam.person import Person, load_person
from avatar_cam.raster import RASTER_VERSION

R = 64


def _generator(variant: str = "realtime", seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(tiny_config(R, variant)).eval()
    g.fold(torch.randn(1, g.n_adain) * 0.3)
    return g


@pytest.fixture(scope="module")
def person(home: Path) -> Person:
    return load_person("astro", home / "calibration")


@pytest.fixture(scope="module")
def folder(person: Person, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A person folder with a held-out set like `calibrate` writes: crops + points."""
    from avatar_cam import motion

    root = tmp_path_factory.mktemp("exportperson") / "astro"
    shutil.copytree(person.folder, root)
    held = root / "heldout"
    held.mkdir()
    s = 128  # held-out crops are at the training resolution, not the enrollment crop's
    k = s / person.crop_size
    points = np.stack([motion.animate(person.neutral, motion.script(t)) * k
                       for t in np.linspace(0.0, 8.0, 6)]).astype(np.float32)
    for i in range(len(points)):
        cv2.imwrite(str(held / f"{i:05d}.png"), cv2.resize(person.crop, (s, s)))
    np.save(held / "points.npy", points)
    (root / "meta.json").write_text(json.dumps({"rasterizer": RASTER_VERSION}))
    return root


@pytest.fixture(scope="module")
def sketches(folder: Path) -> np.ndarray:
    return export.calibration_inputs(folder, R, count=12)


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {export.INPUT_NAME: x})[0])


def test_calibration_inputs_come_from_the_persons_frames(folder: Path,
                                                           sketches: np.ndarray) -> None:
    assert sketches.shape == (12, 3, R, R) and sketches.dtype == np.float32
    assert sketches.min() >= 0.0 and sketches.max() == 1.0
    lit = (sketches.max(axis=1) > 0).mean(axis=(1, 2))
    assert (lit > 0.01).all() and (lit < 0.5).all()  # line drawings, not blank or full
    # The 6 held-out frames come first (every frame: 6 < 12), then the motion script tops
    # up; the held-out frames follow the script too, so they differ from each other.
    assert not np.array_equal(sketches[0], sketches[3])
    # Without a held-out set, the neutral face animated by the script still calibrates.
    bare = folder.parent / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("heldout"))
    fallback = export.calibration_inputs(bare, R, count=4)
    assert fallback.shape == (4, 3, R, R) and (fallback.max(axis=(1, 2, 3)) == 1.0).all()


@pytest.mark.parametrize("variant", ["realtime", "full"])
def test_fp32_export_matches_pytorch(variant: str, sketches: np.ndarray) -> None:
    g = _generator(variant)
    data = export.export_onnx(g, "fp32")
    model = onnx.load_from_string(data)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, R, R]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["avatar_cam.precision"] == "fp32" and meta["avatar_cam.resolution"] == str(R)
    assert json.loads(meta["avatar_cam.float32_scopes"])  # the norms are named
    parity = export.check_parity(g, data, "fp32", sketches)
    assert parity.ok and parity.max_abs_error <= 1e-4 and parity.limit == 1e-4
    assert "ok" in parity.describe()
    # Batch is dynamic: 3 at once equals 3 one by one.
    batched = _run(data, sketches[:3])
    single = np.concatenate([_run(data, sketches[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_fp16_export_keeps_norms_in_float32(sketches: np.ndarray) -> None:
    g = _generator()
    data = export.export_onnx(g, "fp16")
    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert types[export.INPUT_NAME] == f32 and types[export.OUTPUT_NAME] == f32
    scopes = json.loads({p.key: p.value for p in model.metadata_props}[
        "avatar_cam.float32_scopes"])
    norms = [n for n in model.graph.node if any(n.name.startswith(sc) for sc in scopes)
             and n.op_type in ("ReduceMean", "Sub", "Div", "Mul", "Add")]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(scopes) == 8 and len(norms) >= 8 * 5 and convs  # 2 down, 2 mid, 4 up
    assert all(types[n.output[0]] == f32 for n in norms)
    assert all(types[n.output[0]] == f16 for n in convs)  # the heavy part is half
    parity = export.check_parity(g, data, "fp16", sketches)
    assert parity.ok and parity.max_abs_error <= 1e-2
    assert parity.max_abs_error > 1e-6  # it really ran in half precision


def test_int8_export_is_symmetric_qdq_calibrated_on_the_person(sketches: np.ndarray) -> None:
    g = _generator()
    data = export.export_onnx(g, "int8", sketches[::2])
    model = onnx.load_from_string(data)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert "ReduceMean" in ops  # norms are not quantized
    zero_points = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer
                   if t.name.endswith("_zero_point")]
    assert zero_points and all((z == 0).all() for z in zero_points)  # TensorRT: symmetric
    # The first and the last convolution read float inputs (no DequantizeLinear before).
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert producers.get(convs[0].input[0]) != "DequantizeLinear"
    assert producers.get(convs[1].input[0]) == "DequantizeLinear"
    assert producers.get(convs[-1].input[0]) != "DequantizeLinear"
    parity = export.check_parity(g, data, "int8", sketches[1::2])
    assert parity.limit is None and parity.ok and np.isfinite(parity.max_abs_error)
    # A random tiny net quantizes worse than a trained one, yet the output must follow
    # the float one (the benchmark reports the trained generator's figures).
    x = sketches[1::2]
    with torch.no_grad():
        ref = g(torch.from_numpy(x)).numpy()
    got = _run(data, x)
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.7
    with pytest.raises(ValueError, match="calibration"):
        export.export_onnx(g, "int8")


def test_parity_check_catches_a_wrong_export(sketches: np.ndarray) -> None:
    g, other = _generator(seed=0), _generator(seed=1)
    parity = export.check_parity(g, export.export_onnx(other, "fp32"), "fp32", sketches[:4])
    assert not parity.ok and "FAILED" in parity.describe()
    with pytest.raises(ModelError, match="does not match PyTorch"):
        export.require_parity(parity, "this export")


def test_half_generator_leaves_the_original_untouched() -> None:
    g = _generator()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    h = export.half_generator(g)
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k])
               for k, v in g.state_dict().items())
    assert any(p.dtype == torch.float16 for p in h.parameters())


def test_norms_stay_accurate_on_large_images() -> None:
    """ONNX Runtime's own InstanceNormalization loses precision on large H*W; the export's
    two-stage mean must match float64 as closely as float32 PyTorch does."""
    import copy

    from avatar_cam.model.generator import AdaNorm

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = torch.nn.Conv2d(3, 8, 3, padding=1), AdaNorm(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.conv(x) * 0.1 + 1.0, None)  # a large mean: the hard case

    torch.manual_seed(0)
    net = Net().eval()
    data = export._torch_export(net, 512, 3)
    x = torch.rand(1, 3, 512, 512)
    with torch.no_grad():
        ref64 = copy.deepcopy(net).double()(x.double()).numpy()
        ref32 = net(x).numpy()
    got = _run(data, x.numpy())
    torch_err, onnx_err = np.abs(ref32 - ref64).max(), np.abs(got - ref64).max()
    assert onnx_err <= max(4 * torch_err, 2e-6), (onnx_err, torch_err)
