"""How new each measured held-out slice is outside the face (part ``novelty`` of
quality.py): ``avatar_cam.calibrate.novelty.rest_in_training`` on every held-out frame of
every Megamind person and real clip measured so far, on the split it was measured with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from avatar_cam.calibrate.dataset import Clip, split
from avatar_cam.calibrate.novelty import NEAR, rest_in_training

Load = Callable[[str], tuple[Clip | None, str]]
Blocks = Callable[[Clip, str], tuple[Clip, Clip, Clip]]
Split = Callable[[Clip], tuple[Clip, Clip, Clip]]


def part_novelty(data: dict[str, Any], megamind: Load, clip: Load,
                 blocks: Blocks, baseline: Split) -> None:
    """Adds ``novelty`` to every measured Megamind run and clip in ``data`` (on the split
    it was measured with: calibrate's, ``baseline`` for a ``--split baseline`` run, or
    ``blocks`` for a ``--split blocks`` run)."""
    for key, m in data.get("megamind", {}).items():
        if not (key.startswith("person") and isinstance(m, dict) and "ssim" in m):
            continue
        c, why = megamind(key[6:].split("-")[0])
        if c is None:
            m["novelty"] = {"skipped": why}
            continue
        parts = baseline(c) if m.get("split_kind") == "baseline" else split(c)
        if len(parts[2]) == m["split"]["held_out"]:
            m["novelty"] = rest_in_training(parts[0], parts[2])
    for key, m in data.get("clips", {}).items():
        if not isinstance(m, dict) or "ssim" not in m:
            continue
        name = key.split("-")[0]  # franck60-blocks-seed1: franck60
        c, why = clip(name)
        if c is None:
            m["novelty"] = {"skipped": why}
            continue
        parts = blocks(c, name) if m.get("split_kind") == "blocks" else split(c)
        if len(parts[2]) != m["split"]["held_out"]:  # prepared differently since
            m["novelty"] = {"skipped": "the clip's preparation changed since it was measured"}
            continue
        m["novelty"] = rest_in_training(parts[0], parts[2])
        print(f"{key}: {m['novelty']['mean']:.3f}", flush=True)


def novelty_text(data: dict[str, Any], label: Callable[[str, dict[str, Any]], str]) -> str:
    """One sentence per measured case: what training shows of its held-out slice."""
    items = []
    for group in ("megamind", "clips"):
        for key, m in data.get(group, {}).items():
            n = m.get("novelty") if isinstance(m, dict) else None
            if n and "mean" in n:
                ceiling = (f"; ceiling {n['ceiling']:.3f} against {m['ssim']:.3f} measured"
                           if "ceiling" in n else "")
                outside = (f"SSIM outside the face {m['ssim_outside']:.3f}"
                           if m.get("ssim_outside") is not None else "")
                ceiling = ceiling[2:] if not outside else ceiling
                items.append(f"{label(key, m)} {n['mean']:.3f} ({outside}{ceiling})")
    if not items:
        return ""
    return ("How new each held-out slice is outside the face (part `novelty`; "
            "`avatar_cam.calibrate.novelty`, which calibrate also logs): "
            "for every held-out frame, the best SSIM outside the landmarks' hull against "
            f"the {NEAR} training frames nearest by thumbnail, averaged: "
            + "; ".join(items) + ". Low means the slice shows a posture, hair or background "
            "that training never showed, which no face-driven generator can draw. The "
            "ceiling is what a generator would score drawing the face perfectly (SSIM 1 "
            "inside the landmarks' hull, on average a fifth of the crop) and the rest as "
            "well as that best training frame: evidence, not a bound, since a generator "
            "can blend several frames and beat the single best one.")
