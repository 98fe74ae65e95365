"""STUN and TURN servers for a call across real networks (aiortc's RTCIceServer).

Without any, a call gathers host candidates only: it works on one machine or one LAN.
``--stun URL`` adds server-reflexive candidates (most home NATs); ``--turn URL --turn-user
U --turn-pass P`` adds relay candidates, which get through any NAT or firewall that lets
UDP (or TCP, ``?transport=tcp``) out to the TURN server; ``--relay-only`` uses nothing
else, so the media provably goes through the relay (and the peers never learn each
other's addresses). aiortc takes one STUN and one TURN server.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

from ..errors import AvatarCamError

# The transports aiortc's TURN client speaks, per scheme (the first is the default).
TURN_TRANSPORTS = {"turn": ("udp", "tcp"), "turns": ("tcp",)}


class IceError(AvatarCamError):
    """A STUN/TURN option that cannot work (a malformed URL, a port or transport aiortc
    cannot use, TURN without credentials, --relay-only without TURN)."""


@dataclass(frozen=True)
class IceServers:
    stun: str | None = None  # stun:HOST[:PORT]
    turn: str | None = None  # turn:HOST[:PORT][?transport=udp|tcp] | turns:HOST[:PORT]
    turn_user: str | None = None
    turn_pass: str | None = None
    relay_only: bool = False  # gather relay candidates only (needs ``turn``)

    def __post_init__(self) -> None:
        for url, schemes in ((self.stun, ("stun",)), (self.turn, ("turn", "turns"))):
            if url is None:
                continue
            try:
                parsed = parse_stun_turn_uri(url)
            except ValueError as exc:
                raise IceError(f"{url!r} is not a {'/'.join(schemes)} URL ({exc})",
                               f"write it as {schemes[0]}:HOST:PORT, e.g. "
                               f"{schemes[0]}:turn.example.org:3478") from exc
            if parsed["scheme"] not in schemes:
                raise IceError(f"{url!r} is a {parsed['scheme']} URL where a "
                               f"{schemes[0]} one is needed", f"--{schemes[0]} {schemes[0]}:"
                               "HOST:PORT")
            if not 1 <= parsed["port"] <= 65535:
                raise IceError(f"{url!r} has port {parsed['port']}, outside 1-65535",
                               f"write it as {schemes[0]}:HOST:PORT with the server's port")
            # aiortc silently drops a TURN server on any other transport (and with
            # --relay-only the call then has no candidate at all): refuse it here.
            allowed = TURN_TRANSPORTS.get(parsed["scheme"])
            if allowed is not None and parsed.get("transport") not in allowed:
                raise IceError(f"{url!r}: aiortc cannot reach a {parsed['scheme']} server "
                               f"over {parsed.get('transport')!r}",
                               f"use {' or '.join(f'?transport={t}' for t in allowed)} "
                               f"(or leave it out: {allowed[0]})")
        if self.turn is not None and not (self.turn_user and self.turn_pass):
            raise IceError("a TURN server needs a user name and a password",
                           "add --turn-user U --turn-pass P (as the TURN server's "
                           "operator gave them)")
        if self.relay_only and self.turn is None:
            raise IceError("--relay-only needs a TURN server to relay through",
                           "add --turn turn:HOST:PORT --turn-user U --turn-pass P")

    def configuration(self) -> RTCConfiguration:
        servers = []
        if self.stun is not None:
            servers.append(RTCIceServer(urls=self.stun))
        if self.turn is not None:
            servers.append(RTCIceServer(urls=self.turn, username=self.turn_user,
                                        credential=self.turn_pass))
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    def describe(self) -> str:
        parts = [f"STUN {self.stun}"] if self.stun else []
        if self.turn:
            parts.append(f"TURN {self.turn}" + (" (relay only)" if self.relay_only else ""))
        return ", ".join(parts) or "host candidates only"
