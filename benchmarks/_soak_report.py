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
    """The README section: what ran, one row per call against the targets, the plot, the
    machine and the JSON; the method and per-run detail are ``notes(data)``, in the JSON."""
    tg = data["targets"]
    rows = []
    for mode, part in data["calls"].items():
        a = part.get("assessment")
        if a is None:
            rows.append([NAMES.get(mode, mode), f"did not finish (exit {part.get('exit_code')})"]
                        + [""] * 8)
            continue
        lat, av, rss = a["latency_ms_steady"], a["av_offset_ms_steady"], a["rss_mb"]
        q = a["psnr_db"]
        rows.append([
            NAMES.get(mode, mode), f"{part['seconds'] / 60:.0f} min",
            "NO" if a["crashed"] else "yes",
            f"{_f(a['worst_recovery_s'], '{:.2f}')} ({_ok(a['recovered_all'])})",
            f"{_f(rss['growth_after_warmup'])} ({_ok(a['rss_ok'])})",
            f"{_f(q['mean_steady'], '{:.2f}')} ({_ok(a['quality_ok'])})"
            if q["mean_steady"] is not None else "n/a (video)",
            _f(q.get("basis_only_steady"), "{:.2f}"),
            f"{_f(a['fps_steady']['median'])} (p5 {_f(a['fps_steady']['p5'])})",
            f"{_f(lat['p50'])} / {_f(lat['p95'])}",
            f"{_f(av['p50'])} ({_f(av['p5'])} .. {_f(av['p95'])})"])
    text = markdown_table(
        ["call", "length", "no crash", f"worst recovery s (<= {tg['recover_s']:g})",
         f"RSS growth MB (< {tg['rss_growth_mb']:g})",
         f"receiver PSNR dB (>= {tg['psnr_db']:g})", "anchor: codec basis alone dB",
         "receiver fps (p5)", "latency p50 / p95 ms", "A/V offset p50 (p5 .. p95) ms"], rows)
    m = data["machine"]
    loads = [x["load"] for part in data["calls"].values() for x in part.get("samples", [])
             if "load" in x]
    over = f", median {np.median(loads):.1f} (max {max(loads):.1f}) over the run" \
        if loads else ""
    return (
        f"Two calls at once, each in its own process, through the relay's bad link "
        f"({data['faults']}; a {data['outage_s']:g} s outage every "
        f"{_every(data['minutes'])}), voice on.\n\n{text}\n\n![soak](results/soak.png)\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, load {data['load_average_at_start']} at "
        f"start{over}; started {data['started']}; method and per-call detail: "
        f"[results/soak.json](results/soak.json) (`notes`).")


def notes(data: dict[str, Any]) -> list[str]:
    """What the figures mean and each call's detail, for the JSON."""
    tg = data["targets"]
    out = [
        "Receiver fps: video, frames reaching the sink; landmarks, frames drawn from live "
        "data (playout ok or concealed; held, extrapolated and eased frames not counted).",
        f"Steady: each outage left out from 1 s before to {tg['recover_s'] + 1:g} s after its "
        "recovery budget. Recovered: the first 0.5 s window after an outage's end with fps "
        f">= {tg['recover_share']:.0%} of the median of the minute before (read up to 0.5 s "
        "late).",
        "Latency: capture to the receiver's sink (landmarks: of the sender instant drawn). "
        "A/V offset: each burst's capture-to-speaker time less the picture's latency that "
        "second (positive: sound after picture).",
        "RSS growth: median of the last 30 s less the median of the 30 s after warm-up.",
        "PSNR (landmarks only): the landmarks the receiver drew against the sender's at the "
        "same instant, both rendered by the sender's generator, every 2 s outside outages, "
        "composited as bandwidth.py's Scene; the anchor is the sender's points through the "
        "codec's basis and back (no quantization, no network): the most a lossless link "
        "could give."]
    for mode, part in data["calls"].items():
        a = part.get("assessment")
        if a is None:
            continue
        rec, rss = a["recoveries"], a["rss_mb"]
        lost = part["relay"]
        out.append(
            f"{NAMES.get(mode, mode)}: set up in {part['setup_s']} s; recoveries "
            f"{', '.join(_f(r['recovered_after_s'], '{:.2f}') for r in rec)} s after fps "
            f"{', '.join(_f(r['fps_before']) for r in rec)}"
            + (f" at load {', '.join(_f(v) for v in _loads_at(part, rec))}"
               if any(v is not None for v in _loads_at(part, rec)) else "")
            + f"; RSS {rss['start']} MB at the "
            f"faults' start, {rss['after_warmup']} after warm-up ({rss['warmup_s']:.0f} s), "
            f"{rss['end']} at the end (fit {rss['slope_mb_per_hour']} MB/hour); fds "
            f"{a['fds']['after_warmup']} -> {a['fds']['end']}; sender pipeline p50/p95 "
            f"{part['sender_latency_ms']['p50']} / {part['sender_latency_ms']['p95']} ms; "
            f"datagrams seen / lost to outages / at random / reordered: " + "; ".join(
                f"{w} {c['faults'].get('seen', 0)} / {c['faults'].get('lost_outage', 0)} / "
                f"{c['faults'].get('lost_random', 0)} / {c['faults'].get('reordered', 0)}"
                for w, c in lost.items())
            + f"; errors logged {part['errors_logged']}"
            + (f" (first: {part['first_error']})" if part.get("first_error") else "")
            + f"; receiver renderer {part['receiver_counts'].get('remote_renderer') or 'n/a'}.")
    return out


def _loads_at(part: dict[str, Any], recoveries: list[dict[str, Any]]) -> list[float | None]:
    """The machine's 1-min load average at the end of each outage (the sample nearest to
    it), None where the samples carry no load (runs before it was recorded)."""
    samples = [x for x in part.get("samples", []) if "load" in x]
    ends = {s: s + d for s, d in part["outages_s"]}
    out: list[float | None] = []
    for r in recoveries:
        end = ends.get(r["outage_start_s"])
        near = min(samples, key=lambda x: abs(x["t"] - end), default=None) \
            if end is not None else None
        out.append(near["load"] if near is not None else None)
    return out


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
