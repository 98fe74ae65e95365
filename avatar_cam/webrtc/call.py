"""`avatar-cam call`: two avatar-cam instances in a call, offer/answer over HTTPS.

    A: avatar-cam call --listen 8765 --host 0.0.0.0   (prints an invitation URL, waits)
    B: avatar-cam call --connect 'https://A-HOST:8765/call?invite=...&fp=...'

Only the holder of the invitation gets in (``invite.py``); B pins A's certificate by the
fingerprint in it (``tls.py``).

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

from aiohttp import (
    ClientError,
    ClientSession,
    ClientSSLError,
    ClientTimeout,
    ServerFingerprintMismatch,
    web,
)

from .invite import Gate, Invitation
from .options import wait_awake
from .peer import CallError, LocalAvatar, Peer, PeerOptions
from .signaling import Access, Site, answer, read_offer
from .tls import client_ssl

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
                 until: Until, speaker: Any = None, *, access: Access | None = None,
                 ready: asyncio.Future[str] | None = None) -> dict[str, Any]:
    """Answer one call on host:port/call from the holder of the invitation (printed, and
    handed to ``ready``); returns the call's statistics, the refusals counted in them."""
    access = access or Access(Gate(one_use=True))
    called: asyncio.Future[Peer] = asyncio.Future()

    async def on_call(request: web.Request) -> web.Response:
        if called.done():
            return web.json_response({"error": "busy: already in a call"}, status=409)
        offer = await read_offer(request)
        if isinstance(offer, web.Response):
            access.gate.counts["bad_offers"] += 1
            return offer
        peer = Peer(local, sink, opts, speaker)
        reply = await answer(peer, offer)
        if isinstance(reply, web.Response) or called.done():
            access.gate.counts["bad_offers"] += 1
            await peer.close()
            return reply if isinstance(reply, web.Response) else \
                web.json_response({"error": "busy: already in a call"}, status=409)
        access.gate.spend()
        called.set_result(peer)
        return web.json_response(reply)

    site = Site([web.post("/call", on_call)], host, port, access, "/call")
    await site.start()
    log.info("waiting for a call on %s:%d (%s)", host, site.port,
             "https" if access.tls else "http, this machine only")
    print(f"Invitation (give it to the one person you call; {_validity(access.gate)}):\n"
          f"  {site.url}", flush=True)
    if ready is not None:
        ready.set_result(site.url)
    peer: Peer | None = None
    try:
        await wait_awake(called)
        peer = called.result()
        await peer.wait_connected(CONNECT_TIMEOUT_S)
        log.info("in a call (%s)", opts.mode)
        await hold(peer, sink, until)
        return {**peer.stats(), "signaling": dict(access.gate.counts)}
    finally:
        if peer is not None:
            await peer.close()
        await site.close()


def _validity(gate: Gate) -> str:
    uses = "one call" if gate.one_use else "any number of viewers"
    if gate.ttl_s is None:
        return f"{uses}, while this runs"
    return f"{uses}, for {gate.ttl_s / 60:.0f} min"


async def connect(local: LocalAvatar, opts: PeerOptions, sink: Any, url: str,
                  until: Until, speaker: Any = None) -> dict[str, Any]:
    """Call the avatar-cam whose invitation ``url`` is; returns the call's statistics.
    The listener's certificate is checked against the invitation's fingerprint before
    anything is sent."""
    if not url.startswith(("http://", "https://")):
        raise CallError(f"{url!r} is not an invitation URL",
                        "give the whole URL `avatar-cam call --listen` printed, e.g. "
                        "https://192.168.1.20:8765/call?invite=...&fp=...")
    invitation = Invitation.parse(url)
    if invitation.token is None:
        raise CallError("the URL has no invitation in it (no invite=...)",
                        "copy the whole URL `avatar-cam call --listen` printed")
    ssl = client_ssl(invitation.scheme, invitation.host, invitation.fingerprint)
    target = invitation.target("/call")
    peer = Peer(local, sink, opts, speaker)
    try:
        offer = await peer.create_offer()
        try:
            async with ClientSession(timeout=ClientTimeout(total=CONNECT_TIMEOUT_S)) as http, \
                    http.post(target, json=offer, ssl=ssl) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except ServerFingerprintMismatch as exc:
            raise CallError(f"{invitation.base} is not the avatar-cam that made this "
                            "invitation: its certificate does not match the invitation's "
                            "fingerprint (someone on the network may be in the middle); "
                            "nothing was sent",
                            "ask for a fresh invitation, and check you are on the network "
                            "you expect") from exc
        except ClientSSLError as exc:
            raise CallError(f"{invitation.base}'s certificate is not trusted: {exc}",
                            "use the whole invitation URL (its fp=... pins the certificate)"
                            ) from exc
        except (ClientError, TimeoutError, ValueError) as exc:
            raise CallError(f"cannot reach {invitation.base}: {exc or type(exc).__name__}",
                            "check the address and that `avatar-cam call --listen` runs there"
                            ) from exc
        if status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            fix = body.get("fix") if isinstance(body, dict) else None
            raise CallError(f"the listener refused the call: {error or status}",
                            str(fix) if fix else "match --landmarks-only on both ends, or "
                            "wait until it is free")
        await peer.accept_answer(body)
        await peer.wait_connected(CONNECT_TIMEOUT_S)
        log.info("in a call (%s)", opts.mode)
        await hold(peer, sink, until)
        return peer.stats()
    finally:
        await peer.close()
