"""The networks and the personalized generator file: folding, bit-exact reload, clear
errors for files that are corrupt or built for another resolution, ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_cam.errors import ModelError
from avatar_cam.model import losses
from avatar_cam.model.config import ModelConfig, full_config, tiny_config
from avatar_cam.model.discriminator import Discriminator
from avatar_cam.model.embedder import Embedder
from avatar_cam.model.generator import (
    Generator,
    Projection,
    count_macs,
    load_generator,
    save_generator,
)


def _styled(cfg: ModelConfig, seed: int = 0) -> tuple[Generator, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    g = Generator(cfg).eval()
    if cfg.warp:  # its correction starts at zero: give it one, as training would
        with torch.no_grad():
            g.head.weight.normal_(0, 0.05)
    psi = torch.randn(1, g.n_adain) * 0.3
    cond = (torch.rand(2, cfg.cond_channels, cfg.resolution, cfg.resolution) > 0.9).float()
    return g, psi, cond


@pytest.mark.parametrize("condition", ["sketch", "sketch+warp"])
@pytest.mark.parametrize("variant", ["realtime", "full"])
def test_folded_generator_equals_unfolded(variant: str, condition: str) -> None:
    g, psi, cond = _styled(tiny_config(64, variant, condition))
    with torch.no_grad():
        unfolded = g(cond, psi.expand(2, -1))
        g.fold(psi)
        folded = g(cond)
    assert unfolded.shape == (2, 3, 64, 64)
    assert torch.equal(folded, unfolded)
    # psi really matters: a different psi gives a different face.
    with torch.no_grad():
        other = g(cond, (psi + 0.5).expand(2, -1))
    assert not torch.allclose(other, unfolded, atol=1e-3)


def test_saved_generator_loads_back_bit_exact(tmp_path: Path) -> None:
    g, psi, cond = _styled(tiny_config(64))
    g.fold(psi)
    path = tmp_path / "generator.safetensors"
    save_generator(g, path, {"person": "x"})
    h, extra = load_generator(path, resolution=64)
    assert extra == {"person": "x"} and h.cfg == g.cfg
    for k, v in g.state_dict().items():
        assert torch.equal(v, h.state_dict()[k]), k
    with torch.no_grad():
        assert torch.equal(g(cond), h(cond))
    assert path.read_bytes()[:8] != b"\x80\x02\x80\x03"  # safetensors, not a pickle


def test_generator_of_another_resolution_is_refused(tmp_path: Path) -> None:
    g, psi, _ = _styled(tiny_config(64))
    save_generator(g, tmp_path / "g.safetensors")
    with pytest.raises(ModelError, match=r"built for 64x64, not 128x128.*--resolution 64"):
        load_generator(tmp_path / "g.safetensors", resolution=128)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing"])
def test_corrupt_generator_file_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    g, _, _ = _styled(tiny_config(64))
    path = tmp_path / "generator.safetensors"
    save_generator(g, path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(ModelError, match="re-run `avatar-cam calibrate`") as err:
        load_generator(path)
    assert str(path) in str(err.value)


def test_weights_that_do_not_match_their_config_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    g, _, _ = _styled(tiny_config(64))
    path = tmp_path / "g.safetensors"
    save_generator(g, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # type: ignore[no-untyped-call]
        header = f.metadata()
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.endswith("weight"))
    tensors[key] = torch.zeros(3, 3)
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(ModelError, match="do not match their config.*wrong shape"):
        load_generator(path)
    tensors.pop(key)
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(ModelError, match="missing"):
        load_generator(path)


def test_embedder_projection_discriminator_shapes() -> None:
    cfg = tiny_config(64)
    frames, conds = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64)
    e = Embedder(cfg).embed(frames, conds)
    assert e.shape == (1, cfg.person_dim)
    g = Generator(cfg)
    psi = Projection(cfg.person_dim, g.n_adain)(e)
    assert psi.shape == (1, g.n_adain)
    score, feats = Discriminator(cfg)(frames, conds, e.expand(3, -1))
    assert score.shape == (3,) and len(feats) == cfg.d_depth + 1


def test_config_validates_and_sizes() -> None:
    with pytest.raises(ValueError, match="resolution"):
        ModelConfig(resolution=300)
    with pytest.raises(ValueError, match="variant"):
        ModelConfig(variant="huge")
    rt, full = ModelConfig(), full_config(256)
    # The real-time generator is sized for 2 CPU cores: well under half a GMAC a frame.
    assert count_macs(Generator(rt)) < 0.4e9 < count_macs(Generator(full))
    assert ModelConfig(resolution=512).resolution == 512
    assert ModelConfig.from_dict({"resolution": 128}).resolution == 128
    with pytest.raises(ValueError, match="condition"):
        ModelConfig(condition="photo")
    # Files from before the field existed are sketch generators.
    assert ModelConfig.from_dict({"resolution": 128}).condition == "sketch"
    assert ModelConfig(condition="sketch+warp").cond_channels == 6


@pytest.mark.parametrize("variant", ["realtime", "full"])
def test_untrained_sketch_warp_generator_is_the_warp_render(variant: str) -> None:
    """Its correction starts at zero: before any training G returns the warp render
    (channels 4-6, in [0, 1]) exactly, whatever the sketch and psi; gradients still reach
    the correction's conv, so training moves it."""
    g, psi, cond = _styled(tiny_config(64, variant, "sketch+warp"))
    torch.nn.init.zeros_(g.head.weight)
    out = g(cond, psi.expand(2, -1))
    assert torch.equal(out, cond[:, 3:] * 2 - 1)
    cond.requires_grad_(False)
    (out - torch.rand_like(out)).abs().mean().backward()
    assert g.head.weight.grad is not None and g.head.weight.grad.abs().sum() > 0


