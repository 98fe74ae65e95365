"""Real bytes on the wire of a landmark-only call, and what bundling frames saves and costs.

Real calls between two avatar-cam ``Peer``s in one process, every datagram passing a UDP
relay on 127.0.0.1 that counts it (``_relay.py``: IPv4 20 + UDP 8 + the real STUN, DTLS,
SCTP bytes; nothing estimated). The sender is the live landmark pipeline on the demo
person (adapter, ``LandmarkTap``, codec, bundler) fed the demo footage's MediaPipe
landmarks, tracked once up front and replayed at 30 fps (``_wire_driver``; ``--live-track``
tracks the demo driver live in every call instead, which a busy 2-core machine cannot
keep at 30 fps). The voice, when on, is speech made by espeak-ng, played as the
microphone (``audio.mic`` file:, looped), Opus at ``OPUS_KBPS`` (or the row's). The
receiver renders the sketch (no model shared: what crosses the wire is the same).

Each option is a one-way call measured for ``--seconds`` after ``WARMUP_S``: the forward
direction is the sender's messages, the reverse one what the receiver sends back (SCTP
SACKs, STUN consent checks). Options: one packet per frame (frames=1: the plain codec
packet, today's wire), bundles of 2, 3, 4 frames; without and with voice; 0 % and 5 %
loss (the relay drops media datagrams at random, seeded, both ways). Latency: each
landmark frame from its capture (``LocalAvatar.sent_ns``) to its arrival in the
receiver's decoder (``LandmarkReceiver.arrivals``: frames rebuilt from redundancy are not
in it), same process, same monotonic clock; mean/p50/p95/max, and the difference from
frames=1 of the same voice and loss.

Then two-way calls (both ends send and receive, as a real call does), with voice, for
``TWO_WAY`` (frames per message, Opus bitrate), and the one chosen for a call again at 5 %
loss: the whole call each way. Last, computed without a network (``_wire_offline``):
bundle sizes with redundancy only in each bundle's first packet, and the landmark error
when whole messages are lost.

    .venv/bin/python benchmarks/wire.py [--seconds 20] [--quick]
-> benchmarks/results/wire.json and the wire section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _relay import KINDS, Relay, window
from _report import machine, now, rebuild, write
from _wire_driver import ReplaySource, tracked_driver
from _wire_offline import compute
from _wire_report import detail, summary

from avatar_cam import live
from avatar_cam.audio.mic import open_mic
from avatar_cam.audio.speaker import RecordingSpeaker
from avatar_cam.person import Person, load_person
from avatar_cam.webrtc.basis import ExpressionBasis
from avatar_cam.webrtc.enroll import basis_for
from avatar_cam.webrtc.peer import LocalAvatar, Peer, PeerOptions, configure_loop

FPS = 30.0
OUT = (320, 240)  # the receiver's sketch: small, it does not change the wire
RESOLUTION = 256
OPUS_KBPS = 16
WARMUP_S = 4.0
DRIVER_FRAMES = 600  # 20 s of tracked footage, replayed forth and back
FRAMES = (1, 2, 3, 4)
LOSSES = (0.0, 0.05)
TARGET_LANDMARKS_KBPS = 12.0
TARGET_CALL_KBPS = 32.0
# Two-way calls: (frames per message, Opus kbit/s).
TWO_WAY = ((1, 16), (3, 16), (4, 16), (3, 12), (4, 12), (3, 10), (4, 10))
TWO_WAY_QUICK = ((1, 16), (3, 12))
SPEECH = ("Hello, can you hear me? I am calling from the avatar camera. The landmarks of my "
          "face and my voice travel together in one message. Let us see how many bytes that "
          "costs on the wire, headers and all. One, two, three, four, five. Thank you, "
          "talk to you soon.")


@dataclass(frozen=True)
class Option:
    frames: int
    voice: bool
    loss: float
    opus_kbps: int = OPUS_KBPS

    @property
    def name(self) -> str:
        return (f"{self.frames} frame{'s' if self.frames > 1 else ''}/msg, "
                f"{f'voice {self.opus_kbps}k' if self.voice else 'no voice'}, "
                f"{self.loss:.0%} loss")


class CountingSink:
    """Where the receiver's frames go: counted (the picture is bandwidth.py's business)."""

    def __init__(self) -> None:
        self.frames_sent = 0

    def send(self, frame: Any) -> None:
        self.frames_sent += 1

    def close(self) -> None:
        pass


def speech_wav(folder: Path) -> tuple[Path, str]:
    """A spoken paragraph with its pauses (espeak-ng), as a voice-like microphone."""
    tool = shutil.which("espeak-ng") or shutil.which("espeak")
    if tool is None:
        raise SystemExit("the voice runs need espeak-ng: apt-get install espeak-ng")
    path = folder / "speech.wav"
    subprocess.run([tool, "-s", "150", "-w", str(path), SPEECH], check=True, timeout=60,
                   capture_output=True)
    return path, f"{Path(tool).name}: {len(SPEECH.split())} words, looped"


def latency(local: LocalAvatar, rx: Peer, since_ns: int, until_ns: int) -> list[float]:
    """Capture -> arrival (ms) of the frames that arrived in the window."""
    arrivals = rx.landmark_rx.arrivals if rx.landmark_rx is not None else {}
    sent = local.sent_ns
    return [(ns - sent[t]) / 1e6 for t, ns in list(arrivals.items())
            if since_ns <= ns < until_ns and t in sent]


def summarize(ways: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, w in ways.items():
        out[name] = {"kbps": round(w["total_bytes"] * 8 / seconds / 1000, 2),
                     "packets_per_s": round(w["total_packets"] / seconds, 1),
                     "by_kind": {k: {"kbps": round(w["bytes"].get(k, 0) * 8 / seconds / 1000,
                                                   2),
                                     "packets_per_s": round(w["packets"].get(k, 0) / seconds,
                                                            1)}
                                 for k in KINDS if w["packets"].get(k)},
                     "dropped": w["dropped"]}
    return out


STATES = ("ok", "concealed", "extrapolated", "held", "easing", "neutral", "waiting")


def playout_counts(receivers: list[Peer]) -> Counter[str]:
    """The receivers' frames by playout state so far (ok, extrapolated, held...)."""
    out: Counter[str] = Counter()
    for rx in receivers:
        if rx.landmark_rx is not None:
            out.update({k: v for k, v in rx.landmark_rx.counts.items() if k in STATES})
    return out


