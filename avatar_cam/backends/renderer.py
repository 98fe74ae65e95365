"""BackendRenderer: landmarks -> face through any backend (the renderer stage the live
pipeline uses for the neural generator).

Per frame: ``raster.rasterize`` draws the sketch at the model's resolution, the backend
runs the generator, and the result becomes (R, R, 3) uint8 BGR with exactly the rounding
of ``render.neural.torch_infer``, so every backend yields the reference's pixels up to
its numeric error. The input buffer is allocated once.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np

from ..errors import ModelError
from ..person import Person
from ..raster import rasterize
from ..render.neural import Infer, has_neural, read_meta
from ..types import Landmarks, check_points
from .runtime import Backend, OpenOptions, open_backend


def to_uint8(face: np.ndarray) -> np.ndarray:
    """(3, R, R) float in [-1, 1] -> (R, R, 3) uint8 BGR, rounding like torch_infer."""
    y = np.rint((np.clip(face, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.ascontiguousarray(y.transpose(1, 2, 0))


def sketch_infer(backend: Backend) -> Infer:
    """A ``render.neural.Infer`` ((R, R, 3) uint8 sketch -> (R, R, 3) uint8 face) over a
    batch-1 backend: what NeuralRenderer needs to run on any backend."""
    spec = backend.input_spec()
    if spec.shape[0] != 1:
        raise ValueError(f"a renderer needs a batch-1 backend, got input {spec.shape}")
    r = spec.shape[2]
    x = np.zeros(spec.shape, np.float32)

    def infer(sketch: np.ndarray) -> np.ndarray:
        if sketch.shape != (r, r, 3) or sketch.dtype != np.uint8:
            raise ValueError(f"sketch must be ({r}, {r}, 3) uint8, got {sketch.shape} "
                             f"{sketch.dtype}")
        np.multiply(sketch.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=x[0])
        return to_uint8(backend.infer(x)[0])

    return infer


class BackendRenderer:
    """render(lm) -> (R, R, 3) uint8 BGR face for landmarks in pixels of ``lm.size`` (the
    person's crop space). Owns the backend: close() closes it."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.resolution = backend.input_spec().shape[2]
        self._infer: Infer | None = sketch_infer(backend)

    def render(self, lm: Landmarks) -> np.ndarray:
        check_points(lm.points)
        return self.generate(rasterize(lm.points, lm.size, self.resolution))

    def generate(self, sketch: np.ndarray) -> np.ndarray:
        if self._infer is None:
            raise RuntimeError("BackendRenderer is closed")
        return self._infer(sketch)

    def close(self) -> None:
        if self._infer is not None:
            self._infer = None
            self.backend.close()

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
    return BackendRenderer(open_backend(folder, resolution, backend, precision, options))
