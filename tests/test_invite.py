"""Who may join: invitations, HTTPS with a pinned certificate, bounded signaling, fuzzing.

Real listeners (``serve``'s AvatarServer, ``call --listen``) on 127.0.0.1, reached with a
real HTTP(S) client; real aiortc peers where a call is made.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from call_helpers import RecordingSink, _local, _setup_loop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatar_cam.person import Person, load_person
from avatar_cam.webrtc.invite import TOKEN_BYTES, Gate, Invitation, Limits
from avatar_cam.webrtc.tls import TlsError, client_ssl, server_tls

ROUTES = [("GET", "/"), ("POST", "/offer"), ("GET", "/basis.bin"), ("POST", "/stats"),
          ("GET", "/stats")]


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# -- the gate on its own -------------------------------------------------------------------

def test_gate_tokens_are_unguessable_and_expire() -> None:
    clock = Clock()
    gate, other = Gate(ttl_s=60, clock=clock), Gate(clock=clock)
    assert gate.token != other.token and len(gate.token) * 6 >= 8 * TOKEN_BYTES >= 128
    assert gate.valid(gate.token) and not gate.valid(other.token) and not gate.valid(None)
    assert not gate.valid(gate.token[:-1]) and not gate.valid(gate.token + "x")
    assert not gate.valid("é" * 32)  # any string, compared without an error
    clock.t += 59.9
    assert gate.valid(gate.token)
    clock.t += 0.2
    assert gate.expired and not gate.valid(gate.token)
    assert other.valid(other.token)  # no ttl: while the listener runs


def test_one_use_invitation_is_spent_by_one_answered_offer() -> None:
    gate, page = Gate(one_use=True), Gate(one_use=False)
    gate.spend()
    page.spend()
    assert not gate.valid(gate.token) and page.valid(page.token)


def test_invitation_url_round_trip() -> None:
    gate = Gate()
    url = gate.url("https", "192.168.1.20", 8765, "/call", "ab" * 32)
    inv = Invitation.parse(url)
    assert inv.token == gate.token and inv.fingerprint == "ab" * 32
    assert inv.base == "https://192.168.1.20:8765" and inv.host == "192.168.1.20"
    assert inv.target("/call") == f"https://192.168.1.20:8765/call?invite={gate.token}"
    # A fingerprint copied as colon-separated upper-case hex still pins.
    inv = Invitation.parse(url.replace("ab" * 32, ":".join(["AB"] * 32)))
    assert inv.fingerprint == "ab" * 32


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    from avatar_cam.webrtc.signaling import Access, Site

    with pytest.raises(TlsError, match="tamper"):
        client_ssl("http", "192.168.1.20", None)
    assert client_ssl("http", "127.0.0.1", None) is False
    with pytest.raises(TlsError, match="tamper"):
        Site([], "0.0.0.0", 0, Access())
    assert server_tls("127.0.0.1", folder=tmp_path) is None  # plain HTTP here...
    tls = server_tls("0.0.0.0", folder=tmp_path)  # ...a self-signed certificate elsewhere
    assert tls is not None and len(tls.fingerprint) == 64
    key = tmp_path / "key.pem"
    assert key.stat().st_mode & 0o077 == 0  # the key: its owner's only
    again = server_tls("0.0.0.0", folder=tmp_path)  # made once, then reused
    assert again is not None and again.fingerprint == tls.fingerprint
    with pytest.raises(TlsError, match="go together"):
        server_tls("0.0.0.0", cert=tls.cert)
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(TlsError, match="cannot use"):
        server_tls("0.0.0.0", cert=tmp_path / "bad.pem", key=key)


# -- serve: every route needs the invitation -----------------------------------------------

async def _request(method: str, url: str, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kw) as resp:
        return resp.status, await resp.text()


def test_serve_refuses_every_route_without_the_invitation(person: Person) -> None:
    from avatar_cam.webrtc.peer import PeerOptions
    from avatar_cam.webrtc.server import AvatarServer

    async def main() -> dict[str, Any]:
        _setup_loop()
        opts = PeerOptions(out_size=(320, 240))
        local = _local(person, opts)
        limits = Limits(free_failures=100)  # this test is the only client: no back-off
        from avatar_cam.webrtc.signaling import Access

        server = AvatarServer(local, opts, "127.0.0.1", 0, access=Access(Gate(limits=limits)))
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        token = server.access.gate.token
        out: dict[str, Any] = {"none": [], "wrong": [], "header": []}
        try:
            for method, path in ROUTES:
                body = {"json": {"id": "x"}} if method == "POST" else {}
                out["none"].append(await _request(method, base + path, **body))
                out["wrong"].append(await _request(method, f"{base}{path}?invite=x{token}",
                                                   **body))
            out["page"] = await _request("GET", server.url)
            out["stats"] = await _request("GET", f"{base}/stats",
                                          headers={"X-Avatar-Cam-Invite": token})
            out["counts"] = dict(server.access.gate.counts)
        finally:
            await server.close()
            local.stop()
            await local.run()
        return out

    out = asyncio.run(main())
    for status, _ in out["none"] + out["wrong"]:
        assert status == 403
    assert "needs its invitation" in out["none"][0][1]  # the page says what to do
    assert out["counts"]["forbidden"] == 2 * len(ROUTES)
    assert out["counts"]["forbidden_offer"] == 2 and out["counts"]["forbidden_page"] == 2
    assert out["page"][0] == 200 and "<html" in out["page"][1].lower()
    assert out["stats"][0] == 200 and json.loads(out["stats"][1])["signaling"]["forbidden"] \
        == 2 * len(ROUTES)


def test_wrong_tokens_are_backed_off_and_offers_rate_limited(person: Person) -> None:
    from avatar_cam.webrtc.peer import PeerOptions
    from avatar_cam.webrtc.server import AvatarServer
    from avatar_cam.webrtc.signaling import Access

    async def main() -> dict[str, Any]:
        _setup_loop()
        opts = PeerOptions(out_size=(320, 240))
        local = _local(person, opts)
        gate = Gate(limits=Limits(free_failures=3, backoff_s=30, offers_per_minute=4))
        server = AvatarServer(local, opts, "127.0.0.1", 0, access=Access(gate))
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            guesses = [(await _request("GET", f"{base}/?invite=guess{n}"))[0] for n in range(5)]
            # Even the right token waits out the back-off: guessing cannot go on.
            blocked = await _request("GET", server.url)
            gate_counts = dict(gate.counts)
            return {"guesses": guesses, "blocked": blocked[0], "counts": gate_counts}
        finally:
            await server.close()
            local.stop()
            await local.run()

    out = asyncio.run(main())
    assert out["guesses"] == [403, 403, 403, 403, 429]  # 3 free, the 4th starts the wait
    assert out["blocked"] == 429 and out["counts"]["backed_off"] == 2

    async def offers() -> list[int]:
        _setup_loop()
        opts = PeerOptions(out_size=(320, 240))
        local = _local(person, opts)
        gate = Gate(limits=Limits(offers_per_minute=4))
        server = AvatarServer(local, opts, "127.0.0.1", 0, access=Access(gate))
        await server.start()
        try:
            url = server.url.replace("/?", "/offer?")
            return [(await _request("POST", url, json={"type": "offer", "sdp": "v=0\r\n"}))[0]
                    for _ in range(6)]
        finally:
            await server.close()
            local.stop()
            await local.run()

    assert asyncio.run(offers()) == [400, 400, 400, 400, 429, 429]


# -- call --listen over HTTPS, the certificate pinned -------------------------------------

def test_call_over_https_with_the_pinned_certificate(person: Person, tmp_path: Path) -> None:
    from avatar_cam.webrtc.call import Until, connect, listen
    from avatar_cam.webrtc.peer import CallError, PeerOptions
    from avatar_cam.webrtc.signaling import Access

    tls = server_tls("127.0.0.1", force=True, folder=tmp_path / "mine")
    impostor = server_tls("127.0.0.1", force=True, folder=tmp_path / "impostor")
    assert tls is not None and impostor is not None

    async def main() -> dict[str, Any]:
        _setup_loop()
        opts = PeerOptions(out_size=(320, 240))
        la, lb = _local(person, opts), _local(person, opts)
        runs = [asyncio.ensure_future(x.run()) for x in (la, lb)]
        out: dict[str, Any] = {}
        # An impostor on the invitation's address shows its own certificate: refused
        # before a byte of the offer leaves (its gate never sees a request).
        fake = Access(Gate(one_use=True), impostor)
        ready: asyncio.Future[str] = asyncio.Future()
        listener = asyncio.ensure_future(listen(la, opts, RecordingSink(), "127.0.0.1", 0,
                                                Until(duration_s=1), access=fake, ready=ready))
        shown = await ready
        forged = shown.replace(impostor.fingerprint, tls.fingerprint)
        try:
            await connect(lb, opts, RecordingSink(), forged, Until(1))
        except CallError as exc:
            out["refused"] = str(exc)
        out["impostor_counts"] = dict(fake.gate.counts)
        out["impostor_waiting"] = not listener.done()
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        # The real listener: the call works over HTTPS; the invitation is then spent.
        access = Access(Gate(one_use=True), tls)
        ready = asyncio.Future()
        sink = RecordingSink()
        listener = asyncio.ensure_future(listen(la, opts, sink, "127.0.0.1", 0,
                                                Until(duration_s=3), access=access,
                                                ready=ready))
        url = await ready
        assert url.startswith("https://") and f"fp={tls.fingerprint}" in url
        out["caller"] = await connect(lb, opts, RecordingSink(), url, Until(duration_s=3))
        out["listener"] = await listener
        out["received"] = sink.count
        out["spent"] = not access.gate.valid(access.gate.token)
        for local in (la, lb):
            local.stop()
        await asyncio.gather(*runs)
        return out

    out = asyncio.run(main())
    assert "not the avatar-cam that made this invitation" in out["refused"]
    assert "nothing was sent" in out["refused"]
    assert out["impostor_counts"] == {} and out["impostor_waiting"]
    assert out["received"] > 10 and out["caller"]["frames_received"] > 10
    assert out["spent"]


def test_call_refuses_a_url_without_invitation(person: Person) -> None:
    from avatar_cam.webrtc.call import Until, connect
    from avatar_cam.webrtc.peer import CallError, PeerOptions

    async def main() -> None:
        _setup_loop()
        opts = PeerOptions(out_size=(320, 240))
        local = _local(person, opts)
        try:
            await connect(local, opts, RecordingSink(), "http://127.0.0.1:9/call", Until(1))
        finally:
            local.stop()
            await local.run()

    with pytest.raises(CallError, match="no invitation"):
        asyncio.run(main())


# -- fuzzing the signaling endpoints -------------------------------------------------------

class Listeners:
    """``serve`` and ``call --listen`` running on their own event loop in a thread, for a
    synchronous hypothesis test to post to."""

    def __init__(self, person: Person) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.urls: dict[str, str] = {}
        self.gates: dict[str, Gate] = {}
        self.call_task: Any = None
        self._run(self._start(person), 60)

    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, person: Person) -> None:
        from avatar_cam.webrtc.call import Until, listen
        from avatar_cam.webrtc.peer import PeerOptions
        from avatar_cam.webrtc.server import AvatarServer
        from avatar_cam.webrtc.signaling import Access

        _setup_loop()
        free = Limits(free_failures=10**6, offers_per_minute=10**6, pending_offers=10**6)
        opts = PeerOptions(out_size=(320, 240))
        self.local = _local(person, opts)
        self.server = AvatarServer(self.local, opts, "127.0.0.1", 0,
                                   access=Access(Gate(limits=free)))
        await self.server.start()
        self.urls["serve"] = self.server.url.replace("/?", "/offer?")
        self.gates["serve"] = self.server.access.gate
        access = Access(Gate(one_use=True, limits=free))
        ready: asyncio.Future[str] = asyncio.Future()
        self.call_task = asyncio.ensure_future(listen(
            self.local, opts, RecordingSink(), "127.0.0.1", 0, Until(duration_s=1),
            access=access, ready=ready))
        self.urls["call"] = await ready
        self.gates["call"] = access.gate

    def post(self, which: str, data: bytes, url: str | None = None) -> tuple[int, float]:
        async def go() -> int:
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                    url or self.urls[which], data=data,
                    headers={"content-type": "application/json"}) as resp:
                await resp.read()
                return resp.status
        t0 = time.monotonic()
        status = self._run(go(), 40)
        return int(status), time.monotonic() - t0

    def close(self) -> None:
        async def stop() -> None:
            self.call_task.cancel()
            await asyncio.gather(self.call_task, return_exceptions=True)
            await self.server.close()
            self.local.stop()
            await self.local.run()
        self._run(stop(), 60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        # The call's executor threads end with the loop, as asyncio.run ends them.
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


@pytest.fixture(scope="module")
def listeners(person: Person) -> Iterator[Listeners]:
    running = Listeners(person)
    yield running
    running.close()


SDP_LINES = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
             "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
             "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0",
             "a=rtpmap:96 VP8/90000", "a=rtpmap:111 opus/48000/2", "a=mid:0", "a=mid:1",
             "a=sendrecv", "a=recvonly", "a=ice-ufrag:abcd", "a=ice-pwd:" + "p" * 22,
             "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
             "a=sctp-port:5000", "a=rtcp-mux", "a=ssrc:1 cname:x", "a=extmap:1 urn:x",
             "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "a=rtpmap:96", "m=video",
             "a=fingerprint:sha-256 zz", "m=video 0 RTP/AVP 96"]
sdps = st.lists(st.one_of(st.sampled_from(SDP_LINES), st.text(max_size=40)),
                max_size=30).map("\r\n".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)
offers = st.fixed_dictionaries(
    {"sdp": sdps | json_values, "type": st.sampled_from(["offer", "answer", "", 3])},
    optional={"app": st.sampled_from(["avatar-cam", "x"]), "mode": json_values,
              "codec": json_values, "version": json_values})
bodies = st.one_of(offers.map(lambda o: json.dumps(o).encode()),
                   json_values.map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=200))


@pytest.mark.parametrize("which", ["serve", "call"])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
def test_signaling_never_fails_or_hangs_on_what_is_posted(listeners: Listeners, which: str,
                                                          body: bytes) -> None:
    status, took = listeners.post(which, body)
    assert status in (200, 400, 408, 409), (status, body[:200])
    assert took < 30  # never hangs (each request answers by itself, one at a time)


def test_call_listener_refuses_offers_without_the_invitation(listeners: Listeners) -> None:
    gate = listeners.gates["call"]
    before = gate.counts["forbidden_call"]
    url = listeners.urls["call"]
    offer = b'{"sdp": "v=0\\r\\n", "type": "offer"}'
    assert listeners.post("call", offer, url.split("?")[0])[0] == 403
    assert listeners.post("call", offer, url.replace("invite=", "invite=x"))[0] == 403
    assert gate.counts["forbidden_call"] == before + 2
    assert not listeners.call_task.done()


def test_the_crafted_offer_of_the_issue_is_a_400(listeners: Listeners) -> None:
    for which in ("serve", "call"):
        status, _ = listeners.post(which, b'{"sdp": "v=0\\r\\n", "type": "offer"}')
        assert status == 400
        assert listeners.gates[which].counts["bad_offers"] >= 1
    assert not listeners.call_task.done()  # the listener still waits for its call


def test_cli_serve_on_the_network_prints_an_https_invitation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from avatar_cam.webrtc.commands import add_serve_parser
    from avatar_cam.webrtc.tls import tls_home

    monkeypatch.setenv("AVATAR_CAM_HOME", str(tmp_path))
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "0", "--no-track",
                              "--duration", "1", "--mic", "none", "--speaker", "none",
                              "--size", "320x240", "--resolution", "256"])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "https://" in printed and "invite=" in printed and "fp=" in printed
    tls = server_tls("0.0.0.0", folder=tls_home())  # the certificate it made, reused
    assert tls is not None and f"fp={tls.fingerprint}" in printed
