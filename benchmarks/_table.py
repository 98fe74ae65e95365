"""The quality benchmark's README table and the text under it, made from quality.json
alone (``quality.py --parts table`` rebuilds it without measuring anything)."""

from __future__ import annotations

from typing import Any

from _clips import clips_rows, clips_text
from _enroll import enroll_text, sixty_seconds
from _meta import meta_text
from _novelty import novelty_text
from _report import machine_line, markdown_table, met

WHO = {0: "woman", 1: "man"}  # Megamind's two people as enrollment numbers them (seen)


# Issue 3's targets and its measured baseline (the anchor), as the issue states them.
TARGET_SSIM, TARGET_NME = 0.75, 0.05  # Megamind held-out
TARGET_DEMO_NME, TARGET_DEMO_FOUND = 0.08, 0.99  # the one-photo demo, synthetic driver
TARGET_ENROLL_60S = 180.0  # a 60 s clip enrolled on a datacenter GPU, seconds
BASELINE = {"ssim": 0.69, "psnr": 19.7}  # plain U-Net, L1 + SSIM, both people, ~500 steps


def summary(data: dict[str, Any]) -> str:
    """The README section: calibrate's default runs against issue 3's targets, the warp
    renderer alone on the same split and the issue's baseline as anchors."""
    rows: list[list[Any]] = []
    mm = data.get("megamind", {})
    defaults = {k: m for k, m in mm.items() if isinstance(m, dict) and "ssim" in m
                and m.get("references", "photo") != "photo"}
    for key, m in sorted(defaults.items(), key=lambda km: km[1].get("split_kind") != "baseline"):
        ok = m["ssim"] >= TARGET_SSIM and (m.get("nme") or 0.0) <= TARGET_NME
        ceiling = (m.get("novelty") or {}).get("ceiling")
        rows.append([_case(key, m) + (f" (SSIM ceiling of the slice {ceiling:.3f})"
                                      if ceiling is not None and ceiling < TARGET_SSIM else ""),
                     f"{m['ssim']:.3f}", _f(m["warp_only"].get("ssim")),
                     f"{m['psnr']:.1f}", _f(m.get("nme")),
                     f"SSIM >= {TARGET_SSIM}, NME <= {TARGET_NME}", met(ok)])
    if defaults:
        rows.append(["anchor: the issue's baseline on its held-out frames (a plain U-Net "
                     "trained on both people)", f"{BASELINE['ssim']:.2f}", "",
                     f"{BASELINE['psnr']:.1f}", "", "", ""])
    for key, c in data.get("clips", {}).items():
        if isinstance(c, dict) and "ssim" in c and not c.get("seed"):
            rows.append([_case(key, c), f"{c['ssim']:.3f}", _f(c["warp_only"].get("ssim")),
                         f"{c['psnr']:.1f}", _f(c.get("nme")), "", ""])
    demo = data.get("demo", {})
    if "face_found" in demo:
        ok = demo["nme"] <= TARGET_DEMO_NME and demo["face_found"] >= TARGET_DEMO_FOUND
        rows.append([f"demo identity (one photo), synthetic driver, face found "
                     f"{100 * demo['face_found']:.0f}%", "", "", "", _f(demo.get("nme")),
                     f"NME <= {TARGET_DEMO_NME}, face found >= {100 * TARGET_DEMO_FOUND:.0f}%",
                     met(ok)])
    table = markdown_table(["case (held-out frames)", "SSIM", "warp renderer alone (anchor)",
                            "PSNR dB", "NME", "target", "target met"], rows)
    parts = ["Enrollment quality on real footage, held-out frames (Megamind, and real people "
             "from package registries), against issue 3's targets; every run, the seeds, the "
             "64 px comparison and the GPU timings in the JSON.", "", table]
    e = data.get("enroll", {})
    sixty = sixty_seconds(e) if e.get("machine") else None
    if sixty is not None:
        total, done = sixty
        parts += ["", f"Enrollment speed (measured {e.get('measured', '?')} on "
                  f"{e['machine'].get('gpu')}, host {e['machine']['cpu']}, "
                  f"{e['machine']['cores']} cores): a 60 s clip in {total:.0f} s"
                  f"{'' if done else ' (training extrapolated)'}; target <= "
                  f"{TARGET_ENROLL_60S:.0f} s: {met(total <= TARGET_ENROLL_60S)}."]
    parts += ["", machine_line("quality", data)]
    return "\n".join(parts)


