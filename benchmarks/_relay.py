"""A UDP relay on 127.0.0.1 between two WebRTC peers that counts every datagram each way.

The caller does the signaling and passes each session description through ``rewrite``
before handing it to the other peer. The relay keeps one socket standing for each peer:
peer A is told that B is at socket ``RB``; what A sends there leaves socket ``RA`` for B's
real address, so B sees it come from where it was told A is, and B's answers to ``RA``
leave ``RB`` for A. Only 127.0.0.1 host candidates survive the rewrite (others are
removed), so ICE can only pair through the relay.

Counted per direction: datagrams and bytes on the wire = UDP payload + 8 (UDP header) +
20 (IPv4 header; exact, as nothing here sends IP options), split by what the payload is
(RFC 7983, by its first byte): STUN (0-3), DTLS (20-63; its content type tells the
handshake from application data, which in a WebRTC call is SCTP, i.e. data channels),
SRTP and SRTCP (128-191; RTCP by its packet type 192-223, RFC 5761), other. Loss, if asked,
drops media datagrams only (DTLS application data, SRTP, SRTCP: what carries the call;
never STUN or the handshake, so every run connects alike) at random with a seeded
generator per direction; dropped datagrams were sent, so they count as sent, and as dropped.

Faults of a bad link (``_faulty_link``: outages, burst and random loss, delay and jitter,
reordering; seeded, counted per direction) come on with ``set_faults``, e.g. once the call
is up: a datagram that survives them is handed on after its drawn delay. ``dropped``
counts every datagram not handed on, by kind; ``forwarded`` those handed on; the faults'
own counts are in each direction's snapshot under ``faults``.

The relay closes itself after ``lifetime_s`` whatever happens, and on ``close()``.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by path (tests): its sibling
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _faulty_link import Faults, FaultyWay, Outages  # noqa: E402

IP_UDP_HEADER = 20 + 8  # IPv4 without options + UDP
HOST = "127.0.0.1"
KINDS = ("stun", "dtls_handshake", "sctp", "srtp", "srtcp", "other")
MEDIA = {"sctp", "srtp", "srtcp"}
_CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


class RelayError(RuntimeError):
    """A session description the relay cannot stand in for."""


def kind_of(payload: bytes) -> str:
    """What a WebRTC datagram carries, by its first bytes (RFC 7983, RFC 5761)."""
    if not payload:
        return "other"
    b = payload[0]
    if b <= 3:
        return "stun"
    if 20 <= b <= 63:
        return "sctp" if b == 23 else "dtls_handshake"  # content type 23: application data
    if 128 <= b <= 191:
        if len(payload) > 1 and 192 <= payload[1] <= 223:
            return "srtcp"
        return "srtp"
    return "other"


@dataclass
class Direction:
    """One way through the relay: what the sending peer put on the wire."""

    name: str
    loss: float = 0.0
    seed: int = 0
    packets: Counter[str] = field(default_factory=Counter)
    octets: Counter[str] = field(default_factory=Counter)  # on the wire, headers included
    dropped: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0  # datagrams handed on
    link: FaultyWay = field(default_factory=FaultyWay)  # a bad link's faults (none: clean)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def count(self, payload: bytes, now_s: float = 0.0) -> tuple[int, float] | None:
        """Count one datagram: None if it is dropped, else (its index on the link, the
        seconds to hold it before handing it on; ``sent(index)`` counts it then)."""
        kind = kind_of(payload)
        self.packets[kind] += 1
        self.octets[kind] += len(payload) + IP_UDP_HEADER
        if self.loss > 0 and kind in MEDIA and self._rng.random() < self.loss:
            self.dropped[kind] += 1
            return None
        decision = self.link.decide(now_s, kind in MEDIA)
        if decision is None:
            self.dropped[kind] += 1
        return decision

    def sent(self, index: int) -> None:
        self.forwarded += 1
        self.link.handed_on(index)

    def snapshot(self) -> dict[str, Any]:
        return {"packets": dict(self.packets), "bytes": dict(self.octets),
                "dropped": dict(self.dropped), "forwarded": self.forwarded,
                "total_packets": sum(self.packets.values()),
                "total_bytes": sum(self.octets.values()),
                "faults": dict(self.link.counts)}


def window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What one direction carried between two snapshots."""
    out: dict[str, Any] = {}
    for key in ("packets", "bytes", "dropped"):
        out[key] = {k: after[key].get(k, 0) - before[key].get(k, 0)
                    for k in set(after[key]) | set(before[key])
                    if after[key].get(k, 0) - before[key].get(k, 0)}
    for key in ("forwarded", "total_packets", "total_bytes"):
        out[key] = after[key] - before[key]
    b, a = before.get("faults", {}), after.get("faults", {})
    out["faults"] = {k: a.get(k, 0) - b.get(k, 0) for k in a if a.get(k, 0) - b.get(k, 0)}
    return out


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)


