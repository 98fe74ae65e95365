"""Calls through a real TURN server: two real aiortc peers in one process, each allowed
relay candidates only (``--relay-only``), through Debian's coturn on loopback
(tests/turn_server.py), in landmark-only and in video mode; coturn's own log shows the
allocations and how much it relayed. A wrong TURN password fails the call with a clear
error and nothing left hanging. The option checks (IceServers) and the CLI's one line."""

from __future__ import annotations

import asyncio
import gc
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from call_helpers import OUT, RecordingSink, _hang_up, _local, _setup_loop
from test_cli import _cli, _one_clear_line
from turn_server import (
    Session,
    TurnServer,
    relay_addresses,
    sessions,
    stun_binding,
    turn_server,  # noqa: F401  (a fixture)
)

from avatar_cam.person import Person, load_person
from avatar_cam.webrtc.basis import ExpressionBasis
from avatar_cam.webrtc.enroll import learn_basis
from avatar_cam.webrtc.ice import IceError, IceServers
from avatar_cam.webrtc.options import CallError, PeerOptions

CONNECT_S = 20.0  # as the CLI waits (webrtc/call.py's CONNECT_TIMEOUT_S)
MEDIA_S = 30.0  # at most, for the frames the tests wait for (a loaded machine)
CLOSE_S = 20.0  # at most, for coturn to log the call's sessions as closed
CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\w+) \d+ (\S+) (\d+) typ (\w+)")


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


@pytest.fixture(scope="module")
def basis(person: Person) -> ExpressionBasis:
    b = learn_basis(person.neutral, (person.crop_size, person.crop_size))
    return ExpressionBasis.from_bytes(b.to_bytes())


def _relay_only(turn: TurnServer, password: str | None = None) -> IceServers:
    return IceServers(turn=turn.url, turn_user=turn.user,
                      turn_pass=turn.password if password is None else password,
                      relay_only=True)


def _candidates(sdp: str) -> list[tuple[str, str, int, str]]:
    """(transport, address, port, type) of every candidate line; every such line parses."""
    lines = [ln for ln in sdp.splitlines() if ln.startswith("a=candidate:")]
    found = [m.groups() for ln in lines if (m := CANDIDATE.match(ln)) is not None]
    assert len(found) == len(lines), lines
    return [(t.lower(), host, int(port), kind) for t, host, port, kind in found]


class _Wire:
    """What one peer's (bundled) DTLS transport puts on the wire: the handshake, then
    SRTP/SRTCP or SCTP, everything but the ICE checks; counted when its handshake ends
    (before any media: aiortc starts the senders after that) and when asked. aiortc
    reports it only in the senders' stats, and a landmark-only call has none: read it off
    the transport (``_get_stats``, what ``RTCRtpSender.getStats`` calls)."""

    def __init__(self, pc: Any) -> None:
        # The transport that BUNDLE keeps: the data channels', or the first m-line's.
        self.dtls = pc.sctp.transport if pc.sctp is not None else \
            pc.getTransceivers()[0].sender.transport
        assert self.dtls.state == "new"
        self.handshake: tuple[int, int] | None = None
        self.dtls.on("statechange", self._on_state)

    def _on_state(self) -> None:
        if self.dtls.state == "connected" and self.handshake is None:
            self.handshake = self.sent()

    def sent(self) -> tuple[int, int]:
        """(packets, bytes) so far."""
        (stats,) = (s for s in self.dtls._get_stats().values() if s.type == "transport")
        return stats.packetsSent, stats.bytesSent


