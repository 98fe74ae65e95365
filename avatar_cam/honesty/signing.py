"""Signed personal models: whose model this is, and that nobody changed it.

A model folder (calibration/NAME/: person.json, the photo, crop and neutral landmarks,
the landmark codec's basis, and when a generator was trained its weights, meta.json
and the held-out frames) is signed with the user's Ed25519 key, whatever files it
holds. The signature file holds a canonical manifest -- the SHA-256 of every other file
in the folder, the owner's name, the consent statement (verbatim), whether the
enrollment verified that a live person was in front of the camera (``liveness``:
"verified" from `calibrate --camera`, "not verified" from a clip or photos; absent in
models signed before it was recorded, read as "not recorded") with the method, and the
public key -- and the signature over it. Loading verifies all of it, so a changed,
added or removed file, or a manifest edited by hand, fails with a ModelError that names
what is wrong.

The key lives in the user's config directory ($AVATAR_CAM_CONFIG, else
~/.config/avatar-cam) as identity.key (PEM, PKCS#8, mode 0600), created on first use.
``model_fingerprint`` is the 24 bits of a model the watermark carries (from the
signature file, so any change to the folder changes it). This module knows nothing of
the person format: it signs a folder of files.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import ModelError

SIGNATURE_FILE = "signature.json"
KEY_FILE = "identity.key"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Owner:
    """Who signed a model. ``key_fingerprint`` is "ed25519:" + 16 hex digits of the
    SHA-256 of the raw public key; ``is_local`` is True when it is this user's key."""

    name: str
    key_fingerprint: str
    public_key: str  # base64 of the 32-byte raw key
    signed_at: str  # ISO 8601, UTC
    consent: str | None
    is_local: bool
    model_fingerprint: int = 0  # 24 bits: what the watermark payload carries
    liveness: str = "not recorded"  # "verified" | "not verified" | "not recorded"
    liveness_method: str | None = None

    def describe(self) -> str:
        mine = ", your key" if self.is_local else ""
        return (f"owner {self.name} (key {self.key_fingerprint}{mine}, signed "
                f"{self.signed_at}, model {self.model_fingerprint:06x}, liveness: "
                f"{self.liveness})")


def config_dir() -> Path:
    env = os.environ.get("AVATAR_CAM_CONFIG")
    return Path(env) if env else Path.home() / ".config" / "avatar-cam"


def key_path() -> Path:
    return config_dir() / KEY_FILE


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def load_or_create_key(path: Path | None = None) -> Ed25519PrivateKey:
    """The user's signing key, created (mode 0600, its folder 0700) if missing."""
    path = path or key_path()
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"cannot read the signing key {path}: {exc}",
                             "restore it from a backup, or move it away to create a new "
                             "one (models signed with the old key then show another owner)"
                             ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ModelError(f"the signing key {path} is not an Ed25519 key",
                             "move it away; a new key is created on the next use")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)  # never leave a half-written key behind
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return key


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file below ``folder`` but the signature."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist",
                         "check the name: avatar-cam devices lists enrolled persons")
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise ModelError(f"model folder {folder} contains a symbolic link {rel}",
                             "replace the link by the file itself, then sign again")
        if path.is_file() and rel != SIGNATURE_FILE:
            out[rel] = _sha256(path)
    return out


def model_fingerprint(folder: Path) -> int:
    """24-bit fingerprint of a model for the watermark payload: the SHA-256 of its
    signature file (which covers every file), else of its files' hashes if unsigned."""
    folder = Path(folder)
    sig = folder / SIGNATURE_FILE
    data = sig.read_bytes() if sig.is_file() else _canonical({"files": file_hashes(folder)})
    return int.from_bytes(hashlib.sha256(data).digest()[:3], "big")


