"""TensorRT runtime backend: a deserialized engine run with ``execute_async_v3`` on its own
CUDA stream. Buffers are torch CUDA tensors allocated once (no pycuda); their addresses
are bound to the execution context at open and never change.

Host input: copied into a pinned staging buffer, then to the device, run, copied back,
all on the stream, one synchronize. Device input (a CUDA tensor): the stream waits for
the caller's stream, copies device to device, runs, and the caller's stream waits for the
result; nothing touches the host and nothing synchronizes the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ModelError
from .base import Backend, BackendError, TensorSpec
from .tensorrt_build import trt_module


class TrtBackend(Backend):
    name = "tensorrt"

    def __init__(self, plan: bytes, precision: str, resolution: int, batch: int = 1,
                 how: str = "avatar-cam build-engine NAME --backend tensorrt") -> None:
        import torch

        trt = trt_module()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ModelError("TensorRT could not load the cached engine (built by another "
                             "TensorRT version or for another GPU?)", f"rebuild it: {how}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"the engine has inputs {inputs} and outputs {outputs}; a "
                             "generator has one of each", f"rebuild it: {how}")
        for n in names:
            if engine.get_tensor_dtype(n) != trt.float32:
                raise ModelError(f"engine tensor {n} is {engine.get_tensor_dtype(n)}, "
                                 "not float32", f"rebuild it: {how}")
        channels = int(engine.get_tensor_shape(inputs[0])[1])  # 3: sketch, 6: + warp
        in_shape = (batch, channels, resolution, resolution)
        shape = (batch, 3, resolution, resolution)
        super().__init__(precision, TensorSpec(inputs[0], in_shape, "float32", "cuda:0"),
                         TensorSpec(outputs[0], shape, "float32", "cuda:0"))
        self._engine = engine
        self._ctx = engine.create_execution_context()
        if not self._ctx.set_input_shape(inputs[0], in_shape):
            raise BackendError(f"the engine does not accept batch {batch}",
                               f"rebuild it for that batch: {how} --max-batch {batch}")
        self._torch = torch
        self._stream = torch.cuda.Stream()
        self._x = torch.zeros(in_shape, dtype=torch.float32, device="cuda:0")
        self._y = torch.zeros(shape, dtype=torch.float32, device="cuda:0")
        self._host_x = torch.empty(in_shape, dtype=torch.float32, pin_memory=True)
        self._host_y = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        self._ctx.set_tensor_address(inputs[0], self._x.data_ptr())
        self._ctx.set_tensor_address(outputs[0], self._y.data_ptr())

    def _enqueue(self) -> None:
        if not self._ctx.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError("TensorRT failed to enqueue the generator")

    def _infer_host(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        np.copyto(self._host_x.numpy(), x)
        with torch.cuda.stream(self._stream):
            self._x.copy_(self._host_x, non_blocking=True)
            self._enqueue()
            self._host_y.copy_(self._y, non_blocking=True)
        self._stream.synchronize()
        return self._host_y.numpy()

    def _infer_device(self, x: Any) -> Any:
        torch = self._torch
        self._stream.wait_stream(torch.cuda.current_stream())
        x.record_stream(self._stream)  # the caller may free x before our stream reads it
        with torch.cuda.stream(self._stream):
            self._x.copy_(x)
            self._enqueue()
        torch.cuda.current_stream().wait_stream(self._stream)
        return self._y

    def close(self) -> None:
        if not self.closed:
            self._stream.synchronize()
            del self._ctx, self._engine
        super().close()
