"""Lip sync end to end: two avatar-cam instances in one process call each other over
loopback (real aiortc peers), in video mode and in landmark-only mode. The sender's camera
is the sync signal's clip (avatar_cam.sync_signal: the mouth opens every second, played
in real time and tracked by MediaPipe) and its microphone the signal's WAV (tone bursts
that start when the mouth opens). The receiver records into the real file sink (one mp4,
picture and sound placed by when each was handed over) and a recording speaker.

At the receiver each burst's onset is paired with the mouth opening MediaPipe finds in
the received pictures (benchmarks/_sync_measure.py); offset = sound - picture, positive
when the sound comes after. Two readings of one call:

- "as played": frames at their arrival at the sink, sound at the recording speaker's
  play times (what a user sees and hears, the speaker's own buffer aside).
- "mp4": the same from the recording alone (FileSink: sound within SNAP_MS before to
  AHEAD_MS after its play time).

Target (issue 18): sound at most 30 ms ahead of and 60 ms behind the picture, p95.
``--quick``: 15 s calls instead of 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import _sync_measure as sm
import numpy as np
from _report import (
    RESULTS,
    load,
    machine,
    markdown_table,
    met,
    now,
    rebuild,
    section,
    table_arg,
    write,
)

from avatar_cam import live
from avatar_cam.audio.mic import open_mic
from avatar_cam.audio.speaker import RecordingSpeaker
from avatar_cam.person import Person, load_person
from avatar_cam.sinks import FileSink
from avatar_cam.sync_signal import SyncSignal, make_signal
from avatar_cam.types import AvatarFrame

FPS = 30.0
OUT = (320, 240)  # received frames: MediaPipe finds the avatar's face at this size
CLIP = (640, 480)
MODEL_WAIT_S = 60.0


class ArrivalTee:
    """The receiver's sink: notes when each frame arrives, passes frames and sound on to
    the file sink (which the benchmark closes itself, after the call)."""

    def __init__(self, sink: FileSink) -> None:
        self.sink = sink
        self.arrived_ns: list[int] = []

    @property
    def frames_sent(self) -> int:
        return self.sink.frames_sent

    def send(self, frame: AvatarFrame) -> None:
        self.arrived_ns.append(time.monotonic_ns())
        self.sink.send(frame)

    def play(self, samples: np.ndarray) -> None:
        self.sink.play(samples)

    def close(self) -> None:
        pass


async def call(person: Person, sig: SyncSignal, clip: Path, wav: Path, landmarks: bool,
               folder: Path) -> dict[str, Any]:
    """One one-way call, the clip played through; what the receiver got."""
    from avatar_cam.webrtc.peer import LocalAvatar, Peer, PeerOptions, configure_loop

    configure_loop(asyncio.get_running_loop())
    mode = "landmarks" if landmarks else "video"
    opts = PeerOptions(landmarks_only=landmarks, share_model=landmarks, out_size=OUT,
                       cache_root=folder / f"cache-{mode}")
    source = live.open_source(None, clip, FPS, loop=False, realtime=True, size=CLIP)
    local = LocalAvatar(person, source, live.LiveOptions(out_size=OUT, fps=FPS, track=True),
                        opts, mic=open_mic("file:" + str(wav)))
    file_sink = FileSink(folder / f"{mode}.mp4", OUT[0], OUT[1], FPS)
    tee, speaker = ArrivalTee(file_sink), RecordingSpeaker()
    sender, receiver = Peer(local, None, opts), Peer(None, tee, opts, speaker)
    running: asyncio.Future[None] | None = None
    t_start = time.monotonic()
    try:
        await sender.accept_answer(await receiver.accept_offer(await sender.create_offer()))
        await sender.wait_connected(15)
        if landmarks:  # the clip starts once the receiver can draw the sender's face
            t_end = time.monotonic() + MODEL_WAIT_S
            while receiver.remote_person is None and time.monotonic() < t_end:
                await asyncio.sleep(0.1)
        running = asyncio.ensure_future(local.run())
        await asyncio.wait_for(asyncio.shield(running), sig.frames / FPS + 30)
        await asyncio.sleep(1.0)  # the last second in flight
        stats = receiver.stats()
    finally:
        await sender.close()
        await receiver.close()
        local.stop()
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        file_sink.close()
    return {"mode": mode, "path": file_sink.path, "arrived_ns": tee.arrived_ns,
            "chunks": speaker.chunks, "sink_counts": dict(file_sink.counts),
            "receiver_stats": {k: v for k, v in stats.items()
                               if isinstance(v, (int, float, str))},
            "remote_person": landmarks and receiver.remote_person is not None,
            "call_s": round(time.monotonic() - t_start, 1),
            "manifest_error": file_sink.manifest_error}


def measure_call(got: dict[str, Any], sig: SyncSignal) -> dict[str, Any]:
    """Both readings of one call from one MediaPipe pass over the recorded pictures."""
    path: Path = got["path"]
    times_mp4, gaps = sm.mouth_apertures(sm.mp4_frames(path))
    arrived = np.asarray(got["arrived_ns"], np.float64) / 1e9
    expected = len(sig.onsets_s)
    span = arrived[-1] - arrived[0] if len(arrived) > 1 else 0.0
    out: dict[str, Any] = {"frames_recorded": int(len(gaps)),
                           "arrival_fps": round((len(arrived) - 1) / span, 2) if span else 0.0,
                           "face_found": round(float(np.isfinite(gaps).mean()), 3)
                           if len(gaps) else 0.0}
    # The k-th picture of the file is the k-th frame the sink was handed.
    if len(arrived) == len(gaps):
        samples, sample_t = sm.chunk_times(got["chunks"])
        sound = sm.audio_onsets(samples, sample_t, sig.tone_hz, sig.period_s / 2)
        picture = sm.mouth_onsets(arrived, gaps, sig.period_s / 2)
        offsets = sm.pair(sound, picture, sig.period_s)
        out["as_played"] = sm.summarise(offsets, expected) | {
            "offsets_ms": [round(float(v), 1) for v in offsets]}
    else:
        out["as_played"] = {"skipped": f"{len(arrived)} frames arrived, {len(gaps)} in the "
                                       "file"}
    samples, sample_t = sm.mp4_sound(path)
    sound = sm.audio_onsets(samples, sample_t, sig.tone_hz, sig.period_s / 2)
    picture = sm.mouth_onsets(times_mp4, gaps, sig.period_s / 2)
    offsets = sm.pair(sound, picture, sig.period_s)
    out["mp4"] = sm.summarise(offsets, expected) | {
        "offsets_ms": [round(float(v), 1) for v in offsets]}
    return out


def row(mode: str, reading: str, m: dict[str, Any]) -> list[Any]:
    if "p50_ms" not in m:
        return [mode, reading, f"{m.get('pairs', 0)} / {m.get('expected', '?')}", "", "", "",
                "", m.get("skipped", "no pairs")]
    return [mode, reading, f"{m['pairs']} / {m['expected']}", m["p5_ms"], m["p50_ms"],
            m["p95_ms"], f"{100 * m['within_target']:.0f}%",
            "yes" if m["meets_target"] else "no"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s calls instead of 60 s")
    parser.add_argument("--modes", default="video,landmarks")
    parser.add_argument("--no-readme", action="store_true")
    table_arg(parser)
    args = parser.parse_args()
    if args.table:
        plot(load("lipsync"))
        rebuild("lipsync", summary)
        return
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    seconds = 15.0 if args.quick else 60.0
    person = load_person("demo")
    results: dict[str, Any] = {"machine": machine(), "seconds": seconds, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["AVATAR_CAM_CONFIG"] = str(folder / "config")  # the sink's signing key
        clip, wav = folder / "signal.mp4", folder / "signal.wav"
        sig = make_signal(clip, wav, seconds, 1.0, person=person, size=CLIP)
        results["signal"] = {"bursts": len(sig.onsets_s), "period_s": sig.period_s,
                             "open_s": sig.open_s, "tone_hz": sig.tone_hz,
                             "tone_s": sig.tone_s}
        for mode in args.modes.split(","):
            t0 = time.perf_counter()
            got = asyncio.run(call(person, sig, clip, wav, mode == "landmarks", folder))
            measured = measure_call(got, sig)
            results["modes"][mode] = measured | {
                "sink_counts": got["sink_counts"], "receiver_stats": got["receiver_stats"],
                "manifest_error": got["manifest_error"],
                "wall_s": round(time.perf_counter() - t0, 1)}
            print(mode, {k: v for k, v in measured.items() if k not in ("as_played", "mp4")},
                  {k: {x: y for x, y in measured[k].items() if x != "offsets_ms"}
                   for k in ("as_played", "mp4")}, flush=True)
    results["measured"] = now()
    results["notes"] = [(f"{seconds:.0f} s one-way loopback calls, sender driven by the sync "
              "signal's clip (MediaPipe-tracked, real time) with its WAV as the microphone; "
              "offset = sound - picture at the receiver (positive: sound after), "
              "mouth openings by raw MediaPipe on the received frames. Target: p5 >= -30 "
              f"ms and p95 <= 60 ms. Machine: {results['machine']['cpu']}, "
              f"{results['machine']['cores']} cores, no GPU; load "
              f"{results['machine']['load_average_1min']}.")]
    plot(results)
    write("lipsync", results, summary(results), readme=not args.no_readme)


def plot(data: dict[str, Any]) -> None:
    """results/lipsync.png: each call's offsets against the target window."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    series = [(f"{mode}, {reading}", m[key]["offsets_ms"]) for mode, m in data["modes"].items()
              for reading, key in (("as played", "as_played"), ("mp4", "mp4"))
              if m.get(key, {}).get("offsets_ms")]
    if not series:
        return
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(series) + 1.4))
    ax.axvspan(-sm.AHEAD_MS, sm.BEHIND_MS, color="tab:green", alpha=0.15, label="target")
    for i, (_, offsets) in enumerate(series):
        ax.plot(offsets, [i] * len(offsets), "|", markersize=12, color="tab:blue")
    ax.set_yticks(range(len(series)), [name for name, _ in series], fontsize=8)
    ax.set_xlabel("sound minus picture at the receiver, ms (positive: sound after)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "lipsync.png", dpi=80)
    plt.close(fig)


def summary(data: dict[str, Any]) -> str:
    """The README section, from lipsync.json alone (``--table``)."""
    rows = [row(mode, reading, m[key]) for mode, m in data["modes"].items()
            for reading, key in (("as played", "as_played"), ("mp4 recording", "mp4"))]
    for r in rows:
        r[-1] = met(r[-1] == "yes") if r[-1] in ("yes", "no") else r[-1]
    table = markdown_table(["mode", "reading", "pairs / bursts", f"p5 ms (>= -{sm.AHEAD_MS:g})",
                            "p50 ms", f"p95 ms (<= {sm.BEHIND_MS:g})",
                            f"within [-{sm.AHEAD_MS:g}, +{sm.BEHIND_MS:g}]", "target"], rows)
    return section("lipsync", data, f"Audio-to-picture offset at the receiver of "
                   f"{data['seconds']:.0f} s one-way loopback calls (sound minus picture, "
                   "positive: sound after), per mode, as played and as recorded.", table,
                   plot="lipsync.png")


if __name__ == "__main__":
    main()
