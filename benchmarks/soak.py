"""Soak: long calls through a bad link (issue 19, parts 5 and 6).

Two avatar-cam ``Peer``s in one process call each other with in-process signaling
(``create_offer`` / ``accept_offer`` / ``accept_answer``), every datagram through the relay
on 127.0.0.1 (``_relay.py``) with a bad link's faults (``_faulty_link.py``) from the moment
the call is up: ``LOSS`` i.i.d. loss and a delay drawn per datagram uniformly in
``[0, JITTER_MS]`` (which reorders) each way, and an outage of ``OUTAGE_S`` (everything
dropped both ways, STUN included) every ``--minutes``/6 minutes (every 10 min in the
hour's run, every 20 s in a 2 min one). One call per mode, each in its own process
(``--mode both`` runs the two side by side, as the hour allows no other way):

- video: the live pipeline (the demo identity's tracked footage replayed as its
  landmarks, ``_wire_driver``; renderer and compositor as ``live`` picks them) -> VP8 ->
  the receiver's sink; frames numbered in their corner to time them (``stamp``).
- landmarks: landmark-only with ``share_model``: the receiver renders the sender's face
  with the sender's generator (neural forced, as bandwidth.py does).

Voice on in both: the microphone is a file of a tone burst every second
(``_soak_probes``), played at the receiver into a recording speaker that finds each
burst. Sampled every second: the receiver's fps (video: frames reaching the sink;
landmarks: frames reaching it drawn from live data, ``_soak_probes.ArrivalSink``), the
picture's latency (capture to the receiver's sink; landmarks: of the sender instant
shown), A/V offset (each burst's capture-to-speaker time less the picture's latency of
that second: positive when the sound comes after the picture), the process's RSS and
open file descriptors, and in landmark mode quality: the landmarks the receiver drew
against the sender's at the same instant (interpolated between its two frames around
it), both rendered by the sender's generator and composited as bandwidth.py does
(``bandwidth.Scene``: the face square of a 640x480 frame), PSNR.

Targets (the issue's): no crash; recovery within ``RECOVER_S`` after each outage
(recovered: the first 0.5 s window after the outage's end whose fps is at least
``RECOVER_SHARE`` of the median of the minute before the outage; the time is that
window's end less the outage's end); RSS growth under ``RSS_GROWTH_MB`` over the run
after warm-up (the median of the last 30 s less the median of the 30 s after the first
``warmup_s``: 5 minutes, or a quarter of a shorter run); quality >= ``PSNR_DB`` (mean of
the samples outside outages and their recovery).

    .venv/bin/python benchmarks/soak.py [--minutes 60] [--mode both|video|landmarks]
-> benchmarks/results/soak.json, soak.png and the soak section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _faulty_link import Faults, Outages
from _relay import Relay, window
from _report import RESULTS, machine, write
from _soak_probes import (
    PERIOD_S,
    ArrivalSink,
    BurstSpeaker,
    SentPoints,
    ShownPoints,
    StampedMic,
    burst_wav,
)
from bandwidth import psnr

FPS = 30.0
OUT = (320, 240)  # both ends' frames: small, so two calls keep 30 fps on 2 shared cores
RESOLUTION = 256
LOSS, JITTER_MS = 0.05, 80.0
OUTAGE_S = 5.0
OUTAGES_PER_RUN = 6  # an outage every minutes/6: every 10 min of the hour
RECOVER_S, RECOVER_SHARE, WINDOW_S, TICK_S = 2.0, 0.8, 0.5, 0.25
RSS_GROWTH_MB = 50.0
PSNR_DB = 35.0
QUALITY_EVERY_S = 2.0  # one quality sample per this (two renders on the shared CPU)
DRIVER_FRAMES = 600
MODES = ("video", "landmarks")


class ErrorCount(logging.Handler):
    """ERROR records anywhere (a peer task that failed logs one): counted, the first kept."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{record.name}: {record.getMessage()}"[:300]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def bundled_ice() -> Any:
    """The call's ICE setup with one transport for picture and voice (max-bundle): aiortc's
    default offer gathers one per kind, then the answer's BUNDLE leaves only the first in
    use; the relay stands in for one port a side."""
    from dataclasses import dataclass

    from aiortc import RTCBundlePolicy

    from avatar_cam.webrtc.ice import IceServers

    @dataclass(frozen=True)
    class Bundled(IceServers):
        def configuration(self) -> Any:
            config = super().configuration()
            config.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
            return config

    return Bundled()