def shares(before: Counter[str], after: Counter[str]) -> dict[str, float]:
    diff = after - before
    total = sum(diff.values())
    return {k: round(diff[k] / total, 4) for k in STATES if diff[k]} if total else {}


def pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": float("nan"), "p50": float("nan"), "p95": float("nan"),
                "max": float("nan"), "n": 0}
    a = np.asarray(values)
    return {"mean": round(float(a.mean()), 1), "p50": round(float(np.percentile(a, 50)), 1),
            "p95": round(float(np.percentile(a, 95)), 1), "max": round(float(a.max()), 1),
            "n": int(len(a))}


async def call(person: Person, basis: ExpressionBasis, option: Option, seconds: float,
               wav: Path, two_way: bool, driver: np.ndarray | None, cache: Path
               ) -> dict[str, Any]:
    """One call through the relay; its counts over the measured window. ``driver``: tracked
    landmarks to replay, or None to track the demo driver live."""
    track = driver is None
    opts = PeerOptions(landmarks_only=True, fps=FPS, out_size=OUT, resolution=RESOLUTION,
                       bundle_frames=option.frames, opus_kbps=option.opus_kbps, cache_root=cache)
    live_opts = live.LiveOptions(out_size=OUT, fps=FPS, resolution=RESOLUTION, track=track)

    def local() -> LocalAvatar:
        mic = open_mic("file:" + str(wav), loop=True) if option.voice else None
        source = live.demo_source(person, FPS, realtime=True, size=RESOLUTION) \
            if driver is None else ReplaySource(driver, FPS)
        return LocalAvatar(person, source, live_opts, opts, basis, mic=mic)

    relay = await Relay.open(lifetime_s=seconds + 120.0, loss_ab=option.loss,
                             loss_ba=option.loss, seed=7)
    la = local()
    lb = local() if two_way else None
    runs = [asyncio.ensure_future(x.run()) for x in (la, lb) if x is not None]
    sinks, speakers = [CountingSink(), CountingSink()], [RecordingSpeaker(), RecordingSpeaker()]
    a = Peer(la, sinks[0] if two_way else None, opts, speakers[0] if two_way else None)
    b = Peer(lb, sinks[1], opts, speakers[1])
    try:
        await relay.join(a, b, 20.0)
        await asyncio.wait_for(b.receiving.wait(), 60.0)
        if two_way:
            await asyncio.wait_for(a.receiving.wait(), 60.0)
        await asyncio.sleep(WARMUP_S)
        before, t0, t0_ns = relay.snapshot(), time.monotonic(), time.monotonic_ns()
        sent0 = [dict(x.counts) for x in (la, lb) if x is not None]
        frames0 = [x.pipeline.stats.frames for x in (la, lb) if x is not None]
        voice0 = [s.duration_s for s in speakers]
        receivers = [b, a] if two_way else [b]
        states0 = playout_counts(receivers)
        await asyncio.sleep(seconds)
        after, elapsed, t1_ns = relay.snapshot(), time.monotonic() - t0, time.monotonic_ns()
        ways = {k: window(before[k], after[k]) for k in after}
        lat = latency(la, b, t0_ns, t1_ns) + (latency(lb, a, t0_ns, t1_ns)
                                               if lb is not None else [])
        senders = [x for x in (la, lb) if x is not None]
        msgs = [x.counts.get("packets_sent", 0) - s.get("packets_sent", 0)
                for x, s in zip(senders, sent0, strict=True)]
        payload = [x.counts.get("bytes_sent", 0) - s.get("bytes_sent", 0)
                   for x, s in zip(senders, sent0, strict=True)]
        frames = [x.pipeline.stats.frames - f for x, f in zip(senders, frames0, strict=True)]
        wire = summarize(ways, elapsed)
        result: dict[str, Any] = {
            "option": option.name, "frames_per_message": option.frames, "voice": option.voice,
            "loss": option.loss, "opus_kbps": option.opus_kbps if option.voice else None,
            "two_way": two_way, "seconds": round(elapsed, 2),
            "wire": wire,
            "sender_fps": [round(f / elapsed, 1) for f in frames],
            "messages_per_s": [round(m / elapsed, 1) for m in msgs],
            "payload_kbps": [round(p * 8 / elapsed / 1000, 2) for p in payload],
            "payload_bytes_per_message": [round(p / m, 1) if m else None
                                          for p, m in zip(payload, msgs, strict=True)],
            "latency_ms": pct(lat),
            "voice_received_s": [round(s.duration_s - v, 1)
                                 for s, v in zip(speakers, voice0, strict=True)],
            "bundler_counts": [dict(x.bundler.counts) if x.bundler else {} for x in senders],
            "receiver_counts": {k: v for k, v in b.stats().items()
                                if isinstance(v, int) and k.startswith(("landmarks_", "voice_",
                                                                        "bundle_"))},
            "relay_strays": relay.strays,
            "receiver_shown": shares(states0, playout_counts(receivers)),
        }
    finally:
        await a.close()
        await b.close()
        for x in (la, lb):
            if x is not None:
                x.stop()
        await asyncio.gather(*runs, return_exceptions=True)
        relay.close()
    fwd = wire["a->b"]["by_kind"].get("sctp", {})
    sctp_bytes = ways["a->b"]["bytes"].get("sctp", 0)
    if msgs[0] and not two_way:  # measured per-message overhead: wire bytes less payload
        result["overhead_bytes_per_message"] = round((sctp_bytes - payload[0]) / msgs[0], 1)
    print(f"{option.name}{' (two-way)' if two_way else ''}: "
          f"{wire['a->b']['kbps']} / {wire['b->a']['kbps']} kbit/s "
          f"(sctp {fwd.get('packets_per_s')}/s), {result['sender_fps']} fps, "
          f"latency {result['latency_ms']}", flush=True)
    return result


