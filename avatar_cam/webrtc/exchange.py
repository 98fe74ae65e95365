"""The model channel of one peer: bundles out (basis always, model if shared) and in.

See ``model_share`` for the protocol and the checks. What the peer sends is theirs: it is
held for this call only, in a folder of its own under the cache root that ``discard``
deletes at hang-up, unless their offer says ``"keep": true`` (``--share-model keep``):
then it joins the cache by hash, with a record of that permission and of the owner's
signature (``kept.json``) beside it, and a later call finds it there.

Whatever the peer sends that fails a check is counted under ``dropped_<reason>`` and
otherwise ignored; the ``basis`` and ``model`` futures resolve to None when what came is
unusable.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiortc import RTCDataChannel

from ..errors import AvatarCamError
from ..person import Person, load_person
from .basis import BASIS_FILE, ExpressionBasis
from .model_share import (
    MAX_MANIFEST_BYTES,
    BundleError,
    Incoming,
    Manifest,
    ModelCache,
    Outgoing,
    parse_manifest,
)
from .options import workers

log = logging.getLogger(__name__)

CALL_PREFIX = ".call-"  # cache_root/.call-PID-XXXX/: one call's models, deleted at hang-up
KEPT_FILE = "kept.json"

# Landmark packets queue behind chunks on the association (up to ~1 s while a model
# crosses: the receiver shows the sketch meanwhile), but a deep queue roughly halves the
# transfer time with aiortc's SCTP (5 MB: 3.5-6 s against 6-11 s at 256 KiB, 2 busy cores).
CHUNK_BACKLOG = 1024 * 1024
MAX_BASIS_BUNDLE = 1 << 20
MAX_MODEL_BUNDLE = 256 << 20


class ModelExchange:
    """Both directions of the model channel; ``attach`` it to the channel when it exists."""

    def __init__(self, cache: ModelCache, bundles: list[Outgoing], sender: bool,
                 spawn: Callable[[Coroutine[Any, Any, Any]], None], keep: bool = False) -> None:
        self.cache = cache
        self.bundles = bundles
        self.sender = sender  # False: this end sends nothing (a receive-only peer)
        self.keep = keep  # the peer may keep what we send after the call
        self._call_cache: ModelCache | None = None  # what we hold for this call only
        self._spawn = spawn
        self.counts: Counter[str] = Counter()
        self.digests: dict[str, str] = {}  # kind -> digest of what was received
        self.basis: asyncio.Future[ExpressionBasis | None] = asyncio.Future()
        self.model: asyncio.Future[Person | None] = asyncio.Future()
        self._incoming: dict[bytes, tuple[str, Incoming]] = {}
        self._outgoing: dict[str, Outgoing] = {}
        self._offered: set[str] = set()  # kinds the peer offered (one each)
        self._kept: set[str] = set()  # digests the peer let us keep

    def attach(self, channel: RTCDataChannel) -> None:
        channel.on("message", lambda m: self._on_control(channel, m))
        if channel.readyState == "open":
            self._spawn(self._offer_bundles(channel))
        else:
            channel.on("open", lambda: self._spawn(self._offer_bundles(channel)))

    def close(self) -> None:
        for future in (self.basis, self.model):
            if not future.done():
                future.set_result(None)
        for _, incoming in self._incoming.values():
            incoming.close()
        self._incoming.clear()

    def discard(self) -> None:
        """Delete what the peer sent for this call only (at hang-up, once nothing reads it)."""
        if self._call_cache is not None:
            shutil.rmtree(self._call_cache.root, ignore_errors=True)
            self._call_cache = None

    def _held(self) -> ModelCache:
        """This call's own folder under the cache root (made on first use); folders that
        a crashed process left behind are swept first."""
        if self._call_cache is None:
            self.cache.root.mkdir(parents=True, exist_ok=True)
            sweep_call_folders(self.cache.root)
            folder = tempfile.mkdtemp(prefix=f"{CALL_PREFIX}{os.getpid()}-", dir=self.cache.root)
            self._call_cache = ModelCache(Path(folder))
        return self._call_cache

    async def _offer_bundles(self, channel: RTCDataChannel) -> None:
        bundles = self.bundles
        for bundle in bundles:
            self._outgoing[bundle.manifest.digest] = bundle
            channel.send(json.dumps({"type": "offer", "manifest": bundle.manifest.to_json(),
                                     "keep": self.keep}))
        if self.sender and not any(b.manifest.kind == "model" for b in bundles):
            channel.send(json.dumps({"type": "no-model"}))

    def _on_control(self, channel: RTCDataChannel, message: object) -> None:
        try:
            if isinstance(message, bytes):
                self._on_chunk(channel, message)
            elif isinstance(message, str) and len(message) <= MAX_MANIFEST_BYTES:
                self._on_json(channel, json.loads(message))
            else:
                raise BundleError("control_message")
        except (BundleError, ValueError, TypeError, RecursionError) as exc:
            reason = exc.reason if isinstance(exc, BundleError) else "control_json"
            self.counts[f"dropped_{reason}"] += 1
            log.debug("model channel: dropped %s", exc)

    def _on_json(self, channel: RTCDataChannel, obj: Any) -> None:
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "offer":
            self._on_offer(channel, obj.get("manifest"), obj.get("keep") is True)
        elif kind == "no-model":
            if not self.model.done():
                self.model.set_result(None)
        elif kind == "want" and obj.get("digest") in self._outgoing:
            self._spawn(self._send_chunks(channel, self._outgoing[obj["digest"]]))
        elif kind in ("have", "done") and obj.get("digest") in self._outgoing:
            self.counts[f"peer_{kind}"] += 1
        else:
            raise BundleError("control_type")

    def _on_offer(self, channel: RTCDataChannel, raw: object, keep: bool) -> None:
        probe = parse_manifest(raw)
        limit = MAX_BASIS_BUNDLE if probe.kind == "basis" else MAX_MODEL_BUNDLE
        manifest = parse_manifest(raw, limit)
        future: asyncio.Future[Any] = self.basis if manifest.kind == "basis" else self.model
        if future.done() or manifest.kind in self._offered:
            raise BundleError("repeat_offer")
        if manifest.kind == "basis" and [f.name for f in manifest.files] != [BASIS_FILE]:
            raise BundleError("manifest", "a basis bundle holds codec_basis.bin only")
        if manifest.n_chunks == 0:
            raise BundleError("manifest", "empty bundle")
        self._offered.add(manifest.kind)
        if keep:
            self._kept.add(manifest.digest)
        self._spawn(self._consider(channel, manifest))

    async def _consider(self, channel: RTCDataChannel, manifest: Manifest) -> None:
        # Re-hashing a cached bundle takes a while for big weights: not on the event loop.
        cached = await workers().run(self.cache.lookup, manifest)
        if channel.readyState != "open":
            return
        if cached is not None:
            channel.send(json.dumps({"type": "have", "digest": manifest.digest}))
            self.counts[f"{manifest.kind}_from_cache"] += 1
            await self._adopt(manifest, cached)
            return
        keep = manifest.digest in self._kept
        incoming = Incoming(manifest, self.cache if keep else self._held())
        self._incoming[bytes.fromhex(manifest.digest[:16])] = (manifest.kind, incoming)
        channel.send(json.dumps({"type": "want", "digest": manifest.digest}))

    def _on_chunk(self, channel: RTCDataChannel, message: bytes) -> None:
        entry = self._incoming.get(message[4:12])
        if entry is None:
            raise BundleError("chunk_unexpected")
        kind, incoming = entry
        if incoming.add(message):
            del self._incoming[message[4:12]]
            self._spawn(self._finish(channel, kind, incoming))

    async def _finish(self, channel: RTCDataChannel, kind: str, incoming: Incoming) -> None:
        try:
            folder = await workers().run(incoming.finish)
        except (BundleError, OSError) as exc:
            self.counts[f"{kind}_rejected"] += 1
            log.warning("the peer's %s was rejected: %s", kind, exc)
            future: asyncio.Future[Any] = self.basis if kind == "basis" else self.model
            if not future.done():
                future.set_result(None)
            return
        if channel.readyState == "open":
            channel.send(json.dumps({"type": "done", "digest": incoming.digest}))
        self.counts[f"{kind}_received"] += 1
        await self._adopt(incoming.manifest, folder)

    async def _adopt(self, manifest: Manifest, folder: Path) -> None:
        try:
            if manifest.kind == "basis":
                data = await workers().run((folder / BASIS_FILE).read_bytes)
                if not self.basis.done():
                    self.basis.set_result(ExpressionBasis.from_bytes(data))
            else:
                person = await workers().run(load_person, manifest.name, folder.parent)
                if manifest.digest in self._kept and folder.parent.parent == self.cache.root:
                    await workers().run(record_kept, folder, person)
                if not self.model.done():
                    self.model.set_result(person)
            self.digests[manifest.kind] = manifest.digest
        except (ValueError, OSError, AvatarCamError) as exc:
            self.counts[f"{manifest.kind}_unusable"] += 1
            log.warning("the peer's %s is unusable: %s", manifest.kind, exc)
            future: asyncio.Future[Any] = self.basis if manifest.kind == "basis" else self.model
            if not future.done():
                future.set_result(None)

    async def _send_chunks(self, channel: RTCDataChannel, bundle: Outgoing) -> None:
        for chunk in bundle.chunks():
            while channel.bufferedAmount > CHUNK_BACKLOG:  # aiortc queues without bound
                if channel.readyState != "open":
                    return
                await asyncio.sleep(0.005)
            if channel.readyState != "open":
                return
            channel.send(chunk)
            self.counts["chunks_sent"] += 1


def record_kept(folder: Path, person: Person) -> None:
    """Write, beside a model its owner let us keep (``<digest>/kept.json``), that they did,
    when, and who signed it (with their signature as it came)."""
    from ..honesty.signing import SIGNATURE_FILE

    signature = folder / SIGNATURE_FILE
    record = {"kept_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "allowed_by": "the owner shared it with --share-model keep",
              "person": folder.name,
              "owner": person.owner.describe() if person.owner is not None else None,
              "signature": json.loads(signature.read_text()) if signature.is_file() else None}
    (folder.parent / KEPT_FILE).write_text(json.dumps(record, indent=2) + "\n")


def sweep_call_folders(root: Path) -> None:
    """Remove the per-call folders of processes that are gone (a crash, a kill -9)."""
    for folder in root.glob(f"{CALL_PREFIX}*"):
        pid = folder.name[len(CALL_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
