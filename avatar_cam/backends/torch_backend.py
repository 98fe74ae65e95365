"""PyTorch backend: eager on the CPU (the reference), eager or one CUDA graph on a GPU.

A CUDA graph records the whole forward pass once (static input and output buffers) and
replays it with a single launch: at batch 1 the generator's ~40 small kernels are
launch-bound, so this is the floor a TensorRT engine has to beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..model.generator import Generator
from .base import Backend, BackendError, TensorSpec
from .export import INPUT_NAME, OUTPUT_NAME, half_generator


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, g: Generator, precision: str = "fp32", batch: int = 1, *,
                 cuda_graphs: bool = False, threads: int | None = None,
                 name: str | None = None) -> None:
        device = next(g.parameters()).device
        r = g.cfg.resolution
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"the torch backend runs fp32 or fp16, not {precision}",
                               "use --backend tensorrt or onnxruntime for int8")
        if precision == "fp16" and device.type != "cuda":
            raise BackendError("torch fp16 on the CPU would be slower than fp32",
                               "use --precision fp32 on the CPU")
        if cuda_graphs and device.type != "cuda":
            raise BackendError("CUDA graphs need the generator on a GPU", "use torch-cpu")
        shape, in_shape = (batch, 3, r, r), (batch, g.cfg.cond_channels, r, r)
        dev = str(device) if device.type == "cpu" else f"cuda:{device.index or 0}"
        super().__init__(precision, TensorSpec(INPUT_NAME, in_shape, "float32", dev),
                         TensorSpec(OUTPUT_NAME, shape, "float32", dev))
        self.name = name or ("torch-cuda-graphs" if cuda_graphs else f"torch-{device.type}")
        if threads is not None and device.type == "cpu":
            torch.set_num_threads(threads)  # process-wide: torch has no per-model setting
        self.module: torch.nn.Module = (g.eval() if precision == "fp32"
                                        else half_generator(g).to(device))
        self.device = device
        self._graph: Any = None
        if device.type == "cuda":
            self._x = torch.zeros(in_shape, dtype=torch.float32, device=device)
            self._host_y = torch.empty(shape, dtype=torch.float32, pin_memory=True)
            self._y = self._warm_up(cuda_graphs)

    def _warm_up(self, capture: bool) -> torch.Tensor:
        # Warm-up on a side stream (cuDNN picks its algorithms here), as torch's CUDA graph
        # recipe requires, then record the forward pass into the graph.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                y = self.module(self._x)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if not capture:
            return y
        self._graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self._graph):
            y = self.module(self._x)
        return y

    def _run_gpu(self) -> torch.Tensor:
        if self._graph is not None:
            self._graph.replay()
            return self._y
        with torch.no_grad():
            return self.module(self._x)

    def _infer_host(self, x: np.ndarray) -> np.ndarray:
        if self.device.type == "cpu":
            with torch.inference_mode():
                return self.module(torch.from_numpy(x)).numpy()
        self._x.copy_(torch.from_numpy(x))
        self._host_y.copy_(self._run_gpu())
        return self._host_y.numpy()

    def _infer_device(self, x: Any) -> Any:
        if self.device.type == "cpu":
            return super()._infer_device(x)
        self._x.copy_(x)  # device to device: the graph reads this fixed address
        return self._run_gpu()

    def close(self) -> None:
        self._graph = None
        super().close()