def faults() -> Faults:
    return Faults(loss=LOSS, jitter_ms=JITTER_MS)


def schedule(seconds: float) -> tuple[float, float]:
    """(period, duration) of the outages of a run of ``seconds``."""
    return seconds / OUTAGES_PER_RUN, OUTAGE_S


def warmup_s(seconds: float) -> float:
    return min(300.0, seconds / 4)


class Quality:
    """PSNR of what the receiver drew against the sender, rendered alike (see the module
    docstring): the newest drawn frame whose shown instant the sender's kept frames
    bracket."""

    def __init__(self, person: Any, basis: Any) -> None:
        from bandwidth import Scene

        from avatar_cam.webrtc.remote_look import person_look

        self.look = person_look(person, OUT, RESOLUTION, prefer="neural")
        self.scene = Scene(person, self.look.renderer)
        self.basis = basis

    def measure(self, sent: SentPoints, drawn: ShownPoints, shown: dict[int, float]
                ) -> tuple[float, float] | None:
        """(PSNR of the drawn frame, PSNR of the sender's points through the codec's
        basis alone: what a lossless link could give, same frame) or None."""
        for seq, points in drawn.newest():
            t = shown.get(seq)
            ref = sent.at(t) if t is not None and np.isfinite(t) else None
            if ref is None:
                continue
            ideal = self.basis.synthesize(self.basis.analyze(ref)).astype(np.float32)
            a, b, c = (self.scene.face(self.scene.frame(p)) for p in (ref, points, ideal))
            return psnr(a, b), psnr(a, c)
        return None

    def close(self) -> None:
        self.look.renderer.close()


async def call(mode: str, seconds: float, seed: int = 7, driver_frames: int = DRIVER_FRAMES
               ) -> dict[str, Any]:
    """One call of ``seconds`` through the bad link after setup; its samples.
    ``driver_frames``: how much footage to track for the replayed driver."""
    from _wire_driver import ReplaySource, tracked_driver

    from avatar_cam import live
    from avatar_cam.audio.mic import open_mic
    from avatar_cam.person import load_person
    from avatar_cam.webrtc.enroll import basis_for
    from avatar_cam.webrtc.peer import LocalAvatar, Peer, PeerOptions, configure_loop

    errors = ErrorCount()
    logging.getLogger().addHandler(errors)
    loop = asyncio.get_running_loop()
    configure_loop(loop)
    t_setup = time.monotonic()
    landmarks = mode == "landmarks"
    person = load_person("demo")
    raw, _, missed = await loop.run_in_executor(
        None, lambda: tracked_driver(person, driver_frames, FPS))
    basis = await loop.run_in_executor(
        None, lambda: basis_for(person.neutral, person.crop_size, person.folder)) \
        if landmarks else None
    quality = await loop.run_in_executor(None, lambda: Quality(person, basis)) \
        if basis is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        wav = burst_wav(Path(tmp) / "bursts.wav")
        opts = PeerOptions(landmarks_only=landmarks, share_model=landmarks, fps=FPS,
                           out_size=OUT, resolution=RESOLUTION, stamp=not landmarks,
                           cache_root=Path(tmp), remote_renderer="neural", ice=bundled_ice())
        live_opts = live.LiveOptions(out_size=OUT, fps=FPS, resolution=RESOLUTION,
                                     track=False)
        mic = StampedMic(open_mic("file:" + str(wav), loop=True))
        local = LocalAvatar(person, ReplaySource(raw, FPS), live_opts, opts, basis, mic=mic)
        tap: Any = local.pipeline.sink  # landmarks: the LandmarkTap
        sent = SentPoints(tap.encoder) if landmarks else None
        if sent is not None:  # it encodes through the recorder from its first frame on
            tap.encoder = sent
        running = asyncio.ensure_future(local.run())
        relay = await Relay.open(lifetime_s=seconds + 600.0, seed=seed)
        sink, speaker = ArrivalSink(), BurstSpeaker()
        a, b = Peer(local, None, opts), Peer(None, sink, opts, speaker)
        result: dict[str, Any] = {"mode": mode}
        try:
            await relay.join(a, b, 30.0)
            await asyncio.wait_for(b.receiving.wait(), 60.0)
            drawn: ShownPoints | None = None
            if landmarks:
                while b.remote_look is None and time.monotonic() - t_setup < 240:
                    await asyncio.sleep(0.2)
                assert b.receiver is not None and local.encoder is not None
                drawn = ShownPoints(b.receiver.adapter)
                b.receiver.adapter = drawn
                sink.shown = b.receiver.source.shown  # type: ignore[attr-defined]
                sink.t0_ms = local.encoder.t0_ms
                sink.arrivals = b.landmark_rx.arrivals if b.landmark_rx is not None else None
            else:
                assert local.slot is not None
                sink.sent_at = local.slot.sent_at
            await asyncio.sleep(3.0)  # settle before the faults start
            result["setup_s"] = round(time.monotonic() - t_setup, 1)
            t0 = loop.time()
            period, duration = schedule(seconds)
            outages = Outages.every(t0, period, duration, t0 + seconds)
            relay.set_faults(faults(), faults(), outages)
            before = relay.snapshot()
            samples, ticks = await sample(loop, t0, seconds, a, b, local, sink, speaker, mic,
                                          relay, quality, sent, drawn)
            result.update({
                "seconds": seconds, "faults": faults().describe(),
                "outages_s": [[round(s - t0, 2), d] for s, d in outages.windows],
                "samples": samples, "ticks": ticks,
                "connection_at_end": [a.pc.connectionState, b.pc.connectionState],
                "sender_frames": local.pipeline.stats.frames,
                "sender_latency_ms": {"p50": round(local.pipeline.stats.latencies_ms
                                                   .percentile(50), 1),
                                      "p95": round(local.pipeline.stats.latencies_ms
                                                   .percentile(95), 1)},
                "receiver_counts": {k: v for k, v in b.stats().items()
                                    if isinstance(v, int | str | None)},
                "relay": {w: window(before[w], c) for w, c in relay.snapshot().items()},
                "relay_strays": relay.strays,
                "unmatched_frames": sink.unmatched, "driver_frames_without_face": missed,
                "speaker_samples": speaker.samples_played,
            })
        finally:
            await a.close()
            await b.close()
            local.stop()
            await asyncio.gather(running, return_exceptions=True)
            relay.close()
            if quality is not None:
                quality.close()
    result["errors_logged"] = errors.count
    result["first_error"] = errors.first
    result["crashed"] = running.exception() is not None if running.done() and \
        not running.cancelled() else False
    logging.getLogger().removeHandler(errors)
    return result