def _canonical(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


LIVENESS_VALUES = ("verified", "not verified")


def sign_model(folder: Path, owner: str | None = None, consent: str | None = None,
               key: Ed25519PrivateKey | None = None,
               liveness: dict[str, str] | None = None) -> Owner:
    """Sign every file in ``folder`` with the user's key; write folder/signature.json.
    ``liveness``: {"liveness": "verified" | "not verified", "liveness_method": text}."""
    if liveness is not None and (liveness.get("liveness") not in LIVENESS_VALUES
                                 or not isinstance(liveness.get("liveness_method"), str)):
        raise ValueError(f"liveness must give 'liveness' in {LIVENESS_VALUES} and a "
                         f"'liveness_method' string, got {liveness!r}")
    folder = Path(folder)
    key = key or load_or_create_key()
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "owner": owner or getpass.getuser(),
        "consent": consent,
        "public_key": base64.b64encode(raw).decode(),
        "key_fingerprint": fingerprint(public),
        "signed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": file_hashes(folder),
    }
    if liveness is not None:
        manifest["liveness"] = liveness["liveness"]
        manifest["liveness_method"] = liveness["liveness_method"]
    signed = dict(manifest, signature=base64.b64encode(key.sign(_canonical(manifest))).decode())
    tmp = folder / f".{SIGNATURE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(signed, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / SIGNATURE_FILE)
    return _owner(manifest, public, model_fingerprint(folder))


def _owner(manifest: dict[str, Any], public: Ed25519PublicKey, model: int) -> Owner:
    local = False
    path = key_path()
    if path.is_file():
        with contextlib.suppress(ModelError):
            mine = load_or_create_key(path).public_key()
            local = fingerprint(mine) == fingerprint(public)
    method = manifest.get("liveness_method")
    return Owner(str(manifest["owner"]), fingerprint(public), str(manifest["public_key"]),
                 str(manifest["signed_at"]), manifest.get("consent"), local, model,
                 str(manifest.get("liveness", "not recorded")),
                 method if isinstance(method, str) else None)


def verify_model(folder: Path) -> Owner:
    """The owner of the model in ``folder``; ModelError if unsigned, altered or forged."""
    folder = Path(folder)
    name = folder.name
    resign = (f"if you changed {name} yourself, sign it again (re-enroll); "
              "otherwise do not use it")
    sig_path = folder / SIGNATURE_FILE
    if not sig_path.is_file():
        raise ModelError(f"model {name!r} is not signed ({sig_path} is missing)",
                         "re-enroll it: enrolling signs the model with your key")
    try:
        signed = json.loads(sig_path.read_text())
        if not isinstance(signed, dict) or signed.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"unsupported signature format {signed.get('format')!r}")
        signature = base64.b64decode(signed.pop("signature"), validate=True)
        public = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(signed["public_key"], validate=True))
        files = signed["files"]
        if not isinstance(files, dict) or not isinstance(signed["owner"], str):
            raise ValueError("files must be a mapping and owner a string")
        if signed.get("liveness", "verified") not in LIVENESS_VALUES:
            raise ValueError(f"unknown liveness {signed.get('liveness')!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"model {name!r} has a damaged signature file: {exc}", resign) from exc
    try:
        public.verify(signature, _canonical(signed))
    except InvalidSignature:
        raise ModelError(f"model {name!r}: the signature does not match its manifest "
                         "(signature.json was edited)", resign) from None
    if signed.get("key_fingerprint") != fingerprint(public):
        raise ModelError(f"model {name!r}: the key fingerprint does not match the key", resign)
    actual = file_hashes(folder)
    changed = sorted(f for f in files.keys() & actual.keys() if files[f] != actual[f])
    added = sorted(actual.keys() - files.keys())
    missing = sorted(files.keys() - actual.keys())
    if changed or added or missing:
        parts = [f"{label}: {', '.join(items)}" for label, items in
                 (("changed", changed), ("added", added), ("missing", missing)) if items]
        raise ModelError(f"model {name!r} was modified after it was signed "
                         f"({'; '.join(parts)})", resign)
    return _owner(signed, public, model_fingerprint(folder))
