"""The soak benchmark's README table, the text under it and its plot, made from soak.json
alone (``soak.py --table`` rebuilds them without measuring anything)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _report import markdown_table

NAMES = {"video": "video (VP8)", "landmarks": "landmark-only, shared model"}


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return fmt.format(v) if isinstance(v, int | float) else "n/a"


def _every(minutes: float) -> str:
    period = minutes * 60 / 6
    return f"{period / 60:g} min" if period % 60 == 0 else f"{period:g} s"


def _ok(v: Any) -> str:
    return "n/a" if v is None else ("yes" if v else "NO")


def table(data: dict[str, Any]) -> str:
    tg = data["targets"]
    rows = []
    notes = []
    for mode, part in data["calls"].items():
        a = part.get("assessment")
        if a is None:
            rows.append([NAMES.get(mode, mode), f"did not finish (exit {part.get('exit_code')})"]
                        + [""] * 9)
            continue
        rec = a["recoveries"]
        rec_s = ", ".join(_f(r["recovered_after_s"], "{:.2f}") for r in rec)
        lat, av, rss = a["latency_ms_steady"], a["av_offset_ms_steady"], a["rss_mb"]
        rows.append([
            NAMES.get(mode, mode), f"{part['seconds'] / 60:.0f} min",
            "NO" if a["crashed"] else "yes",
            f"{_f(a['fps_steady']['median'])} (p5 {_f(a['fps_steady']['p5'])})",
            f"{_f(lat['p50'])} / {_f(lat['p95'])}",
            f"{_f(av['p5'])} / {_f(av['p50'])} / {_f(av['p95'])} ({av['n']})",
            f"{rec_s} ({_ok(a['recovered_all'])})",
            f"{_f(rss['growth_after_warmup'])} ({_ok(a['rss_ok'])})",
            f"{a['fds']['after_warmup']} -> {a['fds']['end']} ({_ok(a['fds_ok'])})",
            f"{_f(a['psnr_db']['mean_steady'], '{:.2f}')} ({_ok(a['quality_ok'])}; basis "
            f"alone {_f(a['psnr_db'].get('basis_only_mean'), '{:.2f}')})",
            f"{part['sender_latency_ms']['p50']} / {part['sender_latency_ms']['p95']}"])
        counts = part["relay"]
        lost = {w: counts[w]["faults"] for w in counts}
        notes.append(
            f"{NAMES.get(mode, mode)}: set up in {part['setup_s']} s; RSS {rss['start']} MB "
            f"at the faults' start, {rss['after_warmup']} MB after warm-up ({rss['warmup_s']:.0f}"
            f" s), {rss['end']} MB at the end (max {rss['max']}; fit after warm-up "
            f"{rss['slope_mb_per_hour']} MB/hour); fps before each outage "
            f"{', '.join(_f(r['fps_before']) for r in rec)}; the link each way while faulty "
            f"(datagrams seen / lost to outages / at random / reordered): " + "; ".join(
                f"{w} {c.get('seen', 0)} / {c.get('lost_outage', 0)} / "
                f"{c.get('lost_random', 0)} / {c.get('reordered', 0)}" for w, c in lost.items())
            + f"; errors logged {part['errors_logged']}"
            + (f" (first: {part['first_error']})" if part.get("first_error") else "")
            + f"; receiver renderer {part['receiver_counts'].get('remote_renderer') or 'n/a'}.")
    text = markdown_table(
        ["call", "length", "no crash", "receiver fps (steady)", "latency p50 / p95 ms",
         "A/V offset p5 / p50 / p95 ms (bursts)",
         f"recovered after each outage, s (<= {tg['recover_s']:g})",
         f"RSS growth MB (< {tg['rss_growth_mb']:g})", "open fds",
         f"PSNR dB (>= {tg['psnr_db']:g})", "sender pipeline p50 / p95 ms"], rows)
    m = data["machine"]
    text += (
        f"\n\nBoth calls ran at once, each in its own process, started {data['started']}: "
        f"{data['minutes']:g} min each after setup, {data['fps']:g} fps, "
        f"{data['out_size'][0]}x{data['out_size'][1]} frames, voice on (a 1 kHz burst every "
        f"second as the microphone). The link each way: {data['faults']}; an outage of "
        f"{data['outage_s']:g} s (every datagram dropped both ways, STUN included) every "
        f"{_every(data['minutes'])}. Receiver fps: video, frames reaching the sink; "
        f"landmarks, frames drawn from live data (playout ok or concealed; held, extrapolated"
        f" and eased frames are not counted). 'Steady' leaves out each outage from 1 s before "
        f"to {tg['recover_s'] + 1:g} s after its recovery budget. Recovered: the first 0.5 s "
        f"window after an outage's end with fps >= {tg['recover_share']:.0%} of the median of "
        f"the minute before (the time is the window's end, so it reads up to 0.5 s late). "
        f"Latency: capture to the receiver's sink (landmarks: of the sender instant drawn). "
        f"A/V offset: each burst's capture-to-speaker time less the picture's latency that "
        f"second (positive: sound after picture; target -30..+60 ms p95 is lipsync.py's). RSS"
        f" growth: median of the last 30 s less the median of the 30 s after warm-up; fds: "
        f"after warm-up -> end. PSNR (landmarks only): the landmarks the receiver drew against "
        f"the sender's at the same instant, both rendered by the sender's generator, every "
        f"2 s outside outages, composited as bandwidth.py's Scene (face square of 640x480); "
        f"'basis alone': the sender's points through the codec's expression basis and back "
        f"(no quantization, no network) on the same frames, the most a lossless link could "
        f"give. VP8's quality is bitrate's business (bandwidth.py). "
        f"Plot: results/soak.png. Machine: {m['cpu']}, {m['cores']} cores, shared (load "
        f"{data['load_average_at_start']} at start).\n\n" + "\n\n".join(notes))
    return text


def plot(path: Path, data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("fps", "receiver fps"), ("latency_ms", "picture latency ms"),
              ("av_offset_ms", "A/V offset ms\n(+: sound late)"), ("rss_mb", "RSS MB"),
              ("fds", "open fds"), ("psnr_db", "PSNR dB (landmarks)"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 13), sharex=True)
    colours = {"video": "tab:blue", "landmarks": "tab:orange"}
    minutes = data["minutes"]
    scale, unit = (60.0, "min") if minutes >= 5 else (1.0, "s")
    for mode, part in data["calls"].items():
        samples = part.get("samples")
        if not samples:
            continue
        t = np.array([s["t"] for s in samples]) / scale
        c = colours.get(mode, "k")
        for ax, (key, _) in zip(axes, panels, strict=True):
            if key == "av_offset_ms":
                xs = [s["t"] / scale for s in samples for _ in s[key]]
                ys = [v for s in samples for v in s[key]]
                ax.plot(xs, ys, ".", ms=2, color=c, label=NAMES.get(mode, mode))
                continue
            y = np.array([s.get(key) if s.get(key) is not None else np.nan for s in samples],
                         np.float64)
            if np.all(np.isnan(y)):
                continue
            style = "." if key == "psnr_db" else "-"
            ax.plot(t, y, style, lw=0.8, ms=2, color=c, label=NAMES.get(mode, mode))
            if key == "psnr_db":
                ideal = [s.get("psnr_basis_db", np.nan) for s in samples]
                ax.plot(t, ideal, "x", ms=3, color="0.4", label="basis alone (no network)")
                ax.legend(loc="lower left", fontsize=8)
        for start, duration in part.get("outages_s", []):
            for ax in axes:
                ax.axvspan(start / scale, (start + duration) / scale, color="0.8", lw=0)
    for ax, (key, _) in zip(axes, panels, strict=True):  # a stray second must not hide the rest
        if key not in ("latency_ms", "av_offset_ms"):
            continue
        vals = [v for part in data["calls"].values() for s in part.get("samples", [])
                for v in (s[key] if isinstance(s.get(key), list) else [s.get(key)])
                if v is not None]
        if len(vals) > 20:
            lo, hi = np.percentile(vals, [1, 99])
            pad = 0.15 * (hi - lo) + 10
            ax.set_ylim(lo - pad, hi + pad)
            ax.text(0.995, 0.97, "1st-99th percentile shown", transform=ax.transAxes,
                    ha="right", va="top", fontsize=7, color="0.4")
    tg = data["targets"]
    axes[2].axhspan(-30, 60, color="tab:green", alpha=0.08, lw=0)
    axes[5].axhline(tg["psnr_db"], color="tab:red", lw=0.8, ls="--")
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=8)
    axes[-1].set_xlabel(f"time since the faults started ({unit}); grey: outages")
    fig.suptitle(f"Soak: {minutes:g} min calls through {data['faults']}, a "
                 f"{data['outage_s']:g} s outage every {_every(minutes)}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
