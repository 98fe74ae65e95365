"""What every generator backend shares: the ``Backend`` base class, the ``TensorSpec`` of
its input and output, and ``BackendError``.

The runtimes (torch_backend.py, ort_backend.py, trt_backend.py) subclass ``Backend``;
runtime.py opens them. Both sides import this module and it imports neither, so no
import cycle runs between the factory and what it opens. Light on purpose: numpy only;
torch is imported on the call that is given a torch tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import AvatarCamError


class BackendError(AvatarCamError):
    """No inference backend could be opened, or one was asked for that is not available."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32"
    device: str  # where the backend keeps it: "cpu" or "cuda:N"


class Backend:
    """Base class: subclasses fill the specs and implement ``_infer_host`` (numpy) and,
    for GPU backends, ``_infer_device`` (CUDA tensor in, CUDA tensor out)."""

    name = "backend"

    def __init__(self, precision: str, spec_in: TensorSpec, spec_out: TensorSpec) -> None:
        self.precision = precision
        self._in, self._out = spec_in, spec_out
        self.skipped: dict[str, str] = {}  # other candidates -> why not them (open_backend)
        self.closed = False

    def input_spec(self) -> TensorSpec:
        return self._in

    def output_spec(self) -> TensorSpec:
        return self._out

    def infer(self, x: Any) -> Any:
        """(B, C, R, R) float32 in [0, 1] -> (B, 3, R, R) float32 in [-1, 1]; numpy in,
        numpy out; torch tensor in, torch tensor out (on the GPU when it came from it)."""
        if self.closed:
            raise RuntimeError(f"{self.name} backend is closed")
        want = self._in.shape
        if isinstance(x, np.ndarray):
            if x.shape != want or x.dtype != np.float32:
                raise ValueError(f"input must be {want} float32, got {x.shape} {x.dtype}")
            return self._infer_host(x)
        import torch

        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a numpy array or torch tensor, got "
                            f"{type(x).__name__}")
        if tuple(x.shape) != want or x.dtype != torch.float32:
            raise ValueError(f"input must be {want} float32, got {tuple(x.shape)} {x.dtype}")
        if x.is_cuda:
            return self._infer_device(x)
        return torch.from_numpy(self._infer_host(np.ascontiguousarray(x.numpy())))

    def _infer_host(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _infer_device(self, x: Any) -> Any:
        # A CPU backend given a CUDA tensor: one copy each way, then back on its device.
        import torch

        y = self._infer_host(np.ascontiguousarray(x.detach().cpu().numpy()))
        return torch.from_numpy(y).to(x.device)

    def describe(self) -> str:
        b, _, r, _ = self._in.shape
        return f"{self.name} {self.precision} ({r}x{r}, batch {b}, {self._in.device})"

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
