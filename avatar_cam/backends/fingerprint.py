"""What an engine was built for: the fingerprint that names and stamps every file in engines/.

A compiled engine is only valid for the exact model bytes, input size, precision, GPU
(TensorRT plans are tied to the GPU model and compute capability) and runtime version it
was built with. ``Fingerprint`` holds those; its ``key`` (a short hash of all fields)
goes into the file name and the whole record into the file's stamp, so a stale engine is
found by name and confirmed by stamp before the runtime ever sees its bytes.

Light on purpose: no torch, onnxruntime or tensorrt import at module level.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .base import BackendError

PRECISIONS = ("fp32", "fp16", "int8")
STAMP_FORMAT = 1  # bump when the meaning of a field changes
ANY_DEVICE = "any"  # artifacts that run on every device (ONNX files)
CPU_DEVICE = "cpu"


@dataclass(frozen=True)
class Fingerprint:
    """Everything an engine depends on. ``device`` is "NAME smXY" for a GPU, "cpu", or
    "any" for device-neutral files; ``runtime``/``runtime_version`` name the library that
    reads the file (tensorrt 10.x, onnx opset 17, ...)."""

    model_sha256: str
    resolution: int
    precision: str
    device: str
    runtime: str
    runtime_version: str
    max_batch: int = 1

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.model_sha256):
            raise ValueError("model_sha256 must be 64 lowercase hex digits")
        if self.resolution <= 0 or self.max_batch <= 0:
            raise ValueError("resolution and max_batch must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return {"stamp_format": STAMP_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        """Inverse of ``to_dict``; ValueError on a missing or unknown field."""
        if data.get("stamp_format") != STAMP_FORMAT:
            raise ValueError(f"stamp format {data.get('stamp_format')!r}, "
                             f"this build reads {STAMP_FORMAT}")
        names = {f.name for f in fields(cls)}
        body = {k: v for k, v in data.items() if k != "stamp_format"}
        if set(body) != names:
            raise ValueError(f"stamp fields {sorted(body)} differ from {sorted(names)}")
        return cls(**body)

    @property
    def key(self) -> str:
        """12 hex digits of the SHA-256 of every field: unique per build target."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def family(self) -> tuple[str, str, int]:
        """Files of one family are the same kind of engine (runtime, precision, size);
        within a family, a different key means a stale engine."""
        return (self.runtime, self.precision, self.resolution)

    def differences(self, other: Fingerprint) -> list[str]:
        """Human-readable 'field: this vs other' for every field that differs."""
        out = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                if f.name == "model_sha256":
                    a, b = a[:12], b[:12]
                out.append(f"{f.name} {b} (file) vs {a} (now)")
        return out

    def file_name(self, person: str, suffix: str) -> str:
        """e.g. ``alice.tensorrt-10.3.0.fp16.r256.b1.nvidia-h100-sm90.1a2b3c4d5e6f.engine``"""
        parts = [person, f"{self.runtime}-{self.runtime_version}", self.precision,
                 f"r{self.resolution}", f"b{self.max_batch}", slug(self.device), self.key]
        return ".".join(parts) + suffix


def slug(text: str) -> str:
    """Lowercase letters, digits and '-' only: safe in a file name on every system."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def model_hash(path: Path) -> str:
    """SHA-256 of a weights file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gpu_identity(index: int = 0) -> str:
    """"NAME smXY" of CUDA device ``index`` (through torch), or BackendError if none."""
    try:
        import torch
    except ImportError as exc:  # torch is a dependency; guard for trimmed installs
        raise BackendError("torch is not importable, so no GPU can be used",
                           "reinstall avatar-cam's dependencies") from exc
    if not torch.cuda.is_available():
        raise BackendError("no CUDA GPU is visible (torch.cuda.is_available() is False)",
                           "use a CPU backend, or install a CUDA build of torch and a driver")
    major, minor = torch.cuda.get_device_capability(index)
    return f"{torch.cuda.get_device_name(index)} sm{major}{minor}"
