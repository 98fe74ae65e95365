"""What ``call --listen`` and ``serve`` share: who may come in, the HTTP(S) site, offers.

``Access`` is the listener's invitation (``invite.Gate``) and its TLS (``tls.ServerTls``,
None for plain HTTP on 127.0.0.1). ``Site`` starts the aiohttp app behind both. An offer is
untrusted input: ``read_offer`` and ``answer`` turn anything malformed into a 400 with a
reason (counted by the caller), never a 500 or a hung request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .invite import Gate
from .options import CallError
from .tls import ServerTls, TlsError, is_loopback

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
ANSWER_TIMEOUT_S = 15.0  # set the offer, gather candidates, answer


@dataclass
class Access:
    gate: Gate = field(default_factory=Gate)
    tls: ServerTls | None = None


def shown_host(host: str) -> str:
    """The address to put in an invitation: a wildcard listener's own LAN address."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing address
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostname()


class Site:
    """The listener's aiohttp app on host:port, behind its ``Access`` gate."""

    def __init__(self, routes: list[web.RouteDef], host: str, port: int, access: Access,
                 path: str = "/") -> None:
        if access.tls is None and not is_loopback(host):
            raise TlsError(f"plain HTTP on {host} would let anyone on the path tamper with "
                           "the call's set-up", "leave out --no-tls, or listen on 127.0.0.1")
        self.host, self.port, self.access, self.path = host, port, access, path
        self.app = web.Application(client_max_size=MAX_BODY,
                                   middlewares=[access.gate.middleware])
        self.app.add_routes(routes)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The invitation URL, as the other person is to get it."""
        tls = self.access.tls
        return self.access.gate.url("https" if tls else "http", shown_host(self.host),
                                    self.port, self.path, tls.fingerprint if tls else None)

    async def start(self) -> None:
        """Listen; with ``port=0`` a free port is picked and stored in ``port``."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        tls = self.access.tls
        site = web.TCPSite(self._runner, self.host, self.port,
                           ssl_context=tls.context if tls is not None else None)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise CallError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}",
                            "pick another port, or stop what uses this one") from exc
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def read_offer(request: web.Request) -> dict[str, Any] | web.Response:
    """The posted offer as a dict, or a 400 saying what is wrong with it."""
    try:
        offer = await request.json()
    except (ValueError, RecursionError, UnicodeDecodeError):
        return web.json_response({"error": "the offer is not JSON"}, status=400)
    if not isinstance(offer, dict):
        return web.json_response({"error": "the offer is not a JSON object"}, status=400)
    return offer


async def answer(peer: Any, offer: dict[str, Any]) -> dict[str, Any] | web.Response:
    """The peer's answer to ``offer``; a refused or unusable offer is a 4xx response (the
    caller closes the peer). aiortc's SDP parser raises whatever it meets on garbage."""
    try:
        return dict(await asyncio.wait_for(peer.accept_offer(offer), ANSWER_TIMEOUT_S))
    except CallError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except TimeoutError:
        return web.json_response({"error": "the offer could not be answered in time"},
                                 status=408)
    except Exception as exc:  # noqa: BLE001 -- untrusted SDP: any parser failure is a 400
        log.debug("unusable offer: %r", exc)
        return web.json_response({"error": f"the offer's SDP is unusable: "
                                           f"{type(exc).__name__}"}, status=400)
