"""NeuralRenderer: landmarks -> the person's face through their personalized generator.

Per frame: ``render.condition.Conditioner`` makes the conditioning image at the model's
resolution (the sketch; for a ``sketch+warp`` generator also the warp render of the
person's crop), the folded generator (AdaIN already inside, so only that image goes in)
turns it into the face, and the result comes back as uint8 BGR like the warp renderer's.
The model call sits behind ``Infer`` (conditioning in, face out) so a faster backend
(onnxruntime, TensorRT) can replace ``torch_infer`` without touching the rest.

Files read from calibration/<name>/: ``generator.safetensors`` and ``meta.json``
(written by ``avatar-cam calibrate``), and crop.png + neutral.npy for a ``sketch+warp``
generator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import numpy as np

from ..errors import ModelError
from ..person import Person
from ..raster import RASTER_VERSION
from ..types import Landmarks
from .condition import Conditioner, for_folder

GENERATOR_FILE = "generator.safetensors"
META_FILE = "meta.json"

Infer = Callable[[np.ndarray], np.ndarray]  # (R, R, C) uint8 cond -> (R, R, 3) uint8 BGR


def has_neural(folder: Path) -> bool:
    """True when the person folder holds a personalized generator."""
    return (Path(folder) / GENERATOR_FILE).is_file() and (Path(folder) / META_FILE).is_file()


def read_meta(folder: Path) -> dict:
    """meta.json of a neural enrollment, checked against this build's rasterizer."""
    path = Path(folder) / META_FILE
    fix = f"re-run `avatar-cam calibrate {Path(folder).name}` to rebuild it"
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is missing or unreadable ({exc})", fix) from exc
    if meta.get("rasterizer") != RASTER_VERSION:
        raise ModelError(f"{folder} was trained on sketches {meta.get('rasterizer')!r}, "
                         f"this build draws {RASTER_VERSION!r}", fix)
    return meta


def torch_infer(generator: object, threads: int | None = None) -> Infer:
    """The reference backend: the folded generator in torch on CPU (or its device)."""
    import torch

    from ..model.generator import Generator

    if not isinstance(generator, Generator):
        raise TypeError("torch_infer needs an avatar_cam.model.generator.Generator")
    if threads is not None:
        torch.set_num_threads(threads)
    g = generator.eval()
    device = next(g.parameters()).device

    def infer(cond: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(cond).to(device).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            y = g(x)  # (1, 3, R, R) in [-1, 1]
        y = ((y[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return np.ascontiguousarray(y.permute(1, 2, 0).cpu().numpy())

    return infer


def checked(infer: Infer, conditioner: Conditioner) -> Infer:
    """``infer`` refusing an input of the wrong shape or type (a clear ValueError)."""
    r, c = conditioner.resolution, conditioner.channels

    def run(cond: np.ndarray) -> np.ndarray:
        if cond.shape != (r, r, c) or cond.dtype != np.uint8:
            raise ValueError(f"conditioning image must be ({r}, {r}, {c}) uint8, got "
                             f"{cond.shape} {cond.dtype}")
        return infer(cond)

    return run


class NeuralRenderer:
    """render(lm) -> (R, R, 3) uint8 BGR face for landmarks in pixels of ``lm.size`` (the
    person's crop space; rescaled when sizes differ). R is the model's resolution; asking
    for another ``resolution`` is a ModelError (the generator is built for one size)."""

    def __init__(self, person: Person | Path | str, resolution: int | None = None,
                 device: str = "cpu", threads: int | None = None) -> None:
        from ..model.generator import load_generator

        folder = person.folder if isinstance(person, Person) else Path(person)
        if not has_neural(folder):
            raise ModelError(f"{folder} has no neural generator",
                             f"train one: avatar-cam calibrate {folder.name} --video CLIP "
                             "(or --images PHOTO), or use --renderer warp")
        self.meta = read_meta(folder)
        self.generator, _ = load_generator(folder / GENERATOR_FILE, resolution, device)
        cfg = self.generator.cfg
        self.resolution = cfg.resolution
        self.conditioner = for_folder(folder, cfg.resolution, cfg.warp)
        self._infer: Infer | None = checked(torch_infer(self.generator, threads),
                                            self.conditioner)

    def render(self, lm: Landmarks) -> np.ndarray:
        return self.generate(self.conditioner.render(lm))

    def generate(self, cond: np.ndarray) -> np.ndarray:
        """(R, R, C) uint8 conditioning image -> (R, R, 3) uint8 BGR face."""
        if self._infer is None:
            raise RuntimeError("NeuralRenderer is closed")
        return self._infer(cond)

    def close(self) -> None:
        self._infer = None
        self.conditioner.close()

    def __enter__(self) -> NeuralRenderer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
