"""The landmark-only codec: basis, packets, loss/reordering/duplicates, the jitter buffer,
and a decoder fed arbitrary bytes. No network: packets are handed over directly."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatar_cam import mesh, motion
from avatar_cam.person import Person, load_person
from avatar_cam.webrtc.basis import ExpressionBasis, load_basis, save_basis
from avatar_cam.webrtc.codec import (
    HEADER_BYTES,
    HISTORY,
    MAX_PENDING,
    LandmarkDecoder,
    LandmarkEncoder,
)
from avatar_cam.webrtc.enroll import learn_basis
from avatar_cam.webrtc.jitter import JitterBuffer, PlayoutConfig

FPS = 30.0


@pytest.fixture(scope="module")
def person():  # type: ignore[no-untyped-def]
    return load_person("demo")


@pytest.fixture(scope="module")
def basis(person) -> ExpressionBasis:  # type: ignore[no-untyped-def]
    """The demo person's basis learned from animate() alone (what basis_for falls back to)."""
    learned = learn_basis(person.neutral, (person.crop_size, person.crop_size))
    return ExpressionBasis.from_bytes(learned.to_bytes())


@pytest.fixture(scope="module")
def clip(person) -> np.ndarray:  # type: ignore[no-untyped-def]
    """4 s of the motion script (head turns, talking, blinks) plus tracker-like noise."""
    rng = np.random.default_rng(7)
    frames = [motion.animate(person.neutral, motion.script(0.5 + i / FPS)) for i in range(120)]
    noise = rng.normal(0.0, 0.3, (120, 478, 3)).astype(np.float32)
    return np.stack(frames) + noise


def _encode_all(basis: ExpressionBasis, clip: np.ndarray, **kw: object) -> tuple[
        list[bytes], LandmarkEncoder]:
    enc = LandmarkEncoder(basis, **kw)  # type: ignore[arg-type]
    return [enc.encode(p, int(round(1000 * i / FPS))) for i, p in enumerate(clip)], enc


def _error_iod(basis: ExpressionBasis, q: np.ndarray, truth: np.ndarray) -> float:
    decoded = basis.synthesize(basis.dequantize(q))
    return float(np.linalg.norm((decoded - truth)[:, :2], axis=1).mean() / basis.iod)


def test_analyze_synthesize_inverts_pose_and_expression(basis: ExpressionBasis,
                                                        person: Person) -> None:
    m = motion.Motion(yaw=18, pitch=-7, roll=9, jaw_open=0.8, smile=0.5, offset_x=0.05)
    points = motion.animate(person.neutral, m)
    params = basis.analyze(points)
    assert abs(np.degrees(np.linalg.norm(params[:3])) - np.linalg.norm([18, 7, 9])) < 3
    back = basis.synthesize(params)
    assert np.linalg.norm((back - points)[:, :2], axis=1).mean() / basis.iod < 0.003
    neutral = basis.synthesize(basis.analyze(person.neutral))
    assert np.abs(neutral - person.neutral).max() < 0.5


def test_round_trip_within_target_and_budget(basis: ExpressionBasis, clip: np.ndarray) -> None:
    packets, enc = _encode_all(basis, clip)
    dec = LandmarkDecoder(basis)
    errors = []
    for i, packet in enumerate(packets):
        frames = dec.push(packet)
        assert [f.seq for f in frames] == [i]
        np.testing.assert_array_equal(frames[0].q, enc.recent[i])
        errors.append(_error_iod(basis, frames[0].q, clip[i]))
    sizes = np.array([len(p) for p in packets])
    assert np.mean(errors) < 0.015  # the target, on noisy input
    assert sizes.mean() * 8 * FPS / 1000 <= 8.0  # kbit/s at 30 fps, header included
    assert sizes.max() <= 64
    assert dec.counts["malformed"] == 0 and dec.counts["decoded"] == len(packets)


def test_every_packet_carries_seq_and_timestamp(basis: ExpressionBasis, clip: np.ndarray) -> None:
    packets, _ = _encode_all(basis, clip[:10])
    for i, p in enumerate(packets):
        assert p[0] == 0xA1 and p[2] == basis.tag
        assert int.from_bytes(p[3:5], "big") == i
        assert int.from_bytes(p[5:7], "big") == int(round(1000 * i / FPS))