def test_ssim_agrees_with_scikit_image(astronaut: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = astronaut[:128, :128].astype(np.float32) / 255
    b = np.clip(a + rng.normal(0, 0.08, a.shape), 0, 1).astype(np.float32)
    ta = torch.from_numpy(a).permute(2, 0, 1)[None] * 2 - 1
    tb = torch.from_numpy(b).permute(2, 0, 1)[None] * 2 - 1
    ref = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0)
    assert float(losses.ssim(ta, tb)) == pytest.approx(ref, abs=1e-4)
    assert float(losses.ms_ssim(ta, ta)) == pytest.approx(1.0, abs=1e-5)
    assert float(losses.ms_ssim(ta, tb)) < 0.99
    assert losses.ms_scales(256) == 5 and losses.ms_scales(64) == 3
    # Training on CUDA runs under bf16 autocast; SSIM must stay float32 inside it (its
    # variances are differences of near-equal means). CPU autocast casts convs alike.
    big_a = torch.from_numpy(astronaut[:256, :256].astype(np.float32) / 127.5 - 1)
    big_a = big_a.permute(2, 0, 1)[None]
    big_b = (big_a + torch.from_numpy(rng.normal(0, 0.1, big_a.shape).astype(np.float32)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ms_amp, s_amp = losses.ms_ssim(big_a, big_b), losses.ssim(big_a, big_b)
    assert ms_amp.dtype == torch.float32
    assert float(ms_amp) == pytest.approx(float(losses.ms_ssim(big_a, big_b)), abs=1e-6)
    assert float(s_amp) == pytest.approx(float(losses.ssim(big_a, big_b)), abs=1e-6)


def test_losses_have_the_right_signs() -> None:
    real, fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert float(losses.hinge_d(real, fake)) == 0.0  # both beyond the margin
    assert float(losses.hinge_d(fake, real)) == 6.0
    assert float(losses.hinge_g(torch.ones(4))) == -1.0
    f = [torch.ones(2, 3, 4, 4)]
    assert float(losses.feature_matching(f, f)) == 0.0


def test_realtime_generator_exports_to_onnx(tmp_path: Path) -> None:
    import onnxruntime as ort

    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")

    g, psi, cond = _styled(tiny_config(64))
    g.fold(psi)
    path = tmp_path / "g.onnx"
    torch.onnx.export(g, (cond[:1],), str(path), opset_version=17, input_names=["cond"],
                      output_names=["face"], dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"cond": cond[:1].numpy()})[0]
    with torch.no_grad():
        ref = g(cond[:1]).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_perceptual_loss_reads_only_a_local_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = {}
    cin = 3
    for i, v in enumerate(losses.Perceptual.LAYOUT[:7]):  # up to relu3_1 is enough here
        if v != "M":
            weights[f"features.{_conv_index(i)}.weight"] = torch.randn(int(v), cin, 3, 3) * 0.1
            weights[f"features.{_conv_index(i)}.bias"] = torch.zeros(int(v))
            cin = int(v)
    path = tmp_path / "vgg.safetensors"
    save_file(weights, str(path))
    perc = losses.Perceptual(path)
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(perc(a, a)) == 0.0 < float(perc(a, b))
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(ModelError, match="perceptual weights .* unusable"):
        losses.Perceptual(tmp_path / "bad.safetensors")


def _conv_index(layout_pos: int) -> int:
    """Position in Perceptual.LAYOUT -> index in torchvision's features Sequential."""
    idx = 0
    for v in losses.Perceptual.LAYOUT[:layout_pos]:
        idx += 1 if v == "M" else 2
    return idx
