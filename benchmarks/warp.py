"""Speed of the conditioning-image rasterizer and of the warp renderer, one core.

The demo identity (calibration/demo: the astronaut, 512 px crop) is rendered at 256, 384
and 512 px for two target streams: "neutral" (its own landmarks, every frame) and
"expressive" (the motion script: talking, smiling, blinking, head turns up to ~20 degrees,
5 s at 30 fps, so every frame differs). The rasterizer draws the same streams. Per call:
the CPU time of the calling thread (one core's work; other jobs on a shared machine barely
move it) and wall time, OpenCV limited to one thread (the pipeline gives each stage its own
thread); mesh construction, done once per session, is reported beside.

    .venv/bin/python benchmarks/warp.py [--frames 150] [--threads 1] [--readme]
-> benchmarks/results/warp.json, the table on stdout (--readme: also into README.md).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import cv2
import numpy as np
from _report import HERE, machine, markdown_table, now, rebuild, section, table_arg, write

from avatar_cam import motion
from avatar_cam.person import load_person
from avatar_cam.raster import rasterize
from avatar_cam.render.warp import WarpRenderer
from avatar_cam.types import Landmarks


def timed(fn: Any, items: list[Any], repeat: int) -> dict[str, float]:
    """Per call of fn(item), over ``repeat`` passes through ``items`` after a warm-up: CPU
    time of this thread (what one core spends; other jobs on the machine barely move it)
    and wall time, in ms."""
    for item in items[:5]:
        fn(item)
    cpu, wall = [], []
    for _ in range(repeat):
        for item in items:
            c, t = time.thread_time(), time.perf_counter()
            fn(item)
            wall.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.thread_time() - c) * 1e3)
    out: dict[str, float] = {"calls": len(cpu)}
    for name, ms in (("cpu", cpu), ("wall", wall)):
        a = np.asarray(ms)
        out[f"{name}_median_ms"] = round(float(np.median(a)), 3)
        out[f"{name}_p95_ms"] = round(float(np.percentile(a, 95)), 3)
    return out


KEYS = ("cpu_median_ms", "cpu_p95_ms", "wall_median_ms", "wall_p95_ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=150, help="frames per target stream")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (1 = one core)")
    ap.add_argument("--readme", action="store_true", help="also update benchmarks/README.md")
    table_arg(ap)
    args = ap.parse_args()
    if args.table:
        rebuild("warp", summary)
        return
    cv2.setNumThreads(args.threads)

    person = load_person("demo", HERE.parent / "calibration")
    s = person.crop_size
    streams = {
        "neutral": [person.neutral] * args.frames,
        "expressive": [motion.animate(person.neutral, motion.script(i / 30.0))
                       for i in range(args.frames)],
    }
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {"rasterize": {}, "render": {}, "build_ms": {}}
    rows = []
    for res in (256, 512):
        for name, frames in streams.items():
            st = timed(lambda p, r=res: rasterize(p, (s, s), r), frames, 2)
            results["rasterize"][f"{res}/{name}"] = st
            rows.append([f"rasterize {res}", name] + [st[k] for k in KEYS])
    for res in (256, 384, 512):
        t = time.perf_counter()
        renderer = WarpRenderer(person.crop, person.neutral, res)
        results["build_ms"][str(res)] = round((time.perf_counter() - t) * 1e3, 1)
        with renderer:
            for name, frames in streams.items():
                lms = [Landmarks(i, 0, p, (s, s)) for i, p in enumerate(frames)]
                st = timed(renderer.render, lms, 1)
                results["render"][f"{res}/{name}"] = st
                rows.append([f"WarpRenderer.render {res}", name] + [st[k] for k in KEYS])
    results["machine"] = machine()
    results["opencv_threads"] = args.threads
    results["crop_size"] = s
    results["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    headers = ["stage", "targets", "CPU median ms", "CPU p95 ms", "wall median ms",
               "wall p95 ms"]
    table = markdown_table(headers, [[cell(v) for v in row] for row in rows])
    builds = ", ".join(f"{k} px {v} ms" for k, v in results["build_ms"].items())
    results["measured"] = now()
    results["notes"] = [(f"OpenCV threads: {args.threads}; {args.frames} frames per stream; the "
              f"demo identity's {s} px crop. Mesh construction (once): {builds}. Machine: "
              f"{results['machine']['cpu']}, {results['machine']['cores']} cores (shared; load "
              f"{load_before:.1f} at start).")]
    results["table"] = table
    write("warp", results, summary(results), readme=args.readme)


def summary(data: dict[str, Any]) -> str:
    """The README section, from warp.json alone (``--table``)."""
    rows = []
    for stage, label in (("rasterize", "rasterize (conditioning sketch)"),
                         ("render", "WarpRenderer.render")):
        for res in sorted({int(k.split("/")[0]) for k in data[stage]}):
            n, e = data[stage].get(f"{res}/neutral"), data[stage].get(f"{res}/expressive")
            rows.append([label, res, *(f"{x['cpu_median_ms']:.2f} / {x['cpu_p95_ms']:.2f}"
                                       if x else "" for x in (n, e))])
    return section("warp", data, f"The rasterizer and the warp renderer, ms a frame on "
                   f"{data.get('opencv_threads', '?')} OpenCV thread(s), the demo identity; "
                   "no target of its own (it is a share of the pipeline's frame budget).",
                   markdown_table(["stage", "px", "CPU ms median / p95: neutral",
                                   "expressive"], rows))


if __name__ == "__main__":
    main()