class Relay:
    """Stands between peers A (the offerer) and B; ``await Relay.open(...)`` to make one."""

    def __init__(self, loss_ab: float = 0.0, loss_ba: float = 0.0, seed: int = 1) -> None:
        self.ab = Direction("a->b", loss_ab, seed, link=FaultyWay(seed=seed + 100))
        self.ba = Direction("b->a", loss_ba, seed + 1, link=FaultyWay(seed=seed + 101))
        self.real: dict[str, tuple[str, int] | None] = {"a": None, "b": None}
        self.strays = 0  # datagrams from an address that is not the peer's, not forwarded
        self._ra: _Endpoint | None = None  # stands for A (B sends here)
        self._rb: _Endpoint | None = None  # stands for B (A sends here)
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, lifetime_s: float, loss_ab: float = 0.0, loss_ba: float = 0.0,
                   seed: int = 1) -> Relay:
        relay = cls(loss_ab, loss_ba, seed)
        loop = asyncio.get_running_loop()
        _, relay._ra = await loop.create_datagram_endpoint(
            lambda: _Endpoint(relay._from_b), local_addr=(HOST, 0))
        _, relay._rb = await loop.create_datagram_endpoint(
            lambda: _Endpoint(relay._from_a), local_addr=(HOST, 0))
        relay._timer = loop.call_later(lifetime_s, relay.close)
        return relay

    def port(self, side: str) -> int:
        endpoint = self._ra if side == "a" else self._rb
        assert endpoint is not None and endpoint.transport is not None
        return int(endpoint.transport.get_extra_info("sockname")[1])

    def rewrite(self, sdp: str, side: str) -> str:
        """Peer ``side``'s ("a" or "b") description as the other peer is to see it: its
        127.0.0.1 UDP host candidates moved to the relay socket standing for it, every
        other candidate removed. Raises RelayError if it has none, or several ports."""
        ports: set[int] = set()
        out = []
        for line in sdp.splitlines():
            m = _CANDIDATE.match(line)
            if m is None:
                out.append(line)
                continue
            proto, addr, port, typ = m.group(3).lower(), m.group(5), int(m.group(6)), m.group(7)
            if proto != "udp" or addr != HOST or typ != "host":
                continue
            ports.add(port)
            out.append(f"a=candidate:{m.group(1)} {m.group(2)} {m.group(3)} {m.group(4)} "
                       f"{addr} {self.port(side)} typ {typ}{m.group(8)}")
        if len(ports) != 1:
            raise RelayError(f"peer {side} offers {len(ports)} loopback UDP ports, the relay "
                             "stands in for exactly one (one bundled transport, "
                             "127.0.0.1 gathered)")
        self.real[side] = (HOST, ports.pop())
        return "\r\n".join(out) + "\r\n"

    async def join(self, a: Any, b: Any, connect_timeout_s: float) -> None:
        """Set up the call between peers ``a`` (offers) and ``b`` (answers) through this
        relay: each description rewritten on its way, then wait until ``a`` is connected."""
        offer = await a.create_offer()
        offer["sdp"] = self.rewrite(offer["sdp"], "a")
        answer = await b.accept_offer(offer)
        answer["sdp"] = self.rewrite(answer["sdp"], "b")
        await a.accept_answer(answer)
        await a.wait_connected(connect_timeout_s)

    def _from_a(self, data: bytes, addr: tuple[str, int]) -> None:
        self._forward(data, addr, "a", self.ab, self._ra)

    def _from_b(self, data: bytes, addr: tuple[str, int]) -> None:
        self._forward(data, addr, "b", self.ba, self._rb)

    def _forward(self, data: bytes, addr: tuple[str, int], side: str, way: Direction,
                 out: _Endpoint | None) -> None:
        other = self.real["b" if side == "a" else "a"]
        if addr != self.real[side] or other is None or out is None or out.transport is None:
            self.strays += 1
            return
        loop = asyncio.get_running_loop()
        decision = way.count(data, loop.time())
        if decision is None:
            return
        index, delay = decision
        if delay <= 0:
            out.transport.sendto(data, other)
            way.sent(index)
        else:
            loop.call_later(delay, self._late, data, other, way, out, index)

    @staticmethod
    def _late(data: bytes, to: tuple[str, int], way: Direction, out: _Endpoint,
              index: int) -> None:
        if out.transport is None or out.transport.is_closing():
            return  # the relay closed while it was held
        out.transport.sendto(data, to)
        way.sent(index)

    def set_faults(self, ab: Faults, ba: Faults, outages: Outages | None = None) -> None:
        """A bad link from now on: ``ab``/``ba`` each way (seeded streams, counts kept),
        ``outages`` (on the event loop's clock, ``loop.time()``) both ways."""
        self.ab.link.faults, self.ba.link.faults = ab, ba
        self.ab.link.outages = self.ba.link.outages = outages

    def set_loss(self, loss_ab: float, loss_ba: float) -> None:
        """Change the loss each way from now on (e.g. once the call is set up)."""
        self.ab.loss, self.ba.loss = loss_ab, loss_ba

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {"a->b": self.ab.snapshot(), "b->a": self.ba.snapshot()}

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for endpoint in (self._ra, self._rb):
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()