def table(data: dict[str, Any]) -> str:
    """Every run's row and the paragraphs that explain them (``quality.py --parts detail``
    prints it)."""
    rows: list[list[Any]] = []
    mm = data.get("megamind", {})
    people = sorted(k for k in mm if k.startswith("person"))
    for key in people:
        m = mm[key]
        who = int(key[len("person"):].split("-")[0])
        first, last = m.get("frames", ["?", "?"])
        held = (f"the baseline's held-out frames ({m['split']['held_out']} of "
                f"{'-'.join(map(str, m['held_frames']))}; {m['split']['train']} train)"
                if m.get("split_kind") == "baseline" else "held-out")
        rows.append([f"Megamind {WHO.get(who, key)} ({m['clip']['usable']} frames of "
                     f"{first}-{last}), {held}, real-time G, {m['condition']}"
                     f"{_refs(m)}, seed {m.get('seed', 0)}",
                     f"{m['ssim']:.3f}", _split(m), f"{m['psnr']:.1f}", f"{m['ms_ssim']:.3f}",
                     _f(m.get("nme")), f"{100 * m['face_found']:.0f}%",
                     f"{m['seconds_per_step']:.1f} s",
                     f"{m['steps']} x {m['batch']} (best {m['best_step']})"])
        w = m["warp_only"]
        rows.append([f"Megamind {WHO.get(who, key)}, warp renderer alone (same photo, run)",
                     f"{w['ssim']:.3f}", _split(w), f"{w['psnr']:.1f}", _f(w.get("ms_ssim")),
                     _f(w.get("nme")), "", "", "untrained"])
    if people:
        rows.append(["baseline (issue): plain U-Net L1+SSIM, both people, smeared edges",
                     "0.69", "", "19.7", "", "", "", "", "~500 x 16"])
    elif mm:
        rows.append(["Megamind held-out", "skipped: " + mm.get("skipped", ""), "", "", "",
                     "", "", "", ""])
    cmp_ = data.get("compare", {})
    names = {"realtime": "real-time G, sketch+warp", "full": "full G, sketch+warp",
             "realtime-sketch": "real-time G, sketch only"}
    for key, name in names.items():
        if key in cmp_ and "ssim" in cmp_[key]:
            c = cmp_[key]
            rows.append([f"Megamind {WHO.get(cmp_.get('who', -1), '')} {cmp_['resolution']} px,"
                         f" {name} (compare)",
                         f"{c['ssim']:.3f}", _split(c), f"{c['psnr']:.1f}", f"{c['ms_ssim']:.3f}",
                         _f(c.get("nme")), f"{100 * c['face_found']:.0f}%",
                         f"{c['seconds_per_step']:.2f} s", f"{c['steps']} x {cmp_['batch']}"])
    if "warp_only" in cmp_:
        rows.append([f"Megamind {WHO.get(cmp_.get('who', -1), '')} {cmp_['resolution']} px, "
                     "warp renderer alone (compare)", f"{cmp_['warp_only']['ssim']:.3f}",
                     _split(cmp_["warp_only"]), f"{cmp_['warp_only']['psnr']:.1f}", "", "", "",
                     "", "untrained"])
    rows += clips_rows(data.get("clips", {}), _split, _f)
    demo = data.get("demo", {})
    if "face_found" in demo:
        rows.append(["demo identity, synthetic driver", "", "", "", "", _f(demo.get("nme")),
                     f"{100 * demo['face_found']:.1f}%", "", f"{demo['frames']} frames"])
    text = markdown_table(["case", "SSIM", "SSIM face / rest", "PSNR dB", "MS-SSIM", "NME",
                           "face found", "CPU s/step", "steps x batch"], rows)
    floors = ", ".join(f"{WHO.get(int(k[6:]), k)} {_f(mm[k].get('nme_real'))}"
                       for k in people if k[6:].isdigit())
    text += ("\n\nTargets: Megamind held-out SSIM >= 0.75 and NME <= 0.05; demo NME <= 0.08 "
             "with a face found in >= 99% of frames. NME's floor (MediaPipe on the real "
             f"held-out crops): {floors}. Megamind shows two people, a woman (frames 1-97 "
             "and 154-199) and a man (98-153 and 200-269). Enrollment keeps one person "
             "(`calibrate --who`, default the one in the most frames: the woman), so each "
             "is enrolled from their own frames: held-out = the last 20% of them "
             "(contiguous), validation every 10th frame before, the warp photo the most "
             "frontal face before the held-out slice. Crops stay inside the picture (boxes "
             "moved, or shrunk, into the frame) instead of smearing its edge pixels. The "
             "issue's baseline trained on both people with smeared edges, so it is not the "
             "same task; the warp renderer alone on the same split is the fair reference. "
             "Rows \"the baseline's held-out frames\" (`--split baseline`) hold out "
             "exactly the frames the baseline held out, the clip's last 20% (frames "
             "216-269, all of them the man), and enroll him from his frames before them "
             "(the photo chosen among those): the same test as the baseline's, with "
             "fewer training frames than it had. Rows marked \"scenes\" (calibrate's "
             "default since 2026-11-27, `--references scenes`) trained each frame on the "
             "warp render of a frame of its own scene (the photo in the photo's scene); "
             "the others on the photo's render for every frame. Both render from the "
             "photo when judged. "
             "SSIM face / rest splits each frame's SSIM map at the landmarks' convex hull "
             "(about a fifth of the crop): what landmarks drive, and the hair, neck and "
             "background they cannot.")
    verdict = targets_text(data)
    if verdict:
        text += "\n\n" + verdict
    if clips_rows(data.get("clips", {}), _split, _f):
        text += "\n\n" + clips_text()
    novelty = novelty_text(data, _case)
    if novelty:
        text += "\n\n" + novelty
    watched = watch_text(data)
    if watched:
        text += "\n\n" + watched
    sp = data.get("speed", {})
    if sp:
        text += ("\n\nGenerator at 256x256, ONNX Runtime 2 threads: real-time "
                 f"{sp['realtime']['median_ms']:.1f} ms median (p90 "
                 f"{sp['realtime']['p90_ms']:.1f}, min {sp['realtime']['min_ms']:.1f}; "
                 f"{sp['realtime']['macs'] / 1e9:.2f} GMAC), full "
                 f"{sp['full']['median_ms']:.0f} ms ({sp['full']['macs'] / 1e9:.1f} GMAC); "
                 "budget 20 ms.")
        if "conditioning_ms" in sp:
            text += (f" Making its input (sketch + warp render at 256, the demo identity) "
                     f"takes {sp['conditioning_ms']:.1f} ms more, on the renderer's thread.")
    first = mm[people[0]] if people else {}
    if "runs" in data.get("enroll", {}):
        text += "\n\n" + enroll_text(data["enroll"])
    elif "projection" in first:
        p = first["projection"]
        text += (f"\n\nDatacenter GPU: not measured (no GPU was available). Projection, "
                 f"compute-bound lower bound only: {p['train_gflop_per_image']} GFLOP per "
                 f"training image; at an assumed {p['assumed_tflops']:.0f} TFLOP/s effective, "
                 f"~{p['projected_images_per_s']} images/s (the U-Net baseline: 830/s on an "
                 f"H200), so data loading, not arithmetic, would bound a 60 s clip's enrollment."
                 f" CPU here: {first['seconds_per_step']:.1f} s per step of {first['batch']} "
                 f"(mean over the run, shared cores).")
    if "runs" in data.get("metatrain", {}):
        text += "\n\n" + meta_text(data["metatrain"])
    text += f"\n\nMachine: {data.get('machine', {}).get('cpu', '?')}, 2 cores shared with " \
            "other jobs (timings are upper bounds)."
    return text