def test_loss_reordering_and_duplicates_decode_exactly(basis: ExpressionBasis,
                                                        clip: np.ndarray) -> None:
    packets, enc = _encode_all(basis, clip)
    rng = np.random.default_rng(3)
    order = [i for i in range(len(packets)) if rng.random() > 0.15]  # 15% lost
    for i in range(0, len(order) - 2, 3):  # swap neighbours: reordering
        order[i], order[i + 1] = order[i + 1], order[i]
    dupes = order[::7]
    dec = LandmarkDecoder(basis)
    seen: dict[int, np.ndarray] = {}
    for i in order + dupes:
        for f in dec.push(packets[i]):
            assert f.seq not in seen
            seen[f.seq] = f.q
    for seq, q in seen.items():  # whatever decodes is exact: prediction never drifts
        np.testing.assert_array_equal(q, enc.recent[seq])
    assert dec.counts["duplicate"] >= len(dupes) - 2
    assert len(seen) >= 0.8 * len(order)
    assert dec.counts["recovered"] > 0  # single losses rebuilt from the next packet


def test_single_loss_is_recovered_without_loss_of_a_frame(basis: ExpressionBasis,
                                                          clip: np.ndarray) -> None:
    packets, enc = _encode_all(basis, clip[:12], key_every=100)
    dec = LandmarkDecoder(basis)
    got = []
    for i, p in enumerate(packets):
        if i == 5:
            continue
        got += dec.push(p)
    assert [f.seq for f in got] == list(range(12))
    assert [f.seq for f in got if f.recovered] == [5]
    np.testing.assert_array_equal(got[5].q, enc.recent[5])
    # Uneven frame times (a sender dropping frames): the rebuilt frame keeps its own.
    times = [0, 33, 70, 100, 140, 160, 230, 260, 300, 333, 366, 400]
    enc = LandmarkEncoder(basis, key_every=100)
    packets = [enc.encode(p, t) for p, t in zip(clip[:12], times, strict=True)]
    dec = LandmarkDecoder(basis)
    got = [f for i, p in enumerate(packets) if i != 5 for f in dec.push(p)]
    assert [f.t_ms for f in got] == times


def test_a_burst_breaks_prediction_until_the_next_key(basis: ExpressionBasis,
                                                       clip: np.ndarray) -> None:
    packets, _ = _encode_all(basis, clip[:30], key_every=6)
    dec = LandmarkDecoder(basis)
    got = [f.seq for i, p in enumerate(packets) if i not in (7, 8) for f in dec.push(p)]
    assert 9 not in got and 10 not in got and 11 not in got  # no reference, no guess
    assert 12 in got and got[-1] == 29  # the KEY at 12 recovers
    assert dec.counts["undecodable"] == 0  # waiting, not given up (yet)


def test_malformed_packets_are_dropped_and_counted(basis: ExpressionBasis,
                                                   clip: np.ndarray) -> None:
    packets, _ = _encode_all(basis, clip[:3])
    good = packets[0]
    bad = {
        "length": [good[:HEADER_BYTES - 1], good + bytes(100)],
        "magic": [bytes([0x51]) + good[1:]],
        "version": [bytes([0xA2]) + good[1:]],
        "flags": [good[:1] + bytes([good[1] | 0x80]) + good[2:], good[:1] + bytes([5]) + good[2:]],
        "basis": [good[:2] + bytes([(good[2] + 1) % 256]) + good[3:]],
        "trailing bytes": [good + b"\x00"],
        "non-zero padding": [good[:-1] + bytes([good[-1] | 1])] if len(good) * 8 else [],
        "truncated": [good[:HEADER_BYTES + 2]],
    }
    for reason, variants in bad.items():
        for data in variants:
            dec = LandmarkDecoder(basis)
            assert dec.push(data) == []
            assert dec.counts["malformed"] == 1, reason
    dec = LandmarkDecoder(basis)
    assert dec.push("not bytes") == []  # type: ignore[arg-type]
    assert dec.counts["malformed_not bytes"] == 1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=120), max_size=12))
