"""`avatar-cam serve`: an aiohttp server with one page that plays the avatar over WebRTC.

Routes (every one needs the invitation: ``invite.py``; 403 and counted without it)::

    GET  /           the page (``page.render_page``)
    POST /offer      {"sdp", "type": "offer", "codec"?} -> the answer (one peer per browser)
    GET  /basis.bin  the landmark basis (landmark-only mode)
    POST /stats      the page's numbers, once a second (logged; kept for tests)
    GET  /stats      what the pages reported last, and each peer's counters

Every browser gets its own peer connection, fed from one shared ``LocalAvatar``: the
pipeline runs once however many pages watch. At most ``max_peers`` at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from collections import OrderedDict
from typing import Any

from aiohttp import web

from .invite import Gate
from .page import render_page
from .peer import LocalAvatar, Peer, PeerOptions
from .signaling import Access, Site, answer, read_offer

log = logging.getLogger(__name__)

MAX_REPORTS = 32
REPORT_KEYS = {"id", "mode", "videoWidth", "videoHeight", "framesDecoded", "fps", "bytes",
               "kbps", "latencyMs", "rttMs", "jitterMs", "decodeMs", "packets", "decoded",
               "malformed", "state", "codec", "lastSeq", "q", "probe", "audioPackets",
               "audioSamples", "audioEnergy", "audioSent", "mic"}


class AvatarServer:
    def __init__(self, local: LocalAvatar, opts: PeerOptions, host: str = "127.0.0.1",
                 port: int = 8080, max_peers: int = 8, speaker: Any = None,
                 access: Access | None = None) -> None:
        self.local, self.opts = local, opts
        self.access = access or Access(Gate())
        self.speaker = speaker  # the viewers' voices (one at a time: see _offer)
        self.max_peers = max_peers
        self.peers: set[Peer] = set()
        self.reports: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.history: dict[str, list[int]] = {}  # report id -> framesDecoded/decoded over time
        self.site = Site([web.get("/", self._page), web.post("/offer", self._offer),
                          web.get("/basis.bin", self._basis), web.post("/stats", self._report),
                          web.get("/stats", self._stats)], host, port, self.access)

    @property
    def url(self) -> str:
        """The invitation: the page's URL with its token (and certificate fingerprint)."""
        return self.site.url

    @property
    def port(self) -> int:
        return self.site.port

    async def start(self) -> None:
        """Listen; with ``port=0`` a free port is picked."""
        await self.site.start()

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in list(self.peers)), return_exceptions=True)
        self.peers.clear()
        await self.site.close()

    # -- handlers ---------------------------------------------------------------------------

    async def _page(self, _request: web.Request) -> web.Response:
        basis = self.local.basis
        html = render_page(self.opts.mode, basis.tag if basis is not None else None)
        # The invitation is in the page's URL: no referrer may carry it elsewhere.
        return web.Response(text=html, content_type="text/html",
                            headers={"Referrer-Policy": "no-referrer",
                                     "Cache-Control": "no-store"})

    async def _basis(self, _request: web.Request) -> web.Response:
        if self.local.basis is None:
            raise web.HTTPNotFound(text="not in landmark-only mode")
        return web.Response(body=self.local.basis.to_bytes(),
                            content_type="application/octet-stream")

    async def _offer(self, request: web.Request) -> web.Response:
        offer = await read_offer(request)
        if isinstance(offer, web.Response):
            self.access.gate.counts["bad_offers"] += 1
            return offer
        if len(self.peers) >= self.max_peers:
            self.access.gate.counts["too_many_viewers"] += 1
            return web.json_response({"error": "too many viewers"}, status=503)
        codec = str(offer["codec"]) if offer.get("codec") in ("vp8", "h264") else self.opts.codec
        # One speaker, no mixer: the first viewer who brings a voice is heard.
        talking = any(p.voice_outputs for p in self.peers)
        speaker = self.speaker if not talking else None
        peer = Peer(self.local, None, dataclasses.replace(self.opts, codec=codec), speaker)
        self.peers.add(peer)
        reply = await answer(peer, offer)
        if isinstance(reply, web.Response):
            self.access.gate.counts["bad_offers"] += 1
            self.peers.discard(peer)
            await peer.close()
            return reply
        self.access.gate.spend()
        asyncio.ensure_future(self._reap(peer))
        log.info("a viewer connected (%d watching)", len(self.peers))
        return web.json_response({"sdp": reply["sdp"], "type": reply["type"]})

    async def _reap(self, peer: Peer) -> None:
        await peer.ended.wait()
        self.peers.discard(peer)
        await peer.close()
        log.info("a viewer left (%d watching)", len(self.peers))

    async def _report(self, request: web.Request) -> web.Response:
        try:
            raw = await request.json()
        except (ValueError, RecursionError):
            return web.json_response({"error": "not JSON"}, status=400)
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            return web.json_response({"error": "bad report"}, status=400)
        report = {k: v for k, v in raw.items() if k in REPORT_KEYS and (
            isinstance(v, str) and len(v) <= 64 or _number(v)
            or isinstance(v, list) and len(v) <= 64 and all(_number(x) for x in v))}
        rid = str(raw["id"])[:64]
        self.reports[rid] = report
        self.reports.move_to_end(rid)
        while len(self.reports) > MAX_REPORTS:
            old, _ = self.reports.popitem(last=False)
            self.history.pop(old, None)
        count = report.get("framesDecoded", report.get("decoded", 0))
        self.history.setdefault(rid, []).append(int(count) if isinstance(count, int) else 0)
        del self.history[rid][:-120]
        log.debug("viewer %s: %s", rid, json.dumps(report))
        return web.json_response({"ok": True})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response({"viewers": list(self.reports.values()),
                                  "peers": [p.stats() for p in self.peers],
                                  "signaling": dict(self.access.gate.counts)})


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