def targets_text(data: dict[str, Any]) -> str:
    """The SSIM targets against the runs made with calibrate's defaults (scenes): the
    baseline's own test frames, and each Megamind person's own split with its ceiling."""
    mm = data.get("megamind", {})
    runs = {k: m for k, m in mm.items() if isinstance(m, dict) and "ssim" in m
            and m.get("references", "photo") != "photo"}
    base = [f"{m['ssim']:.3f} (seed {m.get('seed', 0)})" for m in runs.values()
            if m.get("split_kind") == "baseline"]
    if not base:
        return ""
    own = []
    for k, m in runs.items():
        n = m.get("novelty") or {}
        if m.get("split_kind") != "baseline" and "ceiling" in n:
            own.append(f"{WHO.get(int(k[6:].split('-')[0]), k)} {m['ssim']:.3f} "
                       f"(ceiling {n['ceiling']:.3f})")
    return ("Against the short-clip target (SSIM >= 0.75), with calibrate's defaults: on "
            "the baseline's own held-out frames " + ", ".join(base) + " (the baseline: "
            "0.69); on each person's own last 20% " + ", ".join(own) + ". A ceiling "
            "under 0.75 means that even a perfect face over the best training frame's "
            "hair, neck and background would miss the target there (see the novelty "
            "sentence below).")


