"""BackendRenderer: landmarks -> face through any backend (the renderer stage the live
pipeline uses for the neural generator).

Per frame: ``render.condition.Conditioner`` makes the conditioning image at the model's
resolution (sketch, and the warp render for a ``sketch+warp`` generator), the backend
runs the generator, and the result becomes (R, R, 3) uint8 BGR with exactly the rounding
of ``render.neural.torch_infer``, so every backend yields the reference's pixels up to
its numeric error. The input buffer is allocated once.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np

from ..errors import ModelError
from ..model.generator import generator_config
from ..person import Person
from ..render.condition import Conditioner, for_folder
from ..render.neural import GENERATOR_FILE, Infer, checked, has_neural, read_meta
from ..types import Landmarks
from .base import Backend
from .runtime import OpenOptions, open_backend


def to_uint8(face: np.ndarray) -> np.ndarray:
    """(3, R, R) float in [-1, 1] -> (R, R, 3) uint8 BGR, rounding like torch_infer."""
    y = np.rint((np.clip(face, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.ascontiguousarray(y.transpose(1, 2, 0))


def cond_infer(backend: Backend) -> Infer:
    """A ``render.neural.Infer`` ((R, R, C) uint8 conditioning -> (R, R, 3) uint8 face)
    over a batch-1 backend: what NeuralRenderer needs to run on any backend."""
    spec = backend.input_spec()
    if spec.shape[0] != 1:
        raise ValueError(f"a renderer needs a batch-1 backend, got input {spec.shape}")
    x = np.zeros(spec.shape, np.float32)

    def infer(cond: np.ndarray) -> np.ndarray:
        np.multiply(cond.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=x[0])
        return to_uint8(backend.infer(x)[0])

    return infer


class BackendRenderer:
    """render(lm) -> (R, R, 3) uint8 BGR face for landmarks in pixels of ``lm.size`` (the
    person's crop space). Owns the backend: close() closes it."""

    def __init__(self, backend: Backend, conditioner: Conditioner) -> None:
        spec = backend.input_spec().shape
        if spec[1:] != (conditioner.channels, conditioner.resolution, conditioner.resolution):
            raise ModelError(f"the engine takes {spec[1:]}, the generator's conditioning is "
                             f"{conditioner.channels} x {conditioner.resolution}^2",
                             "rebuild the engine: avatar-cam build-engine NAME")
        self.backend, self.conditioner = backend, conditioner
        self.resolution = conditioner.resolution
        self._infer: Infer | None = checked(cond_infer(backend), conditioner)

    def render(self, lm: Landmarks) -> np.ndarray:
        return self.generate(self.conditioner.render(lm))

    def generate(self, cond: np.ndarray) -> np.ndarray:
        if self._infer is None:
            raise RuntimeError("BackendRenderer is closed")
        return self._infer(cond)

    def close(self) -> None:
        if self._infer is not None:
            self._infer = None
            self.backend.close()
            self.conditioner.close()

    def __enter__(self) -> BackendRenderer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_renderer(person: Person | Path | str, resolution: int | None = None,
                  backend: str = "auto", precision: str = "auto",
                  options: OpenOptions | None = None) -> BackendRenderer:
    """The neural renderer of an enrolled person on the best available backend; the same
    checks as NeuralRenderer (a generator exists, its sketches are this build's)."""
    folder = person.folder if isinstance(person, Person) else Path(person)
    if not has_neural(folder):
        raise ModelError(f"{folder} has no neural generator",
                         f"train one: avatar-cam calibrate {folder.name} --video CLIP "
                         "(or --images PHOTO), or use --renderer warp")
    read_meta(folder)
    warp = generator_config(folder / GENERATOR_FILE).warp
    b = open_backend(folder, resolution, backend, precision, options)
    try:
        return BackendRenderer(b, for_folder(folder, b.input_spec().shape[2], warp))
    except Exception:
        b.close()
        raise