def test_fuzz_decoder_with_arbitrary_bytes(basis: ExpressionBasis, packets: list[bytes]) -> None:
    dec = LandmarkDecoder(basis)
    for data in packets:
        for f in dec.push(data):
            assert (np.abs(f.q) <= basis.limits).all()
    assert dec.counts["packets"] == len(packets)
    assert len(dec._known) <= HISTORY + 1 and len(dec._pending) <= MAX_PENDING


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_decoder_with_damaged_real_packets(basis: ExpressionBasis, clip: np.ndarray,
                                                data: st.DataObject) -> None:
    packets, _ = _encode_all(basis, clip[:8])
    dec = LandmarkDecoder(basis)
    for p in packets:
        damaged = bytearray(p)
        for _ in range(data.draw(st.integers(0, 3))):
            pos = data.draw(st.integers(0, len(damaged) - 1))
            damaged[pos] ^= 1 << data.draw(st.integers(0, 7))
        cut = data.draw(st.integers(HEADER_BYTES - 2, len(damaged) + 2))
        for f in dec.push(bytes(damaged[:cut]) + bytes(max(0, cut - len(damaged)))):
            assert (np.abs(f.q) <= basis.limits).all()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.data())
def test_fuzz_basis_parser(basis: ExpressionBasis, junk: bytes, data: st.DataObject) -> None:
    """The basis crosses the wire too: junk, and a real one with its header damaged."""
    with contextlib.suppress(ValueError):
        ExpressionBasis.from_bytes(junk)
    raw = bytearray(basis.to_bytes())
    header_end = 8 + int.from_bytes(raw[4:8], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, header_end - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ValueError):
        parsed = ExpressionBasis.from_bytes(bytes(raw[:data.draw(st.integers(0, len(raw)))]))
        assert parsed.k >= 1 and (parsed.steps > 0).all()