async def sample(loop: asyncio.AbstractEventLoop, t0: float, seconds: float, a: Any, b: Any,
                 local: Any, sink: ArrivalSink, speaker: BurstSpeaker, mic: StampedMic,
                 relay: Relay, quality: Quality | None, sent: SentPoints | None,
                 drawn: ShownPoints | None) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """Every TICK_S: the live frame count (for recovery); every second: the sample."""
    mode = "landmarks" if quality is not None else "video"
    samples: list[dict[str, Any]] = []
    ticks: list[list[float]] = []  # (t s, live frames so far)
    lat_s: list[float] = []  # the picture's latencies since the last sample
    sink.take()  # what came during setup
    speaker.take_onsets()
    live0 = sink.live
    frames0 = sink.frames_sent
    next_quality = 0.0
    per_sample = round(1 / TICK_S)
    for tick in range(1, round(seconds / TICK_S) + 1):
        await asyncio.sleep(max(0.0, t0 + tick * TICK_S - loop.time()))
        now = loop.time() - t0
        _, lat = sink.take()
        lat_s += lat
        ticks.append([round(now, 3), sink.live - live0])
        if tick % per_sample:
            continue
        prev = samples[-1] if samples else None
        onsets = speaker.take_onsets()
        offsets = []
        pic = float(np.median(lat_s)) if lat_s else float("nan")
        lat_s = []
        if mic.t0_ns is not None and np.isfinite(pic):
            for ns in onsets:
                k = (ns - mic.t0_ns) // int(PERIOD_S * 1e9)
                audio_ms = (ns - mic.t0_ns - k * PERIOD_S * 1e9) / 1e6
                offsets.append(audio_ms - pic)
        s: dict[str, Any] = {
            "t": round(now, 2),
            "fps": round((ticks[-1][1] - (prev["live"] if prev else 0)) /
                         (now - (prev["t"] if prev else 0.0)), 1),
            "live": ticks[-1][1],
            "frames": sink.frames_sent - frames0,
            "latency_ms": round(pic, 1) if np.isfinite(pic) else None,
            "av_offset_ms": [round(float(v), 1) for v in offsets],
            "rss_mb": round(rss_mb(), 1), "fds": open_fds(),
            "load": round(os.getloadavg()[0], 2),  # the machine's 1-min load average
            "connection": a.pc.connectionState,
        }
        if quality is not None and sent is not None and drawn is not None and \
                now >= next_quality:
            next_quality = now + QUALITY_EVERY_S
            shown = b.receiver.source.shown if b.receiver is not None else {}
            got = await loop.run_in_executor(None, quality.measure, sent, drawn, shown)
            if got is not None:
                s["psnr_db"], s["psnr_basis_db"] = round(got[0], 2), round(got[1], 2)
        samples.append(s)
        if len(samples) % 60 == 0:
            print(f"[{mode}] {now:.0f} s: {s}", flush=True)
    return samples, ticks