async def _relayed_call(a: Any, b: Any, locals_: tuple[Any, ...], runs: list[Any],
                        until: Any) -> dict[str, Any]:
    """Call a -> b, wait for ``until`` (at most MEDIA_S), hang up; what each end sent."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        offer = await a.create_offer()
        wire_a = _Wire(a.pc)
        answer = await b.accept_offer(offer)
        wire_b = _Wire(b.pc)  # before a has the answer: no handshake can have begun
        await a.accept_answer(answer)
        await a.wait_connected(CONNECT_S)
        await b.wait_connected(CONNECT_S)
        t_end = time.monotonic() + MEDIA_S
        while time.monotonic() < t_end and not until():
            await asyncio.sleep(0.1)
        handshake = {"a": wire_a.handshake, "b": wire_b.handshake}
        sent = {"a": wire_a.sent(), "b": wire_b.sent()}
        stats = {"a": a.stats(), "b": b.stats()}
    finally:
        await _hang_up((a, b), locals_, runs)
    gc.collect()  # "Task exception was never retrieved" is told when the task goes
    await asyncio.sleep(0)
    return {"offer": offer["sdp"], "answer": answer["sdp"], "handshake": handshake,
            "sent": sent, "stats": stats, "errors": errors}


def _closed_sessions(turn: TurnServer, mark: int) -> tuple[dict[str, Session], str]:
    """The sessions coturn opened since ``mark``, once it has logged each one's end (and
    its usage counters) after the hang-up: aioice deletes its allocations on close."""
    t_end = time.monotonic() + CLOSE_S
    while True:
        log = turn.log_since(mark)
        found = {k: s for k, s in sessions(log).items() if s.user is not None}
        if found and all(s.closed and s.usage is not None for s in found.values()):
            return found, log
        if time.monotonic() > t_end:
            pytest.fail(f"coturn did not log the call's sessions as closed: {log[-2000:]}")
        time.sleep(0.2)


def _check_relayed(turn: TurnServer, mark: int, call: dict[str, Any]) -> dict[str, Any]:
    """The call went through coturn and nowhere else: what each description offered,
    what coturn logged it allocated, and what it relayed against what each end sent."""
    relays = {}
    for end, sdp in (("a", call["offer"]), ("b", call["answer"])):
        offered = _candidates(sdp)
        assert offered, f"no candidate in {end}'s description"
        # No host (nor server-reflexive) candidate was offered: only coturn's relay
        # addresses, each a UDP one on its relay IP.
        assert {(t, kind) for t, _, _, kind in offered} == {("udp", "relay")}, offered
        relays[end] = {(host, port) for _, host, port, _ in offered}
        assert {host for host, _ in relays[end]} == {turn.host}
        assert "typ host" not in sdp and "typ srflx" not in sdp
    assert not relays["a"] & relays["b"]
    found, log = _closed_sessions(turn, mark)
    # Every relay address in the descriptions is one coturn logged handing out for this
    # call, to our user, in an ALLOCATE that succeeded.
    assert relays["a"] | relays["b"] <= relay_addresses(log), log
    assert {s.user for s in found.values()} == {turn.user}
    assert len(found) >= 2  # one allocation (at least) for each end
    out = {}
    for end, other in (("a", "b"), ("b", "a")):
        # The end's allocation is the one coturn let relay to the other end's address.
        (mine,) = (s for s in found.values() if s.peers & relays[other])
        assert mine.peer_usage is not None and mine.usage is not None, log
        packets, sent = call["sent"][end]
        assert call["handshake"][end] is not None, call["handshake"]
        _, handshake = call["handshake"][end]
        # What the end sent (DTLS handshake, then the media) left coturn's relay address
        # for the other end: its peer counters hold that plus the ICE checks (all of it
        # on an idle machine; UDP on a loaded loopback may lose a datagram or two).
        assert mine.peer_usage.sent_bytes >= 0.9 * sent, (end, mine, call["sent"])
        assert mine.peer_usage.sent_packets >= 0.9 * packets, (end, mine, call["sent"])
        # ... and came from the end, through its TURN channel (4 bytes of header each).
        assert mine.usage.received_bytes >= 0.9 * sent, (end, mine)
        # Well above the handshake: the call's media crossed it, not just a setup.
        assert sent >= 20 * handshake, (end, call["handshake"], call["sent"])
        out[end] = mine
    assert call["errors"] == [], call["errors"]
    return out


def test_landmark_call_through_turn_relay_only(turn_server: TurnServer, person: Person,  # noqa: F811
                                               basis: ExpressionBasis, tmp_path: Path) -> None:
    from avatar_cam.webrtc.peer import Peer

    opts = PeerOptions(landmarks_only=True, out_size=OUT, resolution=256, cache_root=tmp_path,
                       ice=_relay_only(turn_server))
    mark = turn_server.log_size()

    async def main() -> dict[str, Any]:
        _setup_loop()
        la, lb = _local(person, opts, basis), _local(person, opts, basis)
        runs = [asyncio.ensure_future(x.run()) for x in (la, lb)]
        sa, sb = RecordingSink(), RecordingSink()
        a, b = Peer(la, sa, opts), Peer(lb, sb, opts)
        call = await _relayed_call(a, b, (la, lb), runs, lambda: min(sa.count, sb.count) >= 60)
        return {**call, "sa": sa, "sb": sb}

    r = asyncio.run(main())
    # The landmarks crossed both ways and were drawn (each end renders the other's
    # sketch: no model was shared): white strokes on black.
    for end, sink in (("a", r["sa"]), ("b", r["sb"])):
        assert sink.count >= 60, (end, r["stats"])
        image = sink.last[-1].image
        assert np.mean(image < 10) > 0.5 and (image == 255).all(axis=2).any()
        assert r["stats"][end].get("landmarks_malformed", 0) == 0
        assert r["stats"][end]["basis_received"] == 1
    _check_relayed(turn_server, mark, r)


def test_video_call_through_turn_relay_only(turn_server: TurnServer, person: Person) -> None:  # noqa: F811
    from avatar_cam.webrtc.peer import Peer

    opts = PeerOptions(out_size=OUT, ice=_relay_only(turn_server))
    mark = turn_server.log_size()

    async def main() -> dict[str, Any]:
        _setup_loop()
        la, lb = _local(person, opts), _local(person, opts)
        runs = [asyncio.ensure_future(x.run()) for x in (la, lb)]
        sa, sb = RecordingSink(), RecordingSink()
        a, b = Peer(la, sa, opts), Peer(lb, sb, opts)
        call = await _relayed_call(a, b, (la, lb), runs, lambda: min(sa.count, sb.count) >= 45)
        return {**call, "sa": sa, "sb": sb}

    r = asyncio.run(main())
    for end, sink in (("a", r["sa"]), ("b", r["sb"])):
        assert sink.count >= 45 and r["stats"][end]["frames_received"] >= 45, (end, r["stats"])
        frames = sink.first
        assert not np.array_equal(frames[5].image, frames[40].image)  # moving, not frozen
    relayed = _check_relayed(turn_server, mark, r)
    # VP8 at 320x240: tens of kilobytes a second each way, all of it through coturn.
    for end in ("a", "b"):
        assert relayed[end].peer_usage is not None
        assert relayed[end].peer_usage.sent_bytes > 50_000, relayed[end]


def test_wrong_turn_password_fails_the_call_cleanly(turn_server: TurnServer) -> None:  # noqa: F811
    from avatar_cam.webrtc.peer import Peer

    opts = PeerOptions(landmarks_only=True, out_size=OUT, resolution=256,
                       ice=_relay_only(turn_server, password="not-" + turn_server.password))
    mark = turn_server.log_size()

    async def main() -> dict[str, Any]:
        _setup_loop()
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: errors.append(ctx))
        sink = RecordingSink()
        a, b = Peer(None, sink, opts), Peer(None, None, opts)  # b would send, a watches
        try:
            offer = await a.create_offer()
            answer = await b.accept_offer(offer)
            await a.accept_answer(answer)
            with pytest.raises(CallError) as failed:
                await a.wait_connected(3.0)
            states = (a.pc.iceConnectionState, b.pc.iceConnectionState, a.pc.connectionState)
        finally:
            await a.close()
            await b.close()
        gc.collect()
        await asyncio.sleep(0)
        return {"offer": offer["sdp"], "answer": answer["sdp"], "error": failed.value,
                "states": states, "sink": sink, "errors": errors}

    # Bounded: gathering gives up at coturn's second 401, the wait at its timeout.
    r = asyncio.run(asyncio.wait_for(main(), 120))
    assert "WebRTC connection" in r["error"].problem and r["error"].fix, r["error"]
    # Nothing to connect with: coturn refused both ends, so no candidate was offered
    # (relay-only: no host candidate to fall back on), and no frame arrived.
    assert _candidates(r["offer"]) == [] and _candidates(r["answer"]) == []
    assert r["states"] == ("new", "new", "new")
    assert r["sink"].count == 0
    assert r["errors"] == [], r["errors"]
    log = turn_server.log_since(mark)
    assert f"user {turn_server.user} credentials are incorrect" in log, log
    assert "ALLOCATE processed, success" not in log, log
    # And the server is still up for the next call.
    assert stun_binding(turn_server.host, turn_server.port) is not None


# -- the options on their own --------------------------------------------------------

@pytest.mark.parametrize("kwargs, problem, fix", [
    ({"turn": "http://turn.example.org"}, "is not a turn/turns URL", "turn:HOST:PORT"),
    ({"turn": "turn:", "turn_user": "u", "turn_pass": "p"}, "is not a turn/turns URL",
     "turn:HOST:PORT"),
    ({"turn": "turn:h:port", "turn_user": "u", "turn_pass": "p"}, "is not a turn/turns URL",
     "turn:HOST:PORT"),
    ({"stun": "turn:h:3478"}, "is a turn URL where a stun one is needed", "stun:HOST:PORT"),
    ({"turn": "stun:h:3478", "turn_user": "u", "turn_pass": "p"},
     "is a stun URL where a turn one is needed", "turn:HOST:PORT"),
    ({"stun": "stun:h:99999"}, "port 99999, outside 1-65535", "stun:HOST:PORT"),
    ({"turn": "turn:h:3478?transport=sctp", "turn_user": "u", "turn_pass": "p"},
     "over 'sctp'", "?transport=udp or ?transport=tcp"),
    ({"turn": "turns:h:5349?transport=udp", "turn_user": "u", "turn_pass": "p"},
     "over 'udp'", "?transport=tcp"),
    ({"turn": "turn:h:3478"}, "needs a user name and a password", "--turn-user U --turn-pass P"),
    ({"turn": "turn:h:3478", "turn_user": "u"}, "needs a user name and a password",
     "--turn-pass P"),
    ({"turn": "turn:h:3478", "turn_pass": "p"}, "needs a user name and a password",
     "--turn-user U"),
    ({"relay_only": True}, "--relay-only needs a TURN server", "--turn turn:HOST:PORT"),
    ({"relay_only": True, "stun": "stun:h:3478"}, "--relay-only needs a TURN server",
     "--turn turn:HOST:PORT"),
])
def test_ice_servers_refuse_what_cannot_work(kwargs: dict[str, Any], problem: str,
                                             fix: str) -> None:
    with pytest.raises(IceError) as info:
        IceServers(**kwargs)
    assert problem in info.value.problem and fix in info.value.fix, info.value


def test_ice_servers_become_aiortcs_configuration() -> None:
    from aiortc.rtcconfiguration import RTCIceTransportPolicy
    from aiortc.rtcicetransport import connection_kwargs

    assert IceServers().configuration().iceServers == []
    assert IceServers().describe() == "host candidates only"
    ice = IceServers(stun="stun:stun.example.org", turn="turn:turn.example.org:3479?transport=tcp",
                     turn_user="u", turn_pass="p", relay_only=True)
    config = ice.configuration()
    assert config.iceTransportPolicy == RTCIceTransportPolicy.RELAY
    # What aioice is then given: both servers, the TURN one with its credentials.
    assert connection_kwargs(config.iceServers or []) == {
        "stun_server": ("stun.example.org", 3478),
        "turn_server": ("turn.example.org", 3479), "turn_ssl": False, "turn_transport": "tcp",
        "turn_username": "u", "turn_password": "p"}
    assert ice.describe() == ("STUN stun:stun.example.org, TURN turn:turn.example.org:3479"
                              "?transport=tcp (relay only)")
    turns = IceServers(turn="turns:turn.example.org", turn_user="u", turn_pass="p")
    assert turns.configuration().iceTransportPolicy == RTCIceTransportPolicy.ALL
    assert connection_kwargs(turns.configuration().iceServers or [])["turn_ssl"] is True


def test_cli_relay_only_without_turn_is_one_clear_line(tmp_path: Path) -> None:
    proc = _cli(["call", "--connect", "http://127.0.0.1:1", "--relay-only"], tmp_path)
    _one_clear_line(proc, "--relay-only needs a TURN server to relay through",
                    "add --turn turn:HOST:PORT --turn-user U --turn-pass P")