def test_basis_file_round_trip_and_damage(basis: ExpressionBasis, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from avatar_cam.errors import ModelError

    save_basis(basis, tmp_path)
    loaded = load_basis(tmp_path)
    assert loaded is not None and loaded.digest == basis.digest
    raw = bytearray((tmp_path / "codec_basis.bin").read_bytes())
    raw[-5] ^= 0xFF  # a body byte: may still parse, but not as the same basis
    (tmp_path / "codec_basis.bin").write_bytes(bytes(raw[:-1]))
    with pytest.raises(ModelError):
        load_basis(tmp_path)
    assert load_basis(tmp_path / "nothing") is None


def test_jitter_buffer_interpolates_extrapolates_then_eases() -> None:
    neutral = np.zeros(3)
    jb = JitterBuffer(neutral, PlayoutConfig(delay_ms=50, extrapolate_ms=100, hold_ms=100,
                                             ease_ms=200))
    for seq, t in enumerate(range(0, 200, 33)):
        if seq == 3:
            continue  # lost
        jb.push(seq, t, np.array([t, 1.0, 0.0]), now_ms=t + 5)
    s = jb.sample(99 + 55)  # playout at sender t=99: frame 3 is missing
    assert s.state == "concealed" and abs(s.params[0] - 99) < 1e-6
    s = jb.sample(165 + 55)  # the newest frame: exact
    assert s.state == "ok" and abs(s.params[0] - 165) < 1e-6
    s = jb.sample(215 + 55)  # 50 ms past it: extrapolated along the last step
    assert s.state == "extrapolated" and abs(s.params[0] - 215) < 1e-6
    assert jb.sample(320 + 55).state == "held"
    late = jb.sample(700 + 55)
    assert late.state == "neutral" and np.allclose(late.params, neutral)
    jb.push(30, 990, np.array([990, 1.0, 0.0]), now_ms=995)
    back = jb.sample(990 + 55)  # frames return: blend in from neutral, no jump
    assert back.state == "ok" and 0 <= back.params[0] < 990


def test_after_a_brief_extrapolation_the_true_frames_show_at_once() -> None:
    """A frame a little late costs one extrapolated sample, not a 150 ms blend: a mouth
    that opens just then is shown opening on time (a hold still blends back in)."""
    jb = JitterBuffer(np.zeros(1), PlayoutConfig(delay_ms=50, ease_in_ms=150))
    for seq in range(4):
        jb.push(seq, 33.0 * seq, np.array([0.0]), now_ms=33.0 * seq + 2)
    assert jb.sample(99 + 2 + 50 + 10).state == "extrapolated"  # frame 4 is late
    jb.push(4, 132.0, np.array([1.0]), now_ms=132 + 40)  # ...it comes: the mouth opens
    jb.push(5, 165.0, np.array([1.0]), now_ms=165 + 2)
    s = jb.sample(132 + 2 + 50 + 10)  # between frames 4 and 5 (the delay grew <= 6 ms)
    assert s.state == "ok" and s.params[0] == pytest.approx(1.0)  # not blended from 0


def test_jitter_buffer_is_bounded_and_drops_stale() -> None:
    jb = JitterBuffer(np.zeros(2), PlayoutConfig(capacity=16))
    for seq in range(100):
        jb.push(seq, 33 * seq, np.array([seq, 0.0]), now_ms=33 * seq + 2)
    assert len(jb) <= 16
    jb.push(5, 33 * 5, np.array([5, 0.0]), now_ms=33 * 100)
    assert jb.counts["too_late"] == 1
    jb.push(1000, 1.0, np.array([np.nan, 0.0]), now_ms=1.0)
    assert jb.counts["rejected"] == 1


def test_inter_ocular_units(basis: ExpressionBasis, person) -> None:  # type: ignore[no-untyped-def]
    assert basis.iod == pytest.approx(mesh.inter_ocular(person.neutral))
    assert basis.size == (person.crop_size, person.crop_size)


def test_jitter_buffer_adapts_its_delay_to_the_link() -> None:
    rng = np.random.default_rng(0)
    jb = JitterBuffer(np.zeros(1), PlayoutConfig(delay_ms=50, max_delay_ms=250))
    states = []
    for seq in range(300):
        t = 33.0 * seq
        jb.push(seq, t, np.array([t]), now_ms=t + 80 * rng.random())  # 0-80 ms of jitter
        states.append(jb.sample(t + 40).state)
    # Grew to what a frame needs (its jitter and the 33 ms since its predecessor, whose
    # time on shows something between the two) plus a margin, no further.
    assert 33 + 80 * 0.9 < jb.delay_ms <= 33 + 80 + 12
    assert states[-100:].count("ok") >= 97  # late packets now arrive in time
    for seq in range(300, 600):  # a steady link: the delay shrinks back
        t = 33.0 * seq
        jb.push(seq, t, np.array([t]), now_ms=t + 2)
        jb.sample(t + 40)
    assert jb.delay_ms == pytest.approx(50)


def test_the_call_basis_codes_about_the_live_adapters_rest_face(single_face_mp4: Path) -> None:
    """basis_for recentres the person's basis on the resting face the live adapter drives
    (the demo photo smiles; the rest face does not), so a real driver's frames cost fewer
    coefficient steps and decode closer to what the sender drew."""
    import cv2

    from avatar_cam.expression import resting_face
    from avatar_cam.live import LiveOptions, adapter_for
    from avatar_cam.tracking import MediaPipeTracker
    from avatar_cam.types import Frame
    from avatar_cam.webrtc.enroll import basis_for

    person = load_person("demo")
    saved = load_basis(person.folder)
    assert saved is not None
    call = basis_for(person.neutral, person.crop_size, person.folder)
    assert call.digest != saved.digest and np.array_equal(call.components, saved.components)
    assert ExpressionBasis.from_bytes(call.to_bytes()).digest == call.digest
    rest = resting_face(person.neutral)
    # The rest face codes as the neutral did, and comes back as closely.
    assert np.allclose(call.analyze(rest)[7:], saved.analyze(person.neutral)[7:], atol=1e-3)
    back = {name: float(np.linalg.norm((b.synthesize(b.analyze(face)) - face)[:, :2],
                                       axis=1).mean())
            for name, b, face in (("rest", call, rest), ("neutral", saved, person.neutral),
                                  ("rest before", saved, rest))}
    assert back["rest"] < back["neutral"] + 0.05 < back["rest before"], back
    adapter = adapter_for(person, LiveOptions())
    cap = cv2.VideoCapture(str(single_face_mp4))
    errors: dict[str, list[float]] = {"saved": [], "call": []}
    steps: dict[str, list[float]] = {"saved": [], "call": []}
    with MediaPipeTracker() as tracker:
        for n in range(45):
            ok, image = cap.read()
            assert ok
            lm = tracker.track(Frame(n, int(n * 1e9 / FPS), image))
            points = adapter.drive(lm, n, int(n * 1e9 / FPS)).points
            for name, b in (("saved", saved), ("call", call)):
                q, _ = b.quantize(b.analyze(points))
                errors[name].append(_error_iod(b, q, points))
                steps[name].append(float(np.abs(q[7:]).sum()))
    cap.release()
    assert np.mean(errors["call"]) < 0.6 * np.mean(errors["saved"]), errors
    assert np.mean(steps["call"]) < np.mean(steps["saved"])
