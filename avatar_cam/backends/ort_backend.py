"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, with I/O binding.

Input and output buffers are allocated once and bound with ``io_binding``, so a call
copies the sketch in and runs: no per-call allocation by ONNX Runtime. On a GPU provider
the buffers are torch CUDA tensors, and a CUDA tensor input is copied device to device.
ONNX Runtime silently falls back to the CPU when a provider cannot load (missing CUDA
libraries, say); that is caught here and reported as a failure of this candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .base import Backend, BackendError, TensorSpec
from .export import INPUT_NAME, OUTPUT_NAME

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}


class OrtBackend(Backend):
    def __init__(self, onnx_bytes: bytes, provider: str, precision: str, resolution: int,
                 batch: int = 1, threads: int | None = None, trt_cache: Path | None = None,
                 workspace_mb: int = 1024) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {sorted(PROVIDERS)}, got {provider!r}")
        dev = "cpu" if provider == "cpu" else "cuda:0"
        self.name = f"onnxruntime-{provider}"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: its warnings are about ops we chose
        if threads is not None:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        if provider == "cpu":
            # Idle worker threads spin by default; beside the tracker and the capture thread
            # on 2 cores that spinning steals their CPU (measured here: the generator alone
            # runs faster without it too, 13-19 ms vs 25-28 ms at 256 px).
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = [PROVIDERS[provider]]
        if provider == "tensorrt":
            if trt_cache is not None:
                trt_cache.mkdir(parents=True, exist_ok=True)
            providers = [(PROVIDERS["tensorrt"], _trt_options(precision, trt_cache,
                                                             workspace_mb)),
                         PROVIDERS["cuda"]]
        if provider != "cpu":
            providers.append(PROVIDERS["cpu"])
        self.session = ort.InferenceSession(onnx_bytes, so, providers=providers)
        channels = self.session.get_inputs()[0].shape[1]  # 3: sketch, 6: sketch + warp
        if channels not in (3, 6):
            raise BackendError(f"the ONNX model takes {channels} input channels, not 3 or 6",
                               "rebuild it: avatar-cam build-engine NAME")
        super().__init__(precision,
                         TensorSpec(INPUT_NAME, (batch, channels, resolution, resolution),
                                    "float32", dev),
                         TensorSpec(OUTPUT_NAME, (batch, 3, resolution, resolution),
                                    "float32", dev))
        active = self.session.get_providers()
        if active[0] != PROVIDERS[provider]:
            raise BackendError(f"onnxruntime could not load {PROVIDERS[provider]} "
                               f"(it fell back to {active[0]})",
                               "check the CUDA/TensorRT libraries onnxruntime-gpu needs")
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if (inp.name, out.name) != (INPUT_NAME, OUTPUT_NAME):
            raise BackendError(f"the ONNX model has I/O {inp.name}/{out.name}, expected "
                               f"{INPUT_NAME}/{OUTPUT_NAME}", "rebuild it with build-engine")
        self._io = self.session.io_binding()
        shape, in_shape = self._out.shape, self._in.shape
        if provider == "cpu":
            self._x = np.zeros(in_shape, np.float32)
            self._y = np.zeros(shape, np.float32)
            self._bind("cpu", self._x.ctypes.data, self._y.ctypes.data)
        else:
            import torch

            self._torch = torch
            self._dx = torch.zeros(in_shape, dtype=torch.float32, device="cuda:0")
            self._dy = torch.zeros(shape, dtype=torch.float32, device="cuda:0")
            self._host_y = torch.empty(shape, dtype=torch.float32, pin_memory=True)
            self._bind("cuda", self._dx.data_ptr(), self._dy.data_ptr())

    def _bind(self, device: str, x_ptr: int, y_ptr: int) -> None:
        self._io.bind_input(INPUT_NAME, device, 0, np.float32, list(self._in.shape), x_ptr)
        self._io.bind_output(OUTPUT_NAME, device, 0, np.float32, list(self._out.shape), y_ptr)

    def _infer_host(self, x: np.ndarray) -> np.ndarray:
        if self._in.device == "cpu":
            np.copyto(self._x, x)
            self.session.run_with_iobinding(self._io)
            return self._y
        self._dx.copy_(self._torch.from_numpy(x))
        self._run_gpu()
        self._host_y.copy_(self._dy)
        return self._host_y.numpy()

    def _infer_device(self, x: Any) -> Any:
        if self._in.device == "cpu":
            return super()._infer_device(x)
        self._dx.copy_(x)
        self._run_gpu()
        return self._dy

    def _run_gpu(self) -> None:
        # ONNX Runtime runs on its own CUDA stream: finish torch's copy into the input first.
        self._torch.cuda.current_stream().synchronize()
        self.session.run_with_iobinding(self._io)

    def close(self) -> None:
        if not self.closed:
            self._io.clear_binding_inputs()
            self._io.clear_binding_outputs()
            del self._io, self.session  # frees ONNX Runtime's thread pool now
        super().close()


def _trt_options(precision: str, cache: Path | None, workspace_mb: int) -> dict[str, Any]:
    """ONNX Runtime's TensorRT provider keeps its own engine and timing caches (keyed by
    its own hash of the model) in engines/ort-tensorrt."""
    opts: dict[str, Any] = {
        "device_id": 0,
        "trt_max_workspace_size": workspace_mb << 20,
        # The fp16 export is already half with float32 norms; the flag lets TensorRT 10
        # (weakly typed) keep those half kernels. QDQ int8 needs int8 enabled, no table.
        "trt_fp16_enable": precision in ("fp16", "int8"),
        "trt_int8_enable": precision == "int8",
        "trt_int8_use_native_calibration_table": False,
    }
    if cache is not None:
        opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                    trt_timing_cache_enable=True, trt_timing_cache_path=str(cache))
    return opts