def chosen_frames(runs: list[dict[str, Any]]) -> int:
    """The fewest frames per message whose landmarks alone (no voice, 0 % loss, both
    directions of the one-way call: what the sender costs the link) meet the target."""
    for r in sorted(runs, key=lambda r: r["frames_per_message"]):
        if not r["voice"] and r["loss"] == 0 and not r["two_way"]:
            total = r["wire"]["a->b"]["kbps"]
            if total <= TARGET_LANDMARKS_KBPS:
                return int(r["frames_per_message"])
    return FRAMES[-1]


def chosen_call(runs: list[dict[str, Any]]) -> Option | None:
    """Of the two-way calls without loss that keep both ways within the call target, the
    one with the fewest frames per message (latency), then the most voice bitrate."""
    fits = [r for r in runs if r["two_way"] and r["loss"] == 0 and
            max(w["kbps"] for w in r["wire"].values()) <= TARGET_CALL_KBPS]
    if not fits:
        return None
    best = min(fits, key=lambda r: (r["frames_per_message"], -r["opus_kbps"]))
    return Option(best["frames_per_message"], True, 0.0, best["opus_kbps"])


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    configure_loop(asyncio.get_running_loop())
    person = load_person("demo")
    loop = asyncio.get_running_loop()
    basis = await loop.run_in_executor(
        None, lambda: basis_for(person.neutral, person.crop_size, person.folder))
    frames = DRIVER_FRAMES // 2 if args.quick else DRIVER_FRAMES
    raw, driven, missed = await loop.run_in_executor(
        None, lambda: tracked_driver(person, frames, FPS))
    driver = None if args.track else raw
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        wav, voice_source = speech_wav(Path(tmp))
        options = (1, 3) if args.quick else FRAMES
        for loss in LOSSES:
            for voice in (False, True):
                for n in options:
                    runs.append(await call(person, basis, Option(n, voice, loss),
                                           args.seconds, wav, False, driver, Path(tmp)))
        chosen = chosen_frames(runs)
        two_way = TWO_WAY_QUICK if args.quick else TWO_WAY
        for n, kbps in two_way:
            runs.append(await call(person, basis, Option(n, True, 0.0, kbps), args.seconds,
                                   wav, True, driver, Path(tmp)))
        call_option = chosen_call(runs)
        if call_option is not None:
            runs.append(await call(person, basis, Option(call_option.frames, True, LOSSES[-1],
                                                         call_option.opus_kbps),
                                   args.seconds, wav, True, driver, Path(tmp)))
    overhead = float(np.median([r["overhead_bytes_per_message"] for r in runs
                                if "overhead_bytes_per_message" in r and not r["voice"]
                                and r["loss"] == 0]))
    computed = await loop.run_in_executor(
        None, lambda: compute(basis, driven, FRAMES, overhead, LOSSES[-1]))
    return {"machine": machine(), "seconds": args.seconds, "warmup_s": WARMUP_S,
            "targets": {"landmarks_kbps": TARGET_LANDMARKS_KBPS,
                        "call_kbps_each_way": TARGET_CALL_KBPS},
            "track": args.track,
            "driver": {"frames": frames, "frames_without_face": missed,
                       "replayed": driver is not None},
            "computed": {"overhead_bytes_per_message": overhead, "loss": LOSSES[-1],
                         "rows": computed},
            "voice_source": voice_source, "opus_kbps": OPUS_KBPS, "chosen_frames": chosen,
            "chosen_call": call_option.name if call_option is not None else None,
            "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="6 s runs, 1 and 3 frames only")
    ap.add_argument("--live-track", dest="track", action="store_true",
                    help="track the demo driver live in each call (CPU-bound: on a busy "
                    "machine the senders fall under 30 fps)")
    ap.add_argument("--no-readme", dest="readme", action="store_false")
    ap.add_argument("--table", action="store_true",
                    help="rebuild the README section from results/wire.json, measure nothing")
    args = ap.parse_args()
    if args.table:
        rebuild("wire", summary)
        return
    if args.quick:
        args.seconds = min(args.seconds, 6.0)
    data = asyncio.run(run_all(args))
    data["measured"] = now()
    write("wire", data, summary(data), readme=args.readme and not args.quick)
    print(detail(data))


if __name__ == "__main__":
    main()
