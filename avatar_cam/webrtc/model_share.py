"""Sending a person's model across a call: chunked, hashed, cached by hash, untrusted.

A bundle is the files of one folder and its subfolders (``calibration/<name>/``:
person.json, photo.png, crop.png, neutral.npy, codec_basis.bin, the neural generator's
weights and meta.json, signature.json, ...), so whatever enrollment adds travels too and
the receiver can check the owner's signature over all of it (``load_person`` does).
Its manifest lists every file's relative path, size and sha256; the bundle's digest is
the sha256 of the canonical manifest, so one hash names the content.

Protocol on one reliable, ordered data channel (JSON text + binary chunks)::

    owner -> peer   {"type": "offer", "manifest": {...}}       for each bundle
    owner -> peer   {"type": "no-model"}                        model not shared
    peer  -> owner  {"type": "have" | "want", "digest": D}      cached already, or not
    owner -> peer   chunk messages, in order                   after "want"
    peer  -> owner  {"type": "done", "digest": D}               verified and cached

A chunk is ``b"ACM1" + digest[:8] + uint32 index + data``: the files concatenated in
manifest order, cut into ``CHUNK_BYTES`` pieces. The receiver checks every field, keeps
the data in a temporary file (never in memory), verifies every file's sha256 and only
then moves the folder into the cache, named by digest. Anything malformed is counted
and dropped; a bundle over ``max_bytes`` is refused before a byte of it is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUNDLE_FORMAT = 1
CHUNK_MAGIC = b"ACM1"
CHUNK_HEADER = 16
CHUNK_BYTES = 16 * 1024  # the message size every WebRTC stack delivers unfragmented
MAX_MANIFEST_BYTES = 64 * 1024
MAX_FILES = 1024
MAX_DEPTH = 4
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
MAX_IMAGE_SIDE = 4096  # as enrollment's largest photo
KINDS = ("basis", "model")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")  # no "..", nothing hidden
_PERSON_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BundleError(ValueError):
    """A manifest, chunk or file that fails a check (``reason`` is what gets counted)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class BundleFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    kind: str  # basis | model
    name: str  # the person's name
    files: tuple[BundleFile, ...]

    def to_json(self) -> dict[str, object]:
        return {"format": BUNDLE_FORMAT, "kind": self.kind, "name": self.name,
                "files": [[f.name, f.size, f.sha256] for f in self.files]}

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def n_chunks(self) -> int:
        return -(-self.total_bytes // CHUNK_BYTES)


def safe_path(rel: str) -> bool:
    """A relative path that stays inside the bundle: 1-4 plain components."""
    parts = rel.split("/")
    return len(rel) <= 256 and 1 <= len(parts) <= MAX_DEPTH and all(_PART.match(p)
                                                                     for p in parts)


def parse_manifest(obj: object, max_bytes: int = MAX_BUNDLE_BYTES) -> Manifest:
    """Validate an untrusted manifest (the decoded JSON object)."""
    if not isinstance(obj, dict) or obj.get("format") != BUNDLE_FORMAT:
        raise BundleError("manifest", "not a bundle manifest of a known format")
    kind, name, files = obj.get("kind"), obj.get("name"), obj.get("files")
    if kind not in KINDS or not isinstance(name, str) or not _PERSON_NAME.match(name):
        raise BundleError("manifest", "bad kind or name")
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_FILES:
        raise BundleError("manifest", "bad file list")
    out, seen = [], set()
    for entry in files:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise BundleError("manifest", "bad file entry")
        fname, size, sha = entry
        if not (isinstance(fname, str) and safe_path(fname) and fname not in seen
                and isinstance(size, int) and not isinstance(size, bool)
                and 0 <= size <= max_bytes and isinstance(sha, str) and _HEX64.match(sha)):
            raise BundleError("manifest", "bad file entry")
        seen.add(fname)
        out.append(BundleFile(fname, size, sha))
    manifest = Manifest(str(kind), name, tuple(out))
    if manifest.total_bytes > max_bytes:
        raise BundleError("too_big", f"{manifest.total_bytes} bytes > {max_bytes}")
    return manifest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Outgoing:
    """A bundle to send: its manifest and its chunks, read from disk or memory lazily."""

    def __init__(self, kind: str, name: str, files: dict[str, Path | bytes]) -> None:
        self._files = dict(sorted(files.items()))
        entries = []
        for fname, src in self._files.items():
            if isinstance(src, bytes):
                entries.append(BundleFile(fname, len(src), hashlib.sha256(src).hexdigest()))
            else:
                entries.append(BundleFile(fname, src.stat().st_size, _sha256_file(src)))
        self.manifest = parse_manifest(Manifest(kind, name, tuple(entries)).to_json())

    @classmethod
    def from_folder(cls, kind: str, name: str, folder: Path) -> Outgoing:
        """Every regular file below ``folder`` (e.g. calibration/NAME/) but hidden ones,
        temporary ones and links."""
        root = Path(folder)
        files: dict[str, Path | bytes] = {}
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not p.is_symlink() and safe_path(rel) \
                    and not rel.endswith(".tmp"):
                files[rel] = p
        return cls(kind, name, files)

    def chunks(self) -> Iterator[bytes]:
        """Chunk messages in order, reading each file block by block."""
        prefix = CHUNK_MAGIC + bytes.fromhex(self.manifest.digest[:16])
        buf = bytearray()
        index = 0
        for src in self._files.values():
            blocks = [src] if isinstance(src, bytes) else _blocks(src)
            for block in blocks:
                buf += block
                while len(buf) >= CHUNK_BYTES:
                    yield prefix + struct.pack(">I", index) + bytes(buf[:CHUNK_BYTES])
                    del buf[:CHUNK_BYTES]
                    index += 1
        if buf:
            yield prefix + struct.pack(">I", index) + bytes(buf)


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from iter(lambda: f.read(CHUNK_BYTES), b"")


class Incoming:
    """One bundle being received into a temporary file under the cache root."""

    def __init__(self, manifest: Manifest, cache: ModelCache) -> None:
        self.manifest = manifest
        self.cache = cache
        self.digest = manifest.digest
        self._prefix = CHUNK_MAGIC + bytes.fromhex(self.digest[:16])
        self._have = bytearray(manifest.n_chunks)
        self._missing = manifest.n_chunks
        cache.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=cache.root)
        self._fd: int | None = fd
        self._tmp = Path(tmp)
        self.counts: Counter[str] = Counter()

    @property
    def complete(self) -> bool:
        return self._missing == 0

    def add(self, message: bytes) -> bool:
        """Store one chunk; True once every chunk is in. BundleError if malformed."""
        if len(message) < CHUNK_HEADER or message[:12] != self._prefix:
            raise BundleError("chunk_header")
        (index,) = struct.unpack(">I", message[12:16])
        if index >= len(self._have):
            raise BundleError("chunk_index")
        data = message[CHUNK_HEADER:]
        expected = min(CHUNK_BYTES, self.manifest.total_bytes - index * CHUNK_BYTES)
        if len(data) != expected:
            raise BundleError("chunk_size")
        if self._have[index]:
            self.counts["duplicate_chunks"] += 1
            return self.complete
        if self._fd is None:
            raise BundleError("closed")
        os.pwrite(self._fd, data, index * CHUNK_BYTES)
        self._have[index] = 1
        self._missing -= 1
        return self.complete

    def finish(self) -> Path:
        """Verify every file and move the bundle into the cache; returns its folder."""
        if not self.complete:
            raise BundleError("incomplete")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.cache.root))
        try:
            folder = staging / self.manifest.name
            folder.mkdir()
            with self._tmp.open("rb") as src:
                for entry in self.manifest.files:
                    h = hashlib.sha256()
                    (folder / entry.name).parent.mkdir(parents=True, exist_ok=True)
                    with (folder / entry.name).open("wb") as dst:
                        left = entry.size
                        while left:
                            block = src.read(min(left, 1 << 20))
                            if not block:
                                raise BundleError("short")
                            h.update(block)
                            dst.write(block)
                            left -= len(block)
                    if h.hexdigest() != entry.sha256:
                        raise BundleError("hash", entry.name)
                    check_file(folder / entry.name)
            return self.cache.adopt(staging, self.digest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._tmp.unlink(missing_ok=True)


def check_file(path: Path) -> None:
    """Refuse content that would make a loader allocate without bound (huge images)."""
    if path.suffix.lower() == ".png":
        head = path.open("rb").read(24)
        if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
            raise BundleError("file", f"{path.name} is not a PNG")
        w, h = struct.unpack(">II", head[16:24])
        if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
            raise BundleError("file", f"{path.name} is {w}x{h}")


def default_cache_root() -> Path:
    home = os.environ.get("AVATAR_CAM_HOME")
    if home:
        return Path(home) / "cache" / "models"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avatar-cam" / "models"


class ModelCache:
    """Received bundles by digest: ``root/<digest>/<name>/<files>``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def lookup(self, manifest: Manifest) -> Path | None:
        """The cached folder holding this exact bundle (files re-hashed), else None."""
        folder = self.root / manifest.digest / manifest.name
        if not folder.is_dir():
            return None
        for entry in manifest.files:
            path = folder / entry.name
            if not path.is_file() or path.stat().st_size != entry.size \
                    or _sha256_file(path) != entry.sha256:
                return None
        return folder

    def adopt(self, staging: Path, digest: str) -> Path:
        """Move a verified staging folder in as ``digest``. Another receiver (another
        call, another process) may have cached the same bundle meanwhile: the digest names
        the content, so a sound existing copy is kept and the new one discarded."""
        final = self.root / digest
        name = next(p.name for p in staging.iterdir())
        new = [p for p in (staging / name).rglob("*") if p.is_file()]
        if (final / name).is_dir() and all(
                (final / p.relative_to(staging)).is_file()
                and (final / p.relative_to(staging)).stat().st_size == p.stat().st_size
                for p in new):
            shutil.rmtree(staging, ignore_errors=True)
            return final / name
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
            final.rename(trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        staging.rename(final)
        return final / name
