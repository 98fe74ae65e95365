"""Invitations: only who holds the link the listener printed may use its routes.

``call --listen`` and ``serve`` make one ``Gate`` each. Its invitation is an unguessable
token (192 bits from ``secrets``) in the URL they print, with the listener's certificate
fingerprint beside it when the signaling is HTTPS (``tls.py``)::

    call:   https://192.168.1.20:8765/call?invite=TOKEN&fp=SHA256HEX
    serve:  https://192.168.1.20:8080/?invite=TOKEN&fp=SHA256HEX   (open it in a browser)

Every request must carry the token, as the ``invite`` query parameter or the
``X-Avatar-Cam-Invite`` header; it is compared in constant time. Without it (or with an
expired or spent one) the answer is 403, counted. An address that keeps guessing is
backed off (429 with Retry-After, doubling), offers from one address are rate-limited,
and the table of addresses is bounded, so nothing here grows with what strangers send.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
import urllib.parse
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

TOKEN_BYTES = 24  # 192 bits
PARAM, FINGERPRINT_PARAM = "invite", "fp"
HEADER = "X-Avatar-Cam-Invite"
MAX_ADDRESSES = 1024  # addresses remembered for back-off and rate limits (oldest forgotten)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Limits:
    free_failures: int = 3  # wrong tokens from one address before it is backed off
    backoff_s: float = 1.0  # the first back-off; doubles with every further failure
    max_backoff_s: float = 300.0
    offers_per_minute: int = 12  # per address (a page reload or a retry is a few)
    pending_offers: int = 2  # per address, being answered at once


@dataclass
class _Address:
    failures: int = 0
    blocked_until: float = 0.0
    offers: list[float] = field(default_factory=list)  # recent offer times (<= per minute)
    pending: int = 0


class Gate:
    """The listener's invitation and the checks in front of every route (``middleware``).

    ``ttl_s``: the invitation stops working this long after it was made (None: while the
    listener runs). ``one_use``: it is spent by the first offer that is answered
    (``spend``), as for a call; a page (``serve``) may be reloaded and shared.
    ``offer_paths``: the routes that start a peer connection (rate-limited).
    """

    def __init__(self, ttl_s: float | None = None, one_use: bool = False,
                 offer_paths: tuple[str, ...] = ("/offer", "/call"),
                 limits: Limits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token = secrets.token_urlsafe(TOKEN_BYTES)
        self._secret = self.token.encode()
        self.ttl_s, self.one_use, self.offer_paths = ttl_s, one_use, offer_paths
        self.limits = limits or Limits()
        self._clock = clock
        self.expires_at = None if ttl_s is None else clock() + ttl_s
        self.spent = False
        self.counts: Counter[str] = Counter()
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    # -- the URL ---------------------------------------------------------------------------

    def url(self, scheme: str, host: str, port: int, path: str = "/",
            fingerprint: str | None = None) -> str:
        """The invitation as a URL to hand to the other person."""
        query = {PARAM: self.token}
        if fingerprint is not None:
            query[FINGERPRINT_PARAM] = fingerprint
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}{path}?{urllib.parse.urlencode(query)}"

    # -- checks ----------------------------------------------------------------------------

    def valid(self, given: str | None) -> bool:
        """The token, unexpired and unspent; compared in constant time."""
        if given is None:
            return False
        match = hmac.compare_digest(given.encode("utf-8", "replace"), self._secret)
        return match and not self.spent and not self.expired

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self._clock() >= self.expires_at

    def spend(self) -> None:
        """An offer was answered: a one-use invitation works no more."""
        if self.one_use:
            self.spent = True

    def _address(self, remote: str | None) -> _Address:
        key = remote or "?"
        entry = self._addresses.get(key)
        if entry is None:
            entry = self._addresses[key] = _Address()
            while len(self._addresses) > MAX_ADDRESSES:
                self._addresses.popitem(last=False)
        self._addresses.move_to_end(key)
        return entry

    def _refuse(self, request: web.Request, entry: _Address) -> web.Response:
        """403 for a missing or wrong token; backs the address off after a few."""
        route = request.path.strip("/").replace("/", "_").replace(".", "_") or "page"
        self.counts["forbidden"] += 1
        self.counts[f"forbidden_{route[:32]}"] += 1
        entry.failures += 1
        if entry.failures == 1:
            log.warning("refused %s %s from %s: no valid invitation", request.method,
                        request.path[:64], request.remote)
        over = entry.failures - self.limits.free_failures
        if over > 0:
            wait = min(self.limits.max_backoff_s, self.limits.backoff_s * 2 ** (over - 1))
            entry.blocked_until = self._clock() + wait
        given = request.query.get(PARAM) or request.headers.get(HEADER)
        if given is not None and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                     self._secret):
            why = "this invitation was used already" if self.spent else \
                "this invitation has expired"
            fix = "ask for a new invitation link"
        else:
            why, fix = "this link needs its invitation", \
                "use the whole invitation URL the other person's avatar-cam printed"
        if request.method == "GET" and request.path == "/":  # a person, at the page
            return web.Response(text=f"avatar-cam: {why} -- {fix}\n", status=403)
        return web.json_response({"error": why, "fix": fix}, status=403)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = self._address(request.remote)
        now = self._clock()
        if entry.blocked_until > now:
            self.counts["backed_off"] += 1
            retry = math.ceil(entry.blocked_until - now)
            return web.json_response({"error": "too many wrong invitations from this address"},
                                     status=429, headers={"Retry-After": str(retry)})
        if not self.valid(request.query.get(PARAM) or request.headers.get(HEADER)):
            return self._refuse(request, entry)
        entry.failures = 0
        if request.path not in self.offer_paths:
            return await handler(request)
        entry.offers = [t for t in entry.offers if now - t < 60.0]
        if len(entry.offers) >= self.limits.offers_per_minute \
                or entry.pending >= self.limits.pending_offers:
            self.counts["offers_limited"] += 1
            return web.json_response({"error": "too many offers from this address"},
                                     status=429, headers={"Retry-After": "5"})
        entry.offers.append(now)
        entry.pending += 1
        try:
            return await handler(request)
        finally:
            entry.pending -= 1


@dataclass(frozen=True)
class Invitation:
    """An invitation URL as the caller got it: where to post, the token, the pin."""

    base: str  # scheme://host:port
    token: str | None
    fingerprint: str | None  # the listener's certificate SHA-256 (hex), if given

    @classmethod
    def parse(cls, url: str) -> Invitation:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        token = query.get(PARAM, [None])[0]
        fp = query.get(FINGERPRINT_PARAM, [None])[0]
        return cls(f"{parts.scheme}://{parts.netloc}", token,
                   fp.lower().replace(":", "") if fp else None)

    @property
    def scheme(self) -> str:
        return self.base.split("://", 1)[0]

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.base).hostname or ""

    def target(self, path: str) -> str:
        """The route to post to, the token in its query."""
        query = f"?{urllib.parse.urlencode({PARAM: self.token})}" if self.token else ""
        return f"{self.base}{path}{query}"
