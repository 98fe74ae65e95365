"""`avatar-cam call`: two avatar-cam instances in a call, offer/answer over plain HTTP.

    A: avatar-cam call --listen 8765                  (waits for one call)
    B: avatar-cam call --connect http://A-HOST:8765   (POSTs its offer to A's /call)

Each side sends its own avatar and renders the other's into its sink. Both sides must
agree on the mode (--landmarks-only on both or on neither); a mismatch, a busy listener
or an unreachable address ends in one line naming the fix. The call ends when either
side hangs up, after ``duration_s``, or once ``frames`` frames reached the sink.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from .options import wait_awake
from .peer import CallError, LocalAvatar, Peer, PeerOptions
from .server import MAX_BODY

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Until:
    duration_s: float | None = None  # after connecting
    frames: int | None = None  # frames that reached the sink


def sink_frames(sink: Any) -> int:
    count = getattr(sink, "frames_sent", None)
    if isinstance(count, int):
        return count
    frames = getattr(sink, "frames", None)
    return len(frames) if isinstance(frames, list) else 0


async def hold(peer: Peer, sink: Any, until: Until) -> None:
    """Wait until the call ends, ``until`` is reached, or the task is cancelled."""
    start = time.monotonic()
    while not peer.ended.is_set():
        if until.duration_s is not None and time.monotonic() - start >= until.duration_s:
            return
        if until.frames is not None and sink_frames(sink) >= until.frames:
            return
        await asyncio.sleep(0.1)


async def listen(local: LocalAvatar, opts: PeerOptions, sink: Any, host: str, port: int,
                 until: Until, speaker: Any = None, *,
                 ready: asyncio.Future[int] | None = None) -> dict[str, Any]:
    """Answer one call on http://host:port/call; returns the call's statistics."""
    called: asyncio.Future[Peer] = asyncio.Future()

    async def on_call(request: web.Request) -> web.Response:
        if called.done():
            return web.json_response({"error": "busy: already in a call"}, status=409)
        try:
            offer = await request.json()
            if not isinstance(offer, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            return web.json_response({"error": "the offer is not JSON"}, status=400)
        peer = Peer(local, sink, opts, speaker)
        try:
            answer = await peer.accept_offer(offer)
        except CallError as exc:
            await peer.close()
            return web.json_response({"error": str(exc)}, status=409)
        called.set_result(peer)
        return web.json_response(answer)

    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes([web.post("/call", on_call)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise CallError(f"cannot listen on {host}:{port}: {exc.strerror}",
                        "pick another port, or stop what uses this one") from exc
    server = site._server
    bound = int(server.sockets[0].getsockname()[1]) if server is not None else port  # type: ignore[attr-defined]
    log.info("waiting for a call on http://%s:%d/call", host, bound)
    if ready is not None:
        ready.set_result(bound)
    peer: Peer | None = None
    try:
        await wait_awake(called)
        peer = called.result()
        await peer.wait_connected(CONNECT_TIMEOUT_S)
        log.info("in a call (%s)", opts.mode)
        await hold(peer, sink, until)
        return peer.stats()
    finally:
        if peer is not None:
            await peer.close()
        await runner.cleanup()


async def connect(local: LocalAvatar, opts: PeerOptions, sink: Any, url: str,
                  until: Until, speaker: Any = None) -> dict[str, Any]:
    """Call the avatar-cam listening at ``url``; returns the call's statistics."""
    if not url.startswith(("http://", "https://")):
        raise CallError(f"{url!r} is not an http(s) address",
                        "give the listener's address, e.g. http://192.168.1.20:8765")
    target = url if url.rstrip("/").endswith("/call") else url.rstrip("/") + "/call"
    peer = Peer(local, sink, opts, speaker)
    try:
        offer = await peer.create_offer()
        try:
            async with ClientSession(timeout=ClientTimeout(total=CONNECT_TIMEOUT_S)) as http, \
                    http.post(target, json=offer) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (ClientError, TimeoutError, ValueError) as exc:
            raise CallError(f"cannot reach {target}: {exc or type(exc).__name__}",
                            "check the address and that `avatar-cam call --listen` runs there"
                            ) from exc
        if status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise CallError(f"the listener refused the call: {error or status}",
                            "match --landmarks-only on both ends, or wait until it is free")
        await peer.accept_answer(body)
        await peer.wait_connected(CONNECT_TIMEOUT_S)
        log.info("in a call (%s)", opts.mode)
        await hold(peer, sink, until)
        return peer.stats()
    finally:
        await peer.close()
