"""WebRTC calls: two real aiortc peers in one process over loopback (video, and landmarks
only with the model exchange), the model bundle's checks, and the CLI wiring."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from call_helpers import OUT, RecordingSink, _call, _hang_up, _local, _setup_loop
from honesty_checks import label_visible

from avatar_cam import live
from avatar_cam.honesty.detection import detect
from avatar_cam.honesty.signing import model_fingerprint
from avatar_cam.person import Person, load_person
from avatar_cam.webrtc.basis import BASIS_FILE, ExpressionBasis
from avatar_cam.webrtc.enroll import learn_basis
from avatar_cam.webrtc.model_share import (
    CHUNK_BYTES,
    BundleError,
    Incoming,
    ModelCache,
    Outgoing,
    parse_manifest,
)
from avatar_cam.webrtc.rtp_buffer import RECEIVER_BUFFER, RECEIVER_NACKS


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


@pytest.fixture(scope="module")
def basis(person: Person) -> ExpressionBasis:
    b = learn_basis(person.neutral, (person.crop_size, person.crop_size))
    return ExpressionBasis.from_bytes(b.to_bytes())


def test_video_call_both_ways_frames_and_latency(person: Person) -> None:
    from avatar_cam.webrtc.peer import Peer, PeerOptions

    async def main() -> dict[str, Any]:
        _setup_loop()
        opts = PeerOptions(out_size=OUT, stamp=True)
        la, lb = _local(person, opts), _local(person, opts)
        runs = [asyncio.ensure_future(x.run()) for x in (la, lb)]
        sa, sb = RecordingSink(), RecordingSink()
        a, b = Peer(la, sa, opts), Peer(lb, sb, opts)
        try:
            await _call(a, b, 12.0, lambda: min(sa.count, sb.count) >= 45)
            lat = [(ns - lb.slot.sent_at[s]) / 1e6 for s, ns in a.video_rx.arrivals
                   if s is not None and s in lb.slot.sent_at]
            buffers = [(t.kind, type(getattr(t.receiver, RECEIVER_BUFFER)).__name__,
                        type(getattr(t.receiver, RECEIVER_NACKS)).__name__)
                       for t in a.pc.getTransceivers()]
            return {"a": a.stats(), "b": b.stats(), "sa": sa, "sb": sb, "lat": lat,
                    "buffers": buffers,
                    "size": a.video_rx.first_size, "stamped": len(a.video_rx.arrivals)}
        finally:
            await _hang_up((a, b), (la, lb), runs)

    r = asyncio.run(main())
    assert r["a"]["frames_received"] >= 45 and r["b"]["frames_received"] >= 45
    assert r["size"] == OUT  # the sender's frames, at their size
    # Frames are handed on at their last packet, not a frame later (aiortc's default).
    # and voice goes on as it arrives, not four packets later (aiortc's default); video
    # asks again only for what the sender can still resend.
    assert r["buffers"] == [("video", "MarkerJitterBuffer", "HorizonNacks"),
                            ("audio", "VoiceJitterBuffer", "NoneType")]
    # Every received frame carries the number stamped at the sender: match them up.
    assert len(r["lat"]) >= 0.9 * r["stamped"]
    lat = np.array(r["lat"])
    assert (lat > 0).all()
    assert np.median(lat) < 2000  # live frames, not a backlog (speed is benchmarked)
    frames = r["sa"].first
    assert not np.array_equal(frames[5].image, frames[40].image)  # moving, not frozen
    # What the peer received over VP8 still says it is synthetic: label and watermark.
    assert label_visible(frames[40].image)
    mark = detect([f.image for f in frames[10:40]])
    assert mark.found and mark.fingerprint == model_fingerprint(person.folder)


def test_landmark_call_model_exchange_and_cache(person: Person, basis: ExpressionBasis,
                                                tmp_path: Path) -> None:
    from avatar_cam.webrtc.peer import Peer, PeerOptions

    cache_a, cache_b = tmp_path / "cache-a", tmp_path / "cache-b"

    async def session(keep: bool, seconds: float) -> dict[str, Any]:
        _setup_loop()
        oa = PeerOptions(landmarks_only=True, share_model=False, out_size=OUT, resolution=256,
                         cache_root=cache_a)
        ob = PeerOptions(landmarks_only=True, share_model=True, share_keep=keep, out_size=OUT,
                         resolution=256, cache_root=cache_b)
        la, lb = _local(person, oa, basis), _local(person, ob, basis)
        runs = [asyncio.ensure_future(x.run()) for x in (la, lb)]
        sa, sb = RecordingSink(), RecordingSink()
        a, b = Peer(la, sa, oa), Peer(lb, sb, ob)
        try:
            await _call(a, b, seconds, lambda: a.remote_person is not None)
            await asyncio.sleep(1.5)  # frames with the faces
            known = dict(a.landmark_rx.decoder._known) if a.landmark_rx else {}
            held = a.remote_person.folder if a.remote_person is not None else None
            files = {p.relative_to(held).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in held.rglob("*") if p.is_file()} if held is not None else {}
            return {"a": a.stats(), "b": b.stats(), "sa": sa, "sb": sb, "known": known,
                    "sent": dict(lb.encoder.recent), "bundles": lb.bundles(),
                    "person_a": a.remote_person, "counts": dict(lb.counts), "files": files,
                    "fingerprint": model_fingerprint(held) if held is not None else None}
        finally:
            await _hang_up((a, b), (la, lb), runs)

    first = asyncio.run(session(keep=False, seconds=90.0))
    model = next(x.manifest for x in first["bundles"] if x.manifest.kind == "model")
    assert first["a"]["remote_model"] == model.digest
    assert first["a"]["model_received"] == 1 and first["a"]["basis_received"] == 1
    # Held for the call only: in a folder of its own under the cache root...
    held = first["person_a"].folder
    assert held.is_relative_to(cache_a) and held.parent.parent.name.startswith(".call-")
    assert first["files"] == {f.name: f.sha256 for f in model.files}
    assert first["person_a"].owner is not None  # the owner's signature checked on arrival
    assert first["a"]["remote_owner"] == person.owner.describe()
    # ...and gone at hang-up: not a file of it (nor of the basis) is left on disk.
    assert not held.exists()
    assert [p for p in cache_a.rglob("*") if p.is_file()] == []
    assert first["b"]["remote_model"] is None  # a did not share: b sees a's sketch
    assert first["sa"].count >= 40 and first["sb"].count >= 40
    assert np.mean(first["sb"].last[-1].image < 10) > 0.5
    # What the receiver decoded is exactly what the sender encoded.
    matched = [s for s in first["known"] if s & 0xFFFF in first["sent"]]
    assert len(matched) >= 10
    for s in matched:
        np.testing.assert_array_equal(first["known"][s][0], first["sent"][s & 0xFFFF])
    assert first["a"].get("landmarks_malformed", 0) == 0
    # A few bytes a frame, PeerOptions().bundle_frames frames a message.
    per_message = PeerOptions().bundle_frames
    assert first["counts"]["packets_sent"] * per_message > 40
    assert first["counts"]["bytes_sent"] / (first["counts"]["packets_sent"] * per_message) <= 33
    start, end = first["sa"].first[0].image, [f.image for f in first["sa"].last]
    assert np.mean(start < 10) > 0.5  # the sketch on black until the model is in...
    assert np.mean(end[-1] < 10) < 0.2  # ...then the sender's face on their photo
    assert any(not np.array_equal(end[-1], im) for im in end[:-1])  # moving
    # The receiver's render says it is synthetic and whose model it is.
    owner_label = live.label_for(live.LiveOptions(), person.owner.name)
    assert owner_label is not None and person.owner.name[:10] in owner_label.text
    assert label_visible(end[-1], owner_label)
    mark = detect(end)
    assert mark.found and mark.fingerprint == first["fingerprint"]
    # The owner lets us keep it (--share-model keep): it crosses again and stays, cached
    # by hash, with the permission and the owner's signature recorded beside it.
    second = asyncio.run(session(keep=True, seconds=90.0))
    assert second["a"].get("model_received") == 1
    folder = cache_a / model.digest / person.name
    assert second["person_a"].folder == folder
    for f in model.files:
        assert hashlib.sha256((folder / f.name).read_bytes()).hexdigest() == f.sha256
    kept = json.loads((cache_a / model.digest / "kept.json").read_text())
    assert kept["owner"] == person.owner.describe()
    assert kept["signature"] == json.loads((folder / "signature.json").read_text())
    # A third call finds it in the cache: nothing crosses again.
    third = asyncio.run(session(keep=True, seconds=90.0))
    assert third["a"].get("model_from_cache") == 1 and third["a"].get("basis_from_cache") == 1
    assert "model_received" not in third["a"]


def test_landmark_call_without_shared_model_renders_the_sketch(person: Person,
                                                               basis: ExpressionBasis,
                                                               tmp_path: Path) -> None:
    from avatar_cam.webrtc.peer import Peer, PeerOptions

    async def main() -> dict[str, Any]:
        _setup_loop()
        opts = PeerOptions(landmarks_only=True, out_size=OUT, resolution=256,
                           cache_root=tmp_path)
        lb = _local(person, opts, basis)
        run = asyncio.ensure_future(lb.run())
        sink = RecordingSink()
        a, b = Peer(None, sink, opts), Peer(lb, None, opts)  # one way: b sends, a watches
        try:
            await _call(a, b, 15.0, lambda: sink.count >= 20)
            return {"a": a.stats(), "person": a.remote_person, "sink": sink}
        finally:
            await a.close()
            await b.close()
            lb.stop()
            await run

    r = asyncio.run(main())
    assert r["person"] is None and r["a"]["remote_model"] is None
    assert not any(tmp_path.rglob("photo.png"))  # nothing of the sender's face crossed
    image = r["sink"].last[-1].image
    colours = {tuple(int(c) for c in px) for px in image.reshape(-1, 3)[::7]}
    assert (255, 255, 255) in colours  # the face oval of the conditioning sketch
    assert np.mean(image < 10) > 0.5  # on black
    assert r["sink"].count >= 20


def test_call_mode_mismatch_is_refused_with_a_fix(person: Person, basis: ExpressionBasis) -> None:
    from avatar_cam.webrtc.call import Until, connect, listen
    from avatar_cam.webrtc.peer import CallError, PeerOptions

    async def main() -> str:
        _setup_loop()
        video, marks = PeerOptions(out_size=OUT), PeerOptions(landmarks_only=True, out_size=OUT)
        ready: asyncio.Future[str] = asyncio.Future()
        la = _local(person, video)
        lb = _local(person, marks, basis)
        listener = asyncio.ensure_future(
            listen(la, video, RecordingSink(), "127.0.0.1", 0, Until(duration_s=1), ready=ready))
        invitation = await ready
        try:
            await connect(lb, marks, RecordingSink(), invitation, Until(1))
        except CallError as exc:
            return str(exc)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            for local in (la, lb):
                local.stop()
                await local.run()
        return "connected"

    message = asyncio.run(main())
    assert "refused" in message and "--landmarks-only" in message


def test_connect_to_nothing_is_a_clear_error(person: Person) -> None:
    from avatar_cam.webrtc.call import Until, connect
    from avatar_cam.webrtc.peer import CallError, PeerOptions

    async def main() -> None:
        _setup_loop()
        opts = PeerOptions(out_size=OUT)
        local = _local(person, opts)
        try:
            await connect(local, opts, RecordingSink(), "http://127.0.0.1:9/call?invite=x",
                          Until(1))
        finally:
            local.stop()
            await local.run()

    with pytest.raises(CallError, match="cannot reach"):
        asyncio.run(main())


# -- the model bundle on its own ---------------------------------------------------------

def _bundle(tmp_path: Path) -> Outgoing:
    folder = tmp_path / "src" / "alice"
    folder.mkdir(parents=True)
    (folder / "person.json").write_text('{"version": 1}')
    (folder / "weights.bin").write_bytes(np.random.default_rng(0).bytes(3 * CHUNK_BYTES + 123))
    (folder / ".hidden").write_text("not sent")
    (folder / "heldout").mkdir()
    (folder / "heldout" / "0.png").write_bytes(_png(8, 8))
    return Outgoing.from_folder("model", "alice", folder)


def _png(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", w, h) \
        + bytes(5)


def test_bundle_round_trip_verified_and_cached(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    assert [f.name for f in out.manifest.files] == ["heldout/0.png", "person.json",
                                                    "weights.bin"]
    cache = ModelCache(tmp_path / "cache")
    assert cache.lookup(out.manifest) is None
    incoming = Incoming(parse_manifest(json.loads(json.dumps(out.manifest.to_json()))), cache)
    chunks = list(out.chunks())
    assert len(chunks) == out.manifest.n_chunks == 4
    for chunk in reversed(chunks):  # any order
        incoming.add(chunk)
    incoming.add(chunks[0])  # a duplicate is harmless
    folder = incoming.finish()
    assert folder == tmp_path / "cache" / out.manifest.digest / "alice"
    sent = (tmp_path / "src/alice/weights.bin").read_bytes()
    assert (folder / "weights.bin").read_bytes() == sent
    assert (folder / "heldout/0.png").read_bytes() == _png(8, 8)
    assert cache.lookup(out.manifest) == folder
    assert not list((tmp_path / "cache").glob(".incoming-*"))
    (folder / "weights.bin").write_bytes(b"tampered")
    assert cache.lookup(out.manifest) is None  # re-hashed on every lookup


def test_bundle_rejects_bad_chunks_and_bad_content(tmp_path: Path) -> None:
    out = _bundle(tmp_path)
    cache = ModelCache(tmp_path / "cache")
    incoming = Incoming(out.manifest, cache)
    chunks = list(out.chunks())
    header, body = chunks[1][:16], chunks[1][16:]
    for bad, reason in ((b"junk", "chunk_header"), (header[:12] + struct.pack(">I", 99) + body,
                                                     "chunk_index"),
                        (header + body[:-1], "chunk_size"),
                        (b"ACM1" + bytes(8) + header[12:] + body, "chunk_header")):
        with pytest.raises(BundleError) as info:
            incoming.add(bad)
        assert info.value.reason == reason
    for chunk in chunks[:-1]:
        incoming.add(chunk)
    last = bytearray(chunks[-1])
    last[-1] ^= 1  # a flipped bit in the data: the file hash catches it
    incoming.add(bytes(last))
    with pytest.raises(BundleError, match="hash"):
        incoming.finish()
    assert not (tmp_path / "cache" / out.manifest.digest).exists()
    assert not list((tmp_path / "cache").glob(".*"))  # temporary files cleaned up


@pytest.mark.parametrize("manifest", [
    None, {}, {"format": 2}, {"format": 1, "kind": "model", "name": "a", "files": []},
    {"format": 1, "kind": "exe", "name": "a", "files": [["x", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "../a", "files": [["x", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["../x", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["x/../../y", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["/etc/x", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["x//y", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [[".ssh/x", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["a/b/c/d/e", 1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["x", -1, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["x", 1 << 40, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["x", True, "0" * 64]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["x", 1, "zz"]]},
    {"format": 1, "kind": "model", "name": "a", "files": [["x", 1, "0" * 64]] * 2},
    {"format": 1, "kind": "model", "name": "a", "files": [["x", 1, "0" * 64, 5]]},
])
def test_manifest_checks(manifest: Any) -> None:
    with pytest.raises(BundleError):
        parse_manifest(manifest)


def test_png_bombs_are_refused(tmp_path: Path) -> None:
    from avatar_cam.webrtc.model_share import check_file

    (tmp_path / "big.png").write_bytes(_png(100_000, 100_000))
    with pytest.raises(BundleError, match="100000x100000"):
        check_file(tmp_path / "big.png")
    (tmp_path / "fake.png").write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(BundleError):
        check_file(tmp_path / "fake.png")


def test_model_channel_drops_garbage(tmp_path: Path, basis: ExpressionBasis) -> None:
    from avatar_cam.webrtc.exchange import ModelExchange

    class Channel:  # records what the exchange answers; a stand-in for the data channel
        readyState = "open"
        bufferedAmount = 0

        def __init__(self) -> None:
            self.sent: list[Any] = []

        def send(self, message: Any) -> None:
            self.sent.append(message)

    async def main() -> tuple[ModelExchange, Channel]:
        spawned: list[Any] = []
        ex = ModelExchange(ModelCache(tmp_path), [], False,
                           lambda c: spawned.append(asyncio.ensure_future(c)))
        ch = Channel()
        big = Outgoing("basis", "x", {BASIS_FILE: bytes(2 << 20)}).manifest.to_json()
        wrong = Outgoing("basis", "x", {"photo.png": b"1"}).manifest.to_json()
        for message in (b"\x00" * 40, "{", "[" * 5000, "x" * 100_000, json.dumps([1]),
                        json.dumps({"type": "offer", "manifest": big}),
                        json.dumps({"type": "offer", "manifest": wrong}),
                        json.dumps({"type": "want", "digest": "0" * 64}), 5):
            ex._on_control(ch, message)  # type: ignore[arg-type]
        good = Outgoing("basis", "x", {BASIS_FILE: basis.to_bytes()})
        ex._on_control(ch, json.dumps({"type": "offer", "manifest": good.manifest.to_json()}))
        ex._on_control(ch, json.dumps({"type": "offer", "manifest": good.manifest.to_json()}))
        while not ch.sent:  # the cache is looked up off the event loop, then "want"
            await asyncio.sleep(0.01)
        for chunk in good.chunks():
            ex._on_control(ch, chunk)  # type: ignore[arg-type]
        await asyncio.wait_for(ex.basis, 10)
        await asyncio.gather(*spawned)
        return ex, ch

    ex, ch = asyncio.run(main())
    dropped = sum(v for k, v in ex.counts.items() if k.startswith("dropped_"))
    assert dropped == 10 and ex.counts["dropped_repeat_offer"] == 1
    assert ex.counts["dropped_manifest"] == 2 and ex.counts["dropped_chunk_unexpected"] == 1
    assert ex.basis.result() is not None and ex.basis.result().digest == basis.digest
    assert [json.loads(m)["type"] for m in ch.sent] == ["want", "done"]


# -- the command line ------------------------------------------------------------------------

def test_cli_wiring() -> None:
    from avatar_cam.webrtc.commands import add_call_parser, add_serve_parser, run_call, run_serve

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_call_parser(sub)
    args = parser.parse_args(["serve", "--landmarks-only", "--port", "0"])
    assert args.handler is run_serve and args.host == "127.0.0.1" and args.landmarks_only
    args = parser.parse_args(["call", "--connect", "http://127.0.0.1:1", "--share-model",
                              "--sink", "null"])
    assert args.handler is run_call and args.share_model and args.listen is None
    for bad in (["call"], ["call", "--listen", "1", "--connect", "x"],
                ["serve", "--camera", "0", "--video", "x.mp4"], ["serve", "--port", "70000"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_cli_call_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """`call --listen` and `call --connect` as the CLI runs them (two event loops), the
    caller given the invitation URL the listener printed, as a person copies it."""
    import re
    import threading

    from avatar_cam.webrtc.commands import add_call_parser

    parser = argparse.ArgumentParser()
    add_call_parser(parser.add_subparsers(dest="command"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # received bundles go here
    common = ["--no-track", "--landmarks-only", "--sink", "null", "--size", "320x240",
              "--resolution", "256", "--duration", "4"]
    # Port 0: the listener takes a free port, and its invitation URL carries it.
    listener = parser.parse_args(["call", "--listen", "0", *common,
                                  "--stats-json", str(tmp_path / "a.json")])
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(listener.handler(listener)))
    thread.start()
    deadline, printed = time.monotonic() + 60, ""
    while time.monotonic() < deadline and "invite=" not in printed:  # a basis is learnt first
        printed += capsys.readouterr().out
        time.sleep(0.2)
    found = re.search(r"(http\S+/call\?invite=\S+)", printed)
    assert found is not None, printed
    caller = parser.parse_args(["call", "--connect", found.group(1), *common,
                                "--stats-json", str(tmp_path / "b.json")])
    codes.append(caller.handler(caller))
    thread.join(60)
    assert codes == [0, 0]
    for name in ("a.json", "b.json"):
        stats = json.loads((tmp_path / name).read_text())
        assert stats["mode"] == "landmarks" and stats["sent"]["packets_sent"] > 0
        assert stats.get("landmarks_decoded", 0) > 0


def _rtp(seq: int, ts: int, marker: bool) -> Any:
    from aiortc.rtp import RtpPacket

    p = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq % 65536,
                  timestamp=ts)
    p._data = bytes([seq % 256])  # type: ignore[attr-defined]
    return p


def test_marker_jitter_buffer_hands_frames_on_at_their_last_packet() -> None:
    from avatar_cam.webrtc.rtp_buffer import MarkerJitterBuffer

    packet = _rtp

    jb = MarkerJitterBuffer(capacity=128, is_video=True)
    assert jb.add(packet(100, 3000, False))[1] is None
    frame = jb.add(packet(101, 3000, True))[1]  # the marker completes the frame now
    assert frame is not None and frame.data == bytes([100, 101]) and frame.timestamp == 3000
    assert jb.add(packet(103, 6000, True))[1] is None  # 102 missing: wait for it
    frame = jb.add(packet(102, 6000, False))[1]
    assert frame is not None and frame.data == bytes([102, 103])
    assert jb.add(packet(104, 9000, False))[1] is None  # its marker packet is lost...
    frame = jb.add(packet(106, 12000, False))[1]
    assert frame is None  # (a gap at 105: nothing is complete)
    frame = jb.add(packet(105, 9000, False))[1]  # ...the next frame's start completes it
    assert frame is not None and frame.data == bytes([104, 105]) and frame.timestamp == 9000


def test_a_hole_the_sender_cannot_fill_costs_a_key_frame_not_a_frozen_picture() -> None:
    """A packet lost for good (its resends lost too) blocks the frames behind it only
    until the sender's history has moved past it (HORIZON packets), then the buffer
    starts over and asks for a key frame; a gap wider than that (an outage) is not
    NACKed at all, while ordinary holes are, every later loss asking again."""
    from aiortc.rtp import RTP_HISTORY_SIZE

    from avatar_cam.webrtc.rtp_buffer import HORIZON, HorizonNacks, MarkerJitterBuffer

    assert HORIZON == RTP_HISTORY_SIZE  # what aiortc's sender can resend
    jb = MarkerJitterBuffer()
    seq = 65500  # across the wrap of the 16-bit sequence numbers
    assert jb.add(_rtp(seq, 0, True))[1] is not None
    plis = frames = 0
    for k in range(2, HORIZON + 2):  # seq + 1 is lost for good
        pli, frame = jb.add(_rtp(seq + k, 3000 * k, True))
        plis += pli
        frames += frame is not None
    assert plis == 1 and frames == 1  # only the frame that started the buffer over
    assert jb.add(_rtp(seq + HORIZON + 2, 0, True))[1] is not None  # then frames flow

    nacks = HorizonNacks()
    nacks.add(_rtp(seq, 0, True))
    assert nacks.add(_rtp(seq + 3, 0, True)) and nacks.missing == {65501, 65502}
    assert nacks.add(_rtp(seq + 5, 0, True)) and nacks.missing == {65501, 65502, 65504}
    nacks.add(_rtp(seq + 2, 0, True))  # a resend arrived
    assert nacks.missing == {65501, 65504}
    # An outage: 700 packets lost at once are left to a key frame, and the old holes too.
    assert not nacks.add(_rtp(seq + 705, 0, True)) and nacks.missing == set()
    assert nacks.gaps_skipped == 1
    assert nacks.add(_rtp(seq + 707, 0, True)) and nacks.missing == {(seq + 706) % 65536}


def test_the_voice_buffer_never_keeps_a_loss_as_lasting_delay() -> None:
    """Voice is not resent. aiortc's audio buffer waited for 16 packets behind a lost one
    and kept that backlog, so every later packet played 320 ms late; ours hands a packet
    on as it comes in order and gives a hole up after HOLE_WAIT packets, so no more than
    HOLE_WAIT - 1 ever wait, across the wrap of the sequence numbers."""
    from aiortc.jitterbuffer import JitterBuffer

    from avatar_cam.webrtc.rtp_buffer import HOLE_WAIT, VoiceJitterBuffer

    def run(jb: Any, seqs: list[int]) -> list[tuple[int, int | None]]:
        """(seq added, seq of the frame handed on) per packet."""
        out = []
        for s in seqs:
            frame = jb.add(_rtp(s, 960 * s, True))[1]
            out.append((s % 65536, None if frame is None else frame.data[0]))
            if isinstance(jb, VoiceJitterBuffer):  # what waits is bounded after every add
                assert len(jb.packets) <= HOLE_WAIT - 1
        return out

    def waits(out: list[tuple[int, int | None]]) -> list[int]:
        """Per frame handed on, how many packets later than its own it went."""
        added = {s % 256: i for i, (s, _) in enumerate(out)}
        return [i - added[got] for i, (_, got) in enumerate(out) if got is not None]

    start = 65530
    in_order = run(VoiceJitterBuffer(), list(range(start, start + 10)))
    assert all(got == s % 256 for s, got in in_order)  # each on arrival: no delay at all

    lost = [s for s in range(start, start + 40) if s != start + 5]  # one packet lost
    jb = VoiceJitterBuffer()
    out = run(jb, lost)
    assert sum(got is None for _, got in out) == HOLE_WAIT - 1 and jb.skipped == 1
    assert max(waits(out)) == waits(out)[-1] == HOLE_WAIT - 1  # bounded: not 16
    assert jb.add(_rtp(start + 5, 0, True))[1] is None and jb.late == 1  # came too late
    assert waits(run(JitterBuffer(capacity=16, prefetch=1), lost))[-1] >= 14  # aiortc's

    # Reordered: a packet a little late still goes on in order (2); one later than
    # HOLE_WAIT packets is given up (5), and the wait stays bounded.
    jb = VoiceJitterBuffer()
    out = run(jb, [1, 3, 2, 4, 6, 7, 8, 9, 5, 10, 11, 12])
    assert [g for _, g in out if g is not None] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert jb.late == 1 and jb.skipped == 1
    # An outage: a packet far ahead starts the buffer over at once.
    assert jb.add(_rtp(500, 0, True))[1] is not None


def test_a_paced_slot_sends_each_frame_at_one_steady_latency_after_its_capture() -> None:
    """With voice, a frame is due PACE_PERCENTILE of the recent ready latencies after its
    capture (the voice is held back by that), the newest due one goes out, a frame
    readier later than that is due at once; without voice every frame is due at once."""
    import time

    from avatar_cam.pacing import PACE_FRAMES, PACE_PERCENTILE
    from avatar_cam.types import AvatarFrame
    from avatar_cam.webrtc.tracks import FrameSlot

    async def main() -> None:
        loop = asyncio.get_running_loop()
        image = np.zeros((4, 4, 3), np.uint8)
        paced, plain = FrameSlot(loop, pace=True), FrameSlot(loop)
        assert paced.hold_ms() == 0.0  # nothing measured yet: no hold
        now = time.monotonic_ns()
        # Ready 10..100 ms after capture, ten of each: the 90th percentile is 100 ms.
        for i in range(PACE_FRAMES):
            frame = AvatarFrame(i, now - (10 + 10 * (i % 10)) * 1_000_000, image)
            paced.send(frame)
            plain.send(frame)
        assert PACE_PERCENTILE == 90
        assert 99.0 <= paced.hold_ms() < 110.0 and plain.hold_ms() == 0.0
        v_plain, f_plain, _ = plain.due(0, time.monotonic_ns())
        assert f_plain is not None and f_plain.seq == PACE_FRAMES - 1  # the newest, now
        t = time.monotonic_ns()
        version, frame, _ = paced.due(0, t)
        # The newest frame captured >= 100 ms ago (of the 8 kept): seq 89 (100 ms ago).
        assert frame is not None and frame.seq == PACE_FRAMES - 1 and version == PACE_FRAMES
        fresh = AvatarFrame(PACE_FRAMES, time.monotonic_ns(), image)
        paced.send(fresh)
        sent = version
        version, frame, wait_s = paced.due(sent, time.monotonic_ns())
        assert (version, frame) == (sent, None)  # in, not yet due: how long until it is
        assert wait_s is not None and 0.05 < wait_s <= 0.11
        await asyncio.sleep(wait_s)
        version, frame, _ = paced.due(sent, time.monotonic_ns())
        assert frame is fresh and version == sent + 1  # due at capture + hold
        assert paced.due(version, time.monotonic_ns()) == (version, None, None)  # none in

    asyncio.run(main())


def test_a_landmark_receiver_shows_each_frame_at_one_steady_latency() -> None:
    """ShownSink holds a frame rendered quickly until the steady latency (the 90th
    percentile of the last frames'), shows a slow one at once, and tells the voice the
    instant each shows when it goes out."""
    import time
    from types import SimpleNamespace

    from avatar_cam.types import AvatarFrame
    from avatar_cam.webrtc.receive import ShownSink

    sent: list[int] = []
    shown: list[tuple[float, int]] = []
    slept: list[float] = []
    source = SimpleNamespace(shown={})
    sink = ShownSink(SimpleNamespace(send=lambda f: sent.append(f.seq)), source,  # type: ignore[arg-type]
                     lambda t, ns: shown.append((t, ns)), sleep=slept.append)
    image = np.zeros((2, 2, 3), np.uint8)
    for seq in range(90):  # rendered 40..130 ms after the instant they show
        source.shown[seq] = 1000.0 + seq
        now = time.monotonic_ns()
        sink.send(AvatarFrame(seq, now - (40 + 10 * (seq % 10)) * 1_000_000, image))
    assert 129 <= sink.steady.hold_ms() < 140 and sent == list(range(90))
    assert [t for t, _ in shown] == [1000.0 + k for k in range(90)]
    slept.clear()
    source.shown[90] = 1090.0
    sink.send(AvatarFrame(90, time.monotonic_ns() - 30_000_000, image))  # a quick render
    assert len(slept) == 1 and 0.095 < slept[0] < 0.11  # held to the steady latency
    slept.clear()
    source.shown[91] = 1091.0
    sink.send(AvatarFrame(91, time.monotonic_ns() - 200_000_000, image))  # a slow one
    assert slept == [] and sent[-2:] == [90, 91]  # at once


def test_track_sends_black_frames_of_the_pipeline_size_until_the_first_frame() -> None:
    """The renderer may still be loading when the peer asks for frames: the stand-in
    frames have the pipeline's size, so the stream never changes size mid-call."""
    from avatar_cam.webrtc.tracks import AvatarVideoTrack, FrameSlot

    async def main() -> list[tuple[int, int, int]]:
        track = AvatarVideoTrack(FrameSlot(asyncio.get_running_loop()), 30.0, (320, 180))
        frames = [await track.recv() for _ in range(2)]
        return [(f.width, f.height, int(np.asarray(f.to_ndarray(format="bgr24")).max()))
                for f in frames]

    assert asyncio.run(main()) == [(320, 180, 0), (320, 180, 0)]


def test_loopback_candidates_are_added_only_while_gathering() -> None:
    import aioice.ice

    from avatar_cam.webrtc.options import loopback_gathering

    original = aioice.ice.get_host_addresses
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)
    with loopback_gathering():
        with loopback_gathering():  # nested gatherings share one swap
            assert aioice.ice.get_host_addresses(True, False)[0] == "127.0.0.1"
        assert aioice.ice.get_host_addresses(True, False).count("127.0.0.1") == 1
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(False, True)
    assert aioice.ice.get_host_addresses is original


def test_workers_are_the_loops_one_executor() -> None:
    from avatar_cam.webrtc.options import configure_loop, workers

    async def main() -> tuple[bool, str]:
        pool = configure_loop(asyncio.get_running_loop(), 2)
        try:
            name = await workers().run(lambda: __import__("threading").current_thread().name)
            other = await asyncio.get_running_loop().run_in_executor(None, lambda: 1)
            return workers() is pool and other == 1, name
        finally:
            pool.close()

    same, name = asyncio.run(main())
    assert same and name.startswith("avatar-rtc")
