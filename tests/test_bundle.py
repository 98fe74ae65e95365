"""Bundles of landmark packets and Opus frames (webrtc/bundle.py) on real codec packets
and real Opus frames, fed arbitrary bytes; and the byte-counting relay of the wire
benchmark (benchmarks/_relay.py) between two real aiortc peers over loopback."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatar_cam import motion
from avatar_cam.audio.opus import OpusEncoder
from avatar_cam.person import load_person
from avatar_cam.webrtc.basis import ExpressionBasis
from avatar_cam.webrtc.bundle import (
    MAGIC,
    MAX_PENDING_AUDIO,
    BundleFormatError,
    Bundler,
    is_bundle,
    pack,
    unpack,
)
from avatar_cam.webrtc.codec import LandmarkDecoder, LandmarkEncoder
from avatar_cam.webrtc.enroll import learn_basis
from avatar_cam.webrtc.options import loopback_gathering

FPS = 30.0


@pytest.fixture(scope="module")
def basis() -> ExpressionBasis:
    person = load_person("demo")
    learned = learn_basis(person.neutral, (person.crop_size, person.crop_size))
    return ExpressionBasis.from_bytes(learned.to_bytes())


@pytest.fixture(scope="module")
def packets(basis: ExpressionBasis) -> list[bytes]:
    """6 s of the motion script with tracker-like noise, through the real encoder."""
    person = load_person("demo")
    rng = np.random.default_rng(3)
    enc = LandmarkEncoder(basis)
    out = []
    for i in range(180):
        points = motion.animate(person.neutral, motion.script(i / FPS))
        points = points + rng.normal(0.0, 0.3, points.shape).astype(np.float32)
        out.append(enc.encode(points, int(round(1000 * i / FPS))))
    return out


@pytest.fixture(scope="module")
def opus() -> list[tuple[int, bytes]]:
    """2 s of a voice-like signal (a gliding tone with noise) as real 20 ms Opus frames."""
    t = np.arange(96_000) / 48_000
    rng = np.random.default_rng(5)
    signal = 0.3 * np.sin(2 * np.pi * (180 + 60 * np.sin(3 * t)) * t) + 0.05 * rng.normal(
        size=t.size)
    frames = OpusEncoder(16_000, 20).encode((signal * 32767).astype(np.int16))
    assert len(frames) > 80
    return [(1000 + 20 * i, f) for i, f in enumerate(frames)]


def test_round_trip_is_byte_exact(packets: list[bytes], opus: list[tuple[int, bytes]]) -> None:
    for n in (1, 2, 3, 4, 8, 15):
        for start in range(0, len(packets) - n, 7):
            group = packets[start:start + n]
            for audio in ([], opus[start % 40:start % 40 + 1], opus[:5], opus[:40]):
                bundle = unpack(pack(group, audio))
                assert bundle.landmarks == group
                assert bundle.audio == audio


def test_consecutive_packets_leave_their_headers_out(packets: list[bytes]) -> None:
    """Packets 2..n of a run are rebuilt from the one before: 5 bytes saved on each."""
    group = packets[10:14]
    assert len(pack(group, [])) == 2 + 4 + sum(len(p) for p in group) - 5 * 3
    # Not a run (a packet lost in between, or a reordered one): sent whole, still exact.
    broken = [packets[10], packets[12], packets[11]]
    assert len(pack(broken, [])) == 2 + 3 + sum(len(p) for p in broken)
    assert unpack(pack(broken, [])).landmarks == broken


def test_the_magic_byte_is_no_codec_packet(basis: ExpressionBasis, packets: list[bytes]
                                           ) -> None:
    assert all(not is_bundle(p) for p in packets)
    assert {p[0] >> 4 for p in packets} == {0xA}  # every codec version starts 0xA_
    assert MAGIC >> 4 != 0xA
    # A bundle handed to a plain-packet decoder is refused and counted, not misread.
    dec = LandmarkDecoder(basis)
    assert dec.push(pack(packets[:3], [])) == []
    assert sum(dec.counts.values()) >= 1


def test_unbundled_packets_decode_to_the_same_frames(basis: ExpressionBasis,
                                                     packets: list[bytes]) -> None:
    plain, bundled = LandmarkDecoder(basis), LandmarkDecoder(basis)
    want = [f for p in packets for f in plain.push(p)]
    b = Bundler(3)
    got = []
    for p in packets:
        message = b.add_landmarks(p)
        if message is not None:
            for q in unpack(message).landmarks:
                got += bundled.push(q)
    assert len(want) == len(got) == len(packets)
    assert all(w.seq == g.seq and w.t_ms == g.t_ms and np.array_equal(w.q, g.q)
               for w, g in zip(want, got, strict=True))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_a_bundle_or_one_error(data: bytes) -> None:
    for message in (data, bytes([MAGIC]) + data):
        try:
            bundle = unpack(message)
        except BundleFormatError:
            continue
        assert pack(bundle.landmarks, bundle.audio)[0] == MAGIC


def test_truncated_and_corrupted_bundles_are_refused(packets: list[bytes],
                                                     opus: list[tuple[int, bytes]]) -> None:
    message = pack(packets[20:23], opus[:5])
    for n in range(len(message)):
        with pytest.raises(BundleFormatError):
            unpack(message[:n])
    with pytest.raises(BundleFormatError):
        unpack(message + b"\x00")
    rng = np.random.default_rng(11)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(3000):
        bad = bytearray(message)
        for i in rng.integers(1, len(bad), rng.integers(1, 4)):
            bad[i] = int(rng.integers(256))
        try:
            unpack(bytes(bad))
            outcomes["ok"] += 1  # e.g. a payload byte changed: the codec checks those
        except BundleFormatError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["ok"] > 0


def test_pack_refuses_what_it_cannot_carry(packets: list[bytes]) -> None:
    with pytest.raises(ValueError):
        pack(packets[:16], [])
    with pytest.raises(ValueError):
        pack([b"x" * 128], [])
    with pytest.raises(ValueError):
        pack([], [(0, b"a"), (20, b"b"), (50, b"c")])  # not evenly spaced
    with pytest.raises(ValueError):
        pack([], [(0, b"")])


def test_bundler_sends_every_n_frames_with_the_voice_of_meanwhile(
        packets: list[bytes], opus: list[tuple[int, bytes]]) -> None:
    b = Bundler(3)
    assert b.add_landmarks(packets[0]) is None
    b.add_audio(*opus[0])
    assert b.add_landmarks(packets[1]) is None
    b.add_audio(*opus[1])
    b.add_audio(*opus[2])
    message = b.add_landmarks(packets[2])
    assert message is not None
    bundle = unpack(message)
    assert bundle.landmarks == packets[:3] and bundle.audio == opus[:3]
    assert b.flush() is None  # nothing pending
    b.add_audio(*opus[3])
    flushed = b.flush()
    assert flushed is not None and unpack(flushed).audio == [opus[3]]


def test_a_lone_packet_without_voice_goes_plain(packets: list[bytes],
                                                opus: list[tuple[int, bytes]]) -> None:
    b = Bundler(1)
    assert b.add_landmarks(packets[5]) == packets[5]
    b.add_audio(*opus[0])
    message = b.add_landmarks(packets[6])
    assert message is not None and is_bundle(message)
    assert unpack(message).landmarks == [packets[6]]


def test_bundler_keeps_at_most_a_second_of_voice(packets: list[bytes],
                                                 opus: list[tuple[int, bytes]]) -> None:
    b = Bundler(3)
    for item in opus[:MAX_PENDING_AUDIO + 12]:
        b.add_audio(*item)
    assert b.counts["audio_dropped"] == 12
    message = b.flush()
    assert message is not None
    assert unpack(message).audio == opus[12:MAX_PENDING_AUDIO + 12]


def test_a_gap_in_the_voice_starts_a_new_run(opus: list[tuple[int, bytes]]) -> None:
    b = Bundler(2)
    b.add_audio(*opus[0])
    b.add_audio(*opus[1])
    b.add_audio(opus[3][0], opus[3][1])  # 40 ms after: one mic frame missing
    first, second = b.flush(), b.flush()
    assert first is not None and second is not None
    assert unpack(first).audio == opus[:2] and unpack(second).audio == [opus[3]]
    b.add_audio(opus[4][0] + 10_000, opus[4][1])  # the clock jumped: the old run is gone
    b.add_audio(opus[4][0] - 5_000, opus[4][1])
    assert b.counts["audio_gap"] == 1
    assert b.counts["landmarks_too_big"] == 0
    assert b.add_landmarks(b"x" * 200) is None and b.counts["landmarks_too_big"] == 1


# -- the relay of benchmarks/wire.py ---------------------------------------------------------


def _relay_module() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "_relay.py"
    spec = importlib.util.spec_from_file_location("wire_relay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("wire_relay", module)
    spec.loader.exec_module(module)
    return module


async def _relay_call(loss: float) -> tuple[dict[str, Any], int, int]:
    relay_mod = _relay_module()
    relay = await relay_mod.Relay.open(lifetime_s=20.0, seed=4)
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: list[bytes] = []
    opened = asyncio.Event()
    b.on("datachannel", lambda ch: ch.on("message", got.append))
    channel = a.createDataChannel("landmarks", ordered=False, maxRetransmits=0)
    channel.on("open", opened.set)
    try:
        with loopback_gathering():
            await a.setLocalDescription(await a.createOffer())
        offer = relay.rewrite(a.localDescription.sdp, "a")
        assert f"127.0.0.1 {relay.port('a')} " in offer
        await b.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        with loopback_gathering():
            await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(RTCSessionDescription(
            relay.rewrite(b.localDescription.sdp, "b"), "answer"))
        await asyncio.wait_for(opened.wait(), 8.0)
        relay.set_loss(loss, 0.0)  # once set up: the association's setup is not retried
        for i in range(100):
            channel.send(bytes([0xA1]) + i.to_bytes(2, "big") + b"x" * 20)
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
    finally:
        await a.close()
        await b.close()
        relay.close()
    return relay.snapshot(), len(got), relay.strays


def test_relay_counts_every_datagram_it_forwards_both_ways() -> None:
    counts, received, _ = asyncio.run(_relay_call(0.0))
    for way in ("a->b", "b->a"):
        c = counts[way]
        assert c["total_packets"] > 0 and c["forwarded"] == c["total_packets"]
        assert c["packets"].get("stun", 0) > 0 and c["packets"].get("dtls_handshake", 0) > 0
        assert c["total_bytes"] == sum(c["bytes"].values())
        assert c["total_bytes"] >= c["total_packets"] * 28 + 20 * c["packets"]["stun"]
    assert received == 100  # every message crossed, through the relay only
    assert counts["a->b"]["packets"]["sctp"] >= 100  # one DTLS record per message at least
    assert counts["b->a"]["packets"].get("sctp", 0) > 0  # the SACKs


def test_relay_loss_drops_media_only_and_counts_it() -> None:
    counts, received, _ = asyncio.run(_relay_call(0.3))
    ab = counts["a->b"]
    assert ab["dropped"].get("sctp", 0) > 0
    assert set(ab["dropped"]) <= {"sctp", "srtp", "srtcp"}
    assert ab["forwarded"] + sum(ab["dropped"].values()) == ab["total_packets"]
    assert 0 < received < 100
    assert counts["b->a"]["dropped"] == {}
