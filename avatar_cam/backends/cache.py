"""The engine cache in engines/: one stamped file per (person, fingerprint), backend-neutral.

File layout (every engine, whatever the runtime)::

    b"AVCAMENG"              8 bytes magic
    uint32 little-endian     length of the header
    header                   UTF-8 JSON: person, fingerprint, payload_bytes, payload_sha256,
                             created, info (what the builder wants to remember)
    payload                  the runtime's bytes (a TensorRT plan, an ONNX model, ...)

The stamp is checked before the runtime sees the payload: a file cut short or altered is a
ModelError naming the file and the command that rebuilds it, never a crash inside
TensorRT. A file built for another model, GPU or runtime version is "stale": it is
rebuilt, or (``rebuild=False``) the error says how to rebuild it.

Where: $AVATAR_CAM_HOME/engines, else ./engines (like calibration/).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .fingerprint import Fingerprint, slug

log = logging.getLogger(__name__)

MAGIC = b"AVCAMENG"
_LEN = struct.Struct("<I")
MAX_HEADER = 1 << 20  # a header is a few hundred bytes; more means garbage


class EngineMissingError(ModelError):
    """No engine has been built for this person and target yet."""


class EngineMismatchError(ModelError):
    """An engine exists but was built for another model, GPU or runtime version."""


def engines_root() -> Path:
    """Where engines live: $AVATAR_CAM_HOME/engines, else ./engines."""
    home = os.environ.get("AVATAR_CAM_HOME")
    return (Path(home) if home else Path.cwd()) / "engines"


@dataclass(frozen=True)
class Stamp:
    person: str
    fingerprint: Fingerprint
    payload_bytes: int
    payload_sha256: str
    info: dict[str, Any]


class EngineCache:
    """get_or_build(person, fingerprint, ...) -> payload bytes, through stamped files."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else engines_root()

    def path_for(self, person: str, fp: Fingerprint, suffix: str) -> Path:
        return self.root / fp.file_name(person, suffix)

    def timing_cache_path(self, runtime: str, version: str, device: str) -> Path:
        """A builder's timing cache, shared by every person on this GPU and runtime."""
        return self.root / f"timing.{runtime}-{version}.{slug(device)}.cache"

    # -- writing -----------------------------------------------------------------------

    def store(self, person: str, fp: Fingerprint, payload: bytes, suffix: str,
              info: dict[str, Any] | None = None) -> Path:
        """Write the stamped file atomically (temp file + rename): never half an engine."""
        header = {"person": person, "fingerprint": fp.to_dict(), "payload_bytes": len(payload),
                  "payload_sha256": hashlib.sha256(payload).hexdigest(),
                  "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "info": info or {}}
        raw = json.dumps(header, sort_keys=True).encode()
        path = self.path_for(person, fp, suffix)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + _LEN.pack(len(raw)) + raw)
                f.write(payload)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Atomic write of an unstamped side file (timing or calibration cache)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    # -- reading -----------------------------------------------------------------------

    def read_stamp(self, path: Path, how: str = "") -> Stamp:
        """The header only (cheap: the payload is not read). ModelError when damaged."""
        with open(path, "rb") as f:
            return _parse_header(f.read(len(MAGIC) + _LEN.size + MAX_HEADER), path, how)[0]

    def read(self, path: Path, how: str = "") -> tuple[Stamp, bytes]:
        """Stamp and payload, both checked: length and SHA-256 must match the stamp."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"engine {path} cannot be read ({exc})", _fix(path, how)) from exc
        stamp, start = _parse_header(data, path, how)
        payload = data[start:]
        if len(payload) != stamp.payload_bytes:
            raise ModelError(f"engine {path} is truncated ({len(payload)} of "
                             f"{stamp.payload_bytes} payload bytes)", _fix(path, how))
        if hashlib.sha256(payload).hexdigest() != stamp.payload_sha256:
            raise ModelError(f"engine {path} is corrupt (its checksum does not match)",
                             _fix(path, how))
        return stamp, payload

    def entries(self, person: str | None = None) -> list[tuple[Path, Stamp]]:
        """Readable engines (optionally of one person); damaged files are skipped here and
        reported when someone asks for them by fingerprint."""
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.glob(f"{person}.*" if person else "*")):
            if path.name.startswith((".", "timing.", "calib.")) or not path.is_file():
                continue
            try:
                stamp = self.read_stamp(path)
            except (ModelError, OSError):
                continue
            if person is None or stamp.person == person:
                out.append((path, stamp))
        return out

    def stale(self, person: str, fp: Fingerprint) -> list[tuple[Path, Stamp]]:
        """Engines of the same family (runtime, precision, resolution) built for another
        model, device, runtime version or batch size."""
        return [(p, s) for p, s in self.entries(person)
                if s.fingerprint.family() == fp.family() and s.fingerprint != fp]

    def load(self, person: str, fp: Fingerprint, suffix: str, how: str) -> bytes:
        """The payload for exactly ``fp``; EngineMissingError / EngineMismatchError saying
        how to (re)build, ModelError for a damaged file."""
        path = self.path_for(person, fp, suffix)
        if path.is_file():
            stamp, payload = self.read(path, how)
            if stamp.person == person and stamp.fingerprint == fp:
                return payload
            raise EngineMismatchError(
                f"engine {path} is stamped for something else "
                f"({'; '.join(fp.differences(stamp.fingerprint)) or stamp.person})",
                f"rebuild it: {how}")
        stale = self.stale(person, fp)
        if stale:
            p, s = stale[0]
            raise EngineMismatchError(
                f"engine {p.name} was built for another target: "
                f"{'; '.join(fp.differences(s.fingerprint))}", f"rebuild it: {how}")
        raise EngineMissingError(
            f"no {fp.runtime} {fp.precision} engine for {person} at {fp.resolution}px on "
            f"{fp.device} in {self.root}", f"build it: {how}")

    def get_or_build(self, person: str, fp: Fingerprint, suffix: str,
                     build: Callable[[], tuple[bytes, dict[str, Any]]], *,
                     rebuild: bool = True, how: str = "") -> bytes:
        """The cached payload, else ``build()`` it (when ``rebuild``), store it and drop
        superseded engines. A damaged file is an error either way: deleting a user's file
        on a guess would hide a disk problem."""
        try:
            return self.load(person, fp, suffix, how)
        except (EngineMissingError, EngineMismatchError) as exc:
            if not rebuild:
                raise
            log.info("%s; building it now", exc.problem)
        payload, info = build()
        path = self.store(person, fp, payload, suffix, info)
        log.info("wrote %s (%.1f MB)", path, len(payload) / 1e6)
        for old, stamp in self.stale(person, fp):
            o = stamp.fingerprint
            superseded = o.model_sha256 != fp.model_sha256 or (
                o.device == fp.device and o.runtime_version == fp.runtime_version
                and o.max_batch == fp.max_batch)
            if superseded and old != path:
                with contextlib.suppress(OSError):
                    old.unlink()
                    log.info("removed superseded engine %s", old.name)
        return payload


def _fix(path: Path, how: str) -> str:
    return f"delete {path} and rebuild it" + (f": {how}" if how else "")


def _parse_header(data: bytes, path: Path, how: str) -> tuple[Stamp, int]:
    fix = _fix(path, how)
    head = len(MAGIC) + _LEN.size
    if len(data) < head or data[:len(MAGIC)] != MAGIC:
        raise ModelError(f"{path} is not an avatar-cam engine (bad magic or empty file)", fix)
    (n,) = _LEN.unpack_from(data, len(MAGIC))
    if n > MAX_HEADER or len(data) < head + n:
        raise ModelError(f"engine {path} is truncated inside its header", fix)
    try:
        doc = json.loads(data[head:head + n])
        stamp = Stamp(person=str(doc["person"]),
                      fingerprint=Fingerprint.from_dict(doc["fingerprint"]),
                      payload_bytes=int(doc["payload_bytes"]),
                      payload_sha256=str(doc["payload_sha256"]), info=dict(doc["info"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"engine {path} has a damaged header ({exc})", fix) from exc
    return stamp, head + n
