"""The audio package on real components: WAV files written here and PyAV's libopus. The
devices and the virtual microphone, on a real PulseAudio server, are in
test_virtual_mic.py."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest

from avatar_cam.audio.chunk import CHUNK, RATE, AudioChunk, AudioError
from avatar_cam.audio.delay import CATCH_UP_MS, DelayLine
from avatar_cam.audio.mic import open_mic, read_backlog
from avatar_cam.audio.opus import FRAME_MS, OpusDecoder, OpusEncoder
from avatar_cam.audio.speaker import RecordingSpeaker


def tone(seconds: float, hz: float = 440.0, level: float = 0.3, rate: int = RATE
         ) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples, channels).astype("<i2").tobytes())
    return path


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[int(np.argmax(spectrum))])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


# -- the file microphone --------------------------------------------------------------


def test_file_mic_plays_the_file_in_real_time_chunks(tmp_path: Path) -> None:
    samples = tone(0.5)
    mic = open_mic("file:" + str(write_wav(tmp_path / "a.wav", samples)))
    assert mic is not None
    t0 = time.monotonic_ns()
    mic.start(t0)
    chunks = []
    while (chunk := mic.read()) is not None:
        chunks.append(chunk)
    elapsed = (time.monotonic_ns() - t0) / 1e9
    mic.close()
    assert len(chunks) == 25 and all(len(c.samples) == CHUNK for c in chunks)
    # stamped from t0 at 20 ms a chunk, and the file's own samples
    assert [c.t_capture_ns - t0 for c in chunks[:3]] == [0, 20_000_000, 40_000_000]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), samples)
    assert elapsed >= 0.45  # paced like a microphone, not read at disk speed


def test_read_backlog_takes_what_waited_behind_a_late_reader(tmp_path: Path) -> None:
    """A reader that comes 500 ms late gets the 25 chunks waiting, in order, in one call
    (at once); the next call waits for the one chunk being spoken; [] at the end."""
    mic = open_mic("file:" + str(write_wav(tmp_path / "a.wav", tone(1.0))))
    assert mic is not None
    t0 = time.monotonic_ns() - 500_000_000
    mic.start(t0)
    first = read_backlog(mic)
    assert 25 <= len(first) <= 27
    assert [c.t_capture_ns - t0 for c in first] == [20_000_000 * i for i in range(len(first))]
    second = read_backlog(mic)
    assert len(second) == 1 and second[0].t_capture_ns == first[-1].t_capture_ns + 20_000_000
    assert time.monotonic_ns() >= second[0].t_capture_ns + 20_000_000  # it was waited for
    rest = [read_backlog(mic) for _ in range(60)]
    assert sum(len(r) for r in rest) == 50 - len(first) - 1 and rest[-1] == []
    mic.close()


def test_voice_goes_out_from_a_late_start_on_a_busy_event_loop(tmp_path: Path) -> None:
    """The issue a loaded CI machine showed: the call's voice starts after the first
    picture (here 600 ms after the microphone file's sample 0) on an event loop that other
    work holds 40 ms at a time. Read one chunk per executor hop, the voice never caught up
    and every chunk was dropped as late; with the backlog read, it plays after a short
    catch-up."""
    import asyncio

    from avatar_cam.webrtc.voice import VoiceOut

    mic = open_mic("file:" + str(write_wav(tmp_path / "a.wav", tone(3.0))))
    voice = VoiceOut(mic, 32, lambda: 100.0)
    track = voice.track()

    async def main() -> None:
        async def busy() -> None:
            while True:
                time.sleep(0.04)  # a loop that other work holds (encoders, sink hand-offs)
                await asyncio.sleep(0)

        hog = asyncio.ensure_future(busy())
        voice.start(time.monotonic_ns() - 600_000_000)
        await voice.run()
        hog.cancel()

    asyncio.run(main())
    voice.close()
    packets = track.queue.qsize() + track.dropped - 1  # the last item ends the track
    assert voice.counts["chunks_read"] == 150
    # 3 s of sound: about 0.7 s (the late start and the delay's catching up) is dropped
    assert voice.counts["rtp_packets"] >= 90, (dict(voice.counts), voice.delay.dropped_ms)
    assert packets == voice.counts["rtp_packets"]


def test_held_back_voice_leaves_at_its_due_time_not_at_the_next_read(tmp_path: Path
                                                                      ) -> None:
    """Sound held back 30 ms after its capture: a chunk (20 ms, complete 20 ms after its
    first sample) is due 10 ms after the read that brought it. Released only at reads, each
    went at the next read, 10 ms late, every one; released on time, it goes then."""
    import asyncio

    from avatar_cam.webrtc.voice import MicTrack, VoiceOut

    put_ns: list[int] = []

    class StampedTrack(MicTrack):
        def put(self, packet: object) -> None:
            if packet is not None:
                put_ns.append(time.monotonic_ns())
            super().put(packet)  # type: ignore[arg-type]

    mic = open_mic("file:" + str(write_wav(tmp_path / "a.wav", tone(1.0))))
    voice = VoiceOut(mic, 32, lambda: 30.0)
    voice.tracks.add(StampedTrack())
    t0 = time.monotonic_ns()

    async def main() -> None:
        voice.start(t0)
        await voice.run()

    asyncio.run(main())
    voice.close()
    assert len(put_ns) == 50 == voice.counts["rtp_packets"]
    late_ms = [(t - t0) / 1e6 - 20 * k - 30 for k, t in enumerate(put_ns)]
    assert min(late_ms) >= 0  # never before it is due
    assert float(np.median(late_ms)) < 5.0, late_ms


def test_file_mic_resamples_any_rate_and_layout_and_loops(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "b.wav", tone(0.2, 1000.0, rate=22050), rate=22050,
                     channels=2)
    mic = open_mic("file:" + str(path), loop=True)
    assert mic is not None
    mic.start(time.monotonic_ns() - 10**9)  # a second in the past: due at once
    got = np.concatenate([mic.read().samples for _ in range(20)])  # type: ignore[union-attr]
    mic.close()
    assert len(got) == 20 * CHUNK  # 0.4 s from a 0.2 s file: it looped
    assert abs(dominant_hz(got[:CHUNK * 8]) - 1000.0) < 10


def test_bad_microphone_specs_are_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    (tmp_path / "empty.wav").write_bytes(b"")
    silent_video = tmp_path / "picture.mp4"
    import av

    with av.open(str(silent_video), "w") as c:
        stream = c.add_stream("mpeg4", rate=30)
        stream.width, stream.height = 64, 64
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8),
                                               format="rgb24")
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    cases = {f"file:{tmp_path / 'missing.wav'}": "does not exist",
             f"file:{tmp_path / 'junk.wav'}": "microphone file",
             f"file:{tmp_path / 'empty.wav'}": "microphone file",
             f"file:{silent_video}": "has no sound",
             "speakers please": "not a microphone"}
    for spec, words in cases.items():
        with pytest.raises(AudioError) as caught:
            open_mic(spec)
        message = str(caught.value)
        assert words in message and "\n" not in message and " -- " in message, message
    assert open_mic("none") is None


# -- Opus ---------------------------------------------------------------------------


@pytest.mark.parametrize("kbps", [12, 16, 24])
def test_opus_round_trip_keeps_a_voice_band_tone(kbps: int) -> None:
    encoder, decoder = OpusEncoder(kbps * 1000), OpusDecoder()
    x = tone(1.0, 440.0)
    packets = [p for i in range(0, len(x), CHUNK) for p in encoder.encode(x[i:i + CHUNK])]
    assert len(packets) >= 48  # one 20 ms packet a chunk (libopus holds back one)
    mean_bytes = np.mean([len(p) for p in packets])
    assert mean_bytes < kbps * 1000 / 8 / 50 * 1.5  # about the asked bitrate
    y = np.concatenate([decoder.decode(p) for p in packets])
    assert abs(dominant_hz(y[CHUNK * 5:]) - 440.0) < 10
    assert abs(rms(y[CHUNK * 5:]) / rms(x) - 1) < 0.2


def test_opus_packets_carry_their_time_for_rtp() -> None:
    encoder = OpusEncoder(16000)
    x = tone(0.2)
    packets = [p for i in range(0, len(x), CHUNK) for p in encoder.encode_packets(x[i:i + CHUNK])]
    assert [p.pts for p in packets[:3]] == [0, CHUNK, 2 * CHUNK]
    assert all(p.time_base == packets[0].time_base and p.time_base.denominator == RATE
               for p in packets)


@pytest.mark.parametrize("frame_ms", FRAME_MS)
def test_opus_frame_lengths_the_bundled_libopus_takes(frame_ms: int) -> None:
    encoder, decoder = OpusEncoder(16000, frame_ms), OpusDecoder()
    x = tone(1.0, 440.0)
    packets = encoder.encode_packets(x)
    n = RATE * frame_ms // 1000
    assert len(packets) >= len(x) // n - 1
    assert [p.pts for p in packets[:2]] == [0, n]
    decoded = [decoder.decode(bytes(p)) for p in packets]
    assert {len(d) for d in decoded} == {n}
    assert abs(dominant_hz(np.concatenate(decoded)[n * 2:]) - 440.0) < 10


def test_opus_refuses_what_it_cannot_encode() -> None:
    for frame_ms, bitrate in ((30, 16000), (20, 1000)):
        with pytest.raises(ValueError):
            OpusEncoder(bitrate, frame_ms)
    with pytest.raises(ValueError):
        OpusEncoder().encode(tone(0.02).astype(np.float32))


# Packets that break RFC 6716's rules (3.4): one of each kind a network could deliver.
MALFORMED = {"empty": b"", "over the largest packet": bytes(4000),
             "two equal frames of odd total length": bytes([0x09, 1, 2, 3]),
             "no frames": bytes([0x0B, 0x00]),
             "seven 20 ms frames (140 ms)": bytes([0x0B, 0x07]) + bytes(20),
             "a frame longer than the packet": bytes([0x0A, 200, 1, 2, 3]),
             "equal frames that do not divide the payload": bytes([0x0B, 0x02, 1, 2, 3])}


def test_opus_decoder_rejects_and_counts_what_is_not_opus() -> None:
    encoder, decoder = OpusEncoder(16000), OpusDecoder()
    good = encoder.encode(tone(0.2))
    decoder.decode(good[0])
    for name, packet in MALFORMED.items():
        with pytest.raises(ValueError, match="not an Opus packet"):
            decoder.decode(packet)
        assert decoder.rejected == list(MALFORMED).index(name) + 1
    # random bytes: either a valid (noisy) packet of a legal length or a counted refusal
    rng = np.random.default_rng(3)
    for n in range(1, 200, 7):
        before = decoder.rejected
        try:
            out = decoder.decode(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            assert out.dtype == np.int16 and len(out) in {120 * k for k in range(1, 49)}
        except ValueError:
            assert decoder.rejected == before + 1
    # and the decoder still decodes the stream after all that
    assert all(len(decoder.decode(p)) == CHUNK for p in good[1:])


def test_opus_conceals_a_lost_packet_with_libopus_plc() -> None:
    encoder, decoder = OpusEncoder(16000), OpusDecoder()
    assert not decoder.conceal(CHUNK).any()  # nothing heard yet: silence
    x = tone(1.0, 440.0)
    packets = encoder.encode(x)
    heard = np.concatenate([decoder.decode(p) for p in packets[:30]])
    losses = [decoder.conceal(CHUNK) for _ in range(10)]
    assert all(c.shape == (CHUNK,) and c.dtype == np.int16 for c in losses)
    # the first lost 20 ms carries the tone on; a long loss fades away
    assert rms(losses[0]) > 0.3 * rms(heard[-CHUNK:])
    assert abs(dominant_hz(losses[0]) - 440.0) < 30
    assert rms(losses[-1]) < 0.2 * rms(losses[0])
    assert decoder.concealed == 10
    assert len(decoder.conceal(CHUNK // 2)) == CHUNK // 2
    assert len(decoder.decode(packets[40])) == CHUNK  # and the stream goes on


# -- the delay line -------------------------------------------------------------------


def _chunk(t_ms: float) -> AudioChunk:
    return AudioChunk(np.zeros(CHUNK, np.int16), int(t_ms * 1e6))


def test_delay_line_holds_sound_back_by_the_live_delay_and_catches_up() -> None:
    delay = [100.0]
    line = DelayLine(lambda: delay[0])
    for i in range(10):
        line.push(_chunk(20 * i))
    assert line.due(int(99e6)) == []
    assert [c.t_capture_ns for c in line.due(int(145e6))] == [0, int(20e6), int(40e6)]
    delay[0] = 20.0  # the picture got faster: play on time, drop what would be late
    out = line.due(int(300e6))
    assert out and out[-1].t_capture_ns == int(180e6)
    assert line.dropped_ms > 0
    assert all(300 - c.t_capture_ns / 1e6 - 20 <= CATCH_UP_MS for c in out)
    delay[0] = 5000.0  # clamped to max_ms
    assert line.current_ms() == line.max_ms


def test_delay_line_drops_no_more_than_catching_up_needs() -> None:
    line = DelayLine(lambda: 40.0)
    # 300 ms of sound all due at once: the line keeps what is at most CATCH_UP_MS late
    for i in range(15):
        line.push(_chunk(20 * i))
    out = line.due(int(340e6))
    lateness = [340 - 40 - c.t_capture_ns / 1e6 for c in out]
    assert max(lateness) <= CATCH_UP_MS and out[-1].t_capture_ns == int(280e6)
    assert [c.t_capture_ns for c in out] == [int(t * 1e6) for t in range(0, 300, 20)
                                             if 300 - t <= CATCH_UP_MS]
    assert line.dropped_ms == pytest.approx(20 * (15 - len(out)))


def test_delay_line_catches_up_with_a_microphone_read_late() -> None:
    """A caller that stalled 500 ms reads the microphone's backlog one chunk at a time
    (each read at once): the old chunks go until the rest is within CATCH_UP_MS."""
    line = DelayLine(lambda: 40.0)
    now_ms, played = 500.0, []
    for i in range(40):
        line.push(_chunk(20 * i))
        played += [(now_ms, c.t_capture_ns / 1e6) for c in line.due(int(now_ms * 1e6))]
        if 20 * i + 20 > now_ms:  # caught up with the microphone: reads wait for it
            now_ms = 20 * i + 20
    assert all(t - c - 40 <= CATCH_UP_MS for t, c in played)
    assert line.dropped_ms == pytest.approx(500 - 40 - CATCH_UP_MS, abs=20)
    assert played[-1][1] > 700  # and everything after the catching up plays


def test_delay_line_is_bounded() -> None:
    line = DelayLine(lambda: 0.0, max_ms=100)
    for i in range(50):
        line.push(_chunk(20 * i))
    assert len(line.chunks) <= 7 and line.overflow_ms > 0


def test_recording_speaker_checks_what_it_plays() -> None:
    speaker = RecordingSpeaker()
    speaker.play(tone(0.02))
    for bad in (tone(0.02).astype(np.float32), np.zeros((CHUNK, 2), np.int16), [0] * CHUNK):
        with pytest.raises(ValueError):
            speaker.play(bad)  # type: ignore[arg-type]
    assert speaker.duration_s == pytest.approx(0.02) and speaker.samples_played == CHUNK
    assert speaker.rms() == pytest.approx(rms(tone(0.02)))
    speaker.close()
    with pytest.raises(ValueError):
        speaker.play(tone(0.02))