def _case(key: str, m: dict[str, Any]) -> str:
    """A short name for a measured case: Megamind's person or a clip and its split."""
    seed = f", seed {m['seed']}" if m.get("seed") else ""
    if key.startswith("person"):
        base = " (the baseline's held-out frames)" if m.get("split_kind") == "baseline" else ""
        return f"Megamind {WHO.get(int(key[6:].split('-')[0]), key)}{base}{_refs(m)}{seed}"
    held = "blocks" if m.get("split_kind") == "blocks" else "last 20%"
    return f"{m.get('file', key)} ({held}{seed}{_refs(m)})"


def _refs(m: dict[str, Any]) -> str:
    """", scenes" for a run whose frames warped their own scene's reference (runs before
    2026-11-27 warped the photo: no ``references`` recorded)."""
    return ", scenes" if m.get("references", "photo") != "photo" else ""


def _split(d: dict[str, Any]) -> str:
    """SSIM inside the face (the landmarks' hull) / outside it, where measured."""
    if d.get("ssim_face") is None:
        return ""
    return f"{d['ssim_face']:.3f} / {d['ssim_outside']:.3f}"


def _f(v: Any) -> str:
    return "" if v is None else f"{v:.3f}"


def watch_text(data: dict[str, Any]) -> str:
    """What choosing the step on the validation slice cost, where the held-out SSIM was
    recorded at every evaluation (``fit(watch=...)``; runs since 2026-11-26 21:00)."""
    items = []
    for group in ("megamind", "clips"):
        for key, m in data.get(group, {}).items():
            hist = m.get("history", []) if isinstance(m, dict) else []
            seen = [h for h in hist if "watch_ssim" in h]
            if not seen:
                continue
            peak = max(seen, key=lambda h: h["watch_ssim"])
            chosen = next((h for h in seen if h["step"] == m["best_step"]), None)
            at = (f", at the step the validation slice chose ({m['best_step']}) "
                  f"{chosen['watch_ssim']:.3f}" if chosen else "")
            items.append(f"{_case(key, m)}: highest {peak['watch_ssim']:.3f} at step "
                         f"{peak['step']}{at}, at the first evaluation "
                         f"{seen[0]['watch_ssim']:.3f} (step {seen[0]['step']})")
    if not items:
        return ""
    return ("The held-out SSIM at every evaluation (recorded, never used to choose or "
            "stop; the issue's baseline reported such a peak, 0.69): " + "; ".join(items)
            + ". The judged generator is the one the validation slice chose; its SSIM above "
            "comes from evaluate, on uint8 frames, so it can differ from these in the third "
            "decimal.")