def assess(part: dict[str, Any]) -> dict[str, Any]:
    """The targets, from one call's samples (see the module docstring)."""
    seconds = part["seconds"]
    ticks = np.asarray(part["ticks"], np.float64)  # (n, 2): t s, live frames so far
    samples = part["samples"]
    t = np.array([s["t"] for s in samples])
    fps = np.array([s["fps"] for s in samples])
    def disturbed(x: float) -> bool:
        return any(s - 1.0 <= x <= s + d + RECOVER_S + 1.0 for s, d in part["outages_s"])

    recoveries = []
    for start, duration in part["outages_s"]:
        end = start + duration
        before = fps[(t > max(start - 60.0, 1.0)) & (t <= start) &
                     ~np.array([disturbed(x) and x < start - 1.0 for x in t])]
        ref = float(np.median(before)) if len(before) else float("nan")
        got = None
        w = round(WINDOW_S / TICK_S)
        for i in range(w, len(ticks)):
            if ticks[i - w, 0] < end - 1e-6 or ticks[i, 0] <= ticks[i - w, 0]:
                continue
            rate = (ticks[i, 1] - ticks[i - w, 1]) / (ticks[i, 0] - ticks[i - w, 0])
            if rate >= RECOVER_SHARE * ref:
                got = float(ticks[i, 0] - end)
                break
        recoveries.append({"outage_start_s": start, "fps_before": round(ref, 1),
                           "recovered_after_s": round(got, 2) if got is not None else None})
    warm = warmup_s(seconds)
    rss = np.array([s["rss_mb"] for s in samples])
    fds = np.array([s["fds"] for s in samples])
    after = (t >= warm) & (t < warm + 30)
    last = t >= t[-1] - 30
    growth = float(np.median(rss[last]) - np.median(rss[after])) if after.any() else \
        float("nan")
    fit = t >= warm
    slope = float(np.polyfit(t[fit], rss[fit], 1)[0] * 3600) if fit.sum() > 2 else float("nan")

    q_all = [s["psnr_db"] for s in samples if s.get("psnr_db") is not None]
    q_basis = [s["psnr_basis_db"] for s in samples if s.get("psnr_basis_db") is not None]
    q = [s["psnr_db"] for s in samples if s.get("psnr_db") is not None and not disturbed(s["t"])]
    q_basis_steady = [s["psnr_basis_db"] for s in samples
                      if s.get("psnr_basis_db") is not None and not disturbed(s["t"])]
    lat = [s["latency_ms"] for s in samples if s["latency_ms"] is not None
           and not disturbed(s["t"])]
    av = [v for s in samples if not disturbed(s["t"]) for v in s["av_offset_ms"]]
    steady = fps[[not disturbed(x) for x in t]]
    out: dict[str, Any] = {
        "crashed": bool(part["crashed"]) or part["errors_logged"] > 0 or
        any(c != "connected" for c in part["connection_at_end"]),
        "recoveries": recoveries,
        "recovered_all": all(r["recovered_after_s"] is not None and
                             r["recovered_after_s"] <= RECOVER_S for r in recoveries),
        "worst_recovery_s": max((r["recovered_after_s"] for r in recoveries
                                 if r["recovered_after_s"] is not None), default=None),
        "rss_mb": {"start": round(float(rss[0]), 1), "after_warmup": round(
            float(np.median(rss[after])), 1) if after.any() else None,
                   "end": round(float(rss[-1]), 1), "max": round(float(rss.max()), 1),
                   "growth_after_warmup": round(growth, 1),
                   "slope_mb_per_hour": round(slope, 1), "warmup_s": warm},
        "rss_ok": bool(growth < RSS_GROWTH_MB),
        "fds": {"after_warmup": int(fds[after].max()) if after.any() else None,
                "end": int(fds[-1]), "max": int(fds.max()), "min": int(fds.min())},
        "fps_steady": {"median": round(float(np.median(steady)), 1) if len(steady) else None,
                       "p5": round(float(np.percentile(steady, 5)), 1) if len(steady)
                       else None},
        "latency_ms_steady": pct(lat),
        "av_offset_ms_steady": pct(av),
        "psnr_db": {"mean_steady": round(float(np.mean(q)), 2) if q else None,
                    "p5_steady": round(float(np.percentile(q, 5)), 2) if q else None,
                    "mean_all": round(float(np.mean(q_all)), 2) if q_all else None,
                    "basis_only_mean": round(float(np.mean(q_basis)), 2) if q_basis
                    else None,
                    "basis_only_steady": round(float(np.mean(q_basis_steady)), 2)
                    if q_basis_steady else None,
                    "samples": len(q_all)},
    }
    out["fds_ok"] = out["fds"]["after_warmup"] is not None and \
        out["fds"]["end"] <= out["fds"]["after_warmup"]
    out["quality_ok"] = (out["psnr_db"]["mean_steady"] or 0.0) >= PSNR_DB if q else None
    return out


