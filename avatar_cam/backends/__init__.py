"""Running the personalized generator fast: export, engine cache, builders and runtimes.

fingerprint.py     what an engine was built for (model hash, size, precision, GPU, runtime)
cache.py           engines/: stamped files, stale/corrupt detection, rebuild or say how
export.py          generator -> ONNX (fp32, fp16 with float32 norms, QDQ int8) + parity
tensorrt_build.py  offline TensorRT 10/11 builder (timing cache, int8 calibration)
engines.py         person -> cached ONNX / TensorRT plan (export or build on demand)
base.py            the Backend interface, its TensorSpec and BackendError
runtime.py         open_backend: picks the fastest runtime, says why (imports the runtimes)
torch_backend.py, ort_backend.py, trt_backend.py   the three runtimes (import base.py)
renderer.py        BackendRenderer: landmarks -> face through a backend (pipeline stage)
commands.py        `avatar-cam build-engine`

Nothing is imported here: torch, onnxruntime and tensorrt load only with the module
that needs them.
"""