def pct(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p5": None, "p50": None, "p95": None, "n": 0}
    a = np.asarray(values, np.float64)
    return {"p5": round(float(np.percentile(a, 5)), 1),
            "p50": round(float(np.percentile(a, 50)), 1),
            "p95": round(float(np.percentile(a, 95)), 1), "n": int(len(a))}


def trimmed(part: dict[str, Any]) -> dict[str, Any]:
    """The call without the 4 Hz ticks far from any outage (kept: 2 s before each to 15 s
    after its end, what its recovery was read from)."""
    keep = [tk for tk in part.get("ticks", []) if any(
        s - 2.0 <= tk[0] <= s + d + 15.0 for s, d in part["outages_s"])]
    return {**part, "ticks": keep}


def run_part(mode: str, seconds: float, path: Path, driver_frames: int = DRIVER_FRAMES
             ) -> None:
    """One call in this process (nothing else in it: its RSS and its pauses are the
    call's own, as in a user's ``avatar-cam call``), written with its assessment."""
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("GLOG_minloglevel", "2")
    part = asyncio.run(call(mode, seconds, driver_frames=driver_frames))
    part["assessment"] = assess(part)
    path.write_text(json.dumps(part) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--mode", choices=("both", *MODES), default="both")
    ap.add_argument("--part-json", type=Path, help="(one mode) where to write its call")
    ap.add_argument("--driver-frames", type=int, default=DRIVER_FRAMES,
                    help="(one mode) frames of footage tracked for the replayed driver")
    ap.add_argument("--no-readme", dest="readme", action="store_false")
    ap.add_argument("--table", action="store_true",
                    help="rebuild the README section and plot from results/soak.json")
    args = ap.parse_args()
    from _soak_report import notes, plot, table

    if args.table:
        data = json.loads((RESULTS / "soak.json").read_text())
        data["notes"] = notes(data)
        plot(RESULTS / "soak.png", data)
        write("soak", data, table(data), readme=args.readme)
        return
    seconds = args.minutes * 60.0
    if args.mode != "both":
        path = args.part_json or RESULTS / f"soak_{args.mode}.json"
        run_part(args.mode, seconds, path, args.driver_frames)
        print(json.dumps(json.loads(path.read_text())["assessment"], indent=1))
        return
    load = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        procs = {m: subprocess.Popen([sys.executable, __file__, "--minutes", str(args.minutes),
                                      "--mode", m, "--part-json", str(Path(tmp) / f"{m}.json")])
                 for m in MODES}
        codes = {m: p.wait() for m, p in procs.items()}
        parts = {}
        for m in MODES:
            f = Path(tmp) / f"{m}.json"
            parts[m] = trimmed(json.loads(f.read_text())) if f.exists() else \
                {"mode": m, "exit_code": codes[m]}
    data = {"machine": machine(), "load_average_at_start": round(load, 2),
            "started": started, "minutes": args.minutes, "fps": FPS, "out_size": list(OUT),
            "faults": faults().describe(), "outage_s": OUTAGE_S,
            "targets": {"recover_s": RECOVER_S, "recover_share": RECOVER_SHARE,
                        "rss_growth_mb": RSS_GROWTH_MB, "psnr_db": PSNR_DB},
            "exit_codes": codes, "calls": parts}
    data["notes"] = notes(data)
    plot(RESULTS / "soak.png", data)
    write("soak", data, table(data), readme=args.readme)


if __name__ == "__main__":
    main()

