"""Command line: `avatar-cam demo | run | calibrate | devices`.

Turns arguments into options and stages; the only place that sets up logging. A user
error ends in one line naming the problem and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import AvatarFrame

from .argtypes import float_in, int_in, size_in

log = logging.getLogger("avatar_cam")


def _add_output_args(p: argparse.ArgumentParser, default_sink: str) -> None:
    p.add_argument("--sink", default=default_sink,
                   help="virtualcam[:BACKEND] | window | file:PATH.mp4 | null "
                        f"(default {default_sink})")
    p.add_argument("--fps", type=float_in(1, 120, "fps"), default=30.0,
                   help="output frames per second (30)")
    p.add_argument("--frames", type=int_in(1, 10**9, "frames"), help="stop after N output frames")
    p.add_argument("--size", type=size_in((16, 16), (7680, 4320)), default=(1280, 720),
                   help="output size (1280x720)")
    p.add_argument("--background", choices=("photo", "blur", "plain"), default="photo",
                   help="photo (default): the enrollment photo; blur: it blurred behind the "
                        "sharp person; plain: the person on grey")
    p.add_argument("--framing", choices=("follow", "fixed"), default="follow",
                   help="follow (default): the picture follows your head about your "
                        "resting place, re-centring slowly, never cutting the head; fixed: "
                        "the head stays where the enrollment photo frames it")
    p.add_argument("--resolution", type=int, default=384, choices=(256, 384, 512),
                   help="face render resolution (384)")
    p.add_argument("--renderer", choices=("auto", "neural", "warp"), default="auto",
                   help="auto (default): the person's trained generator if they have one, "
                        "else warp; neural: insist on the generator; warp: piecewise-affine "
                        "warp of the enrollment photo, no generator")
    from .backends.runtime import GROUPS  # light: no torch or onnxruntime import

    p.add_argument("--backend", default="auto", choices=sorted(GROUPS),
                   help="neural renderer's runtime (auto: the fastest available, logged)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"),
                   help="neural renderer's precision (auto)")
    p.add_argument("--stats-json", type=Path, help="write run statistics as JSON here")
    p.add_argument("--label-corner", choices=("tl", "tr", "bl", "br"), default="br",
                   help="corner of the visible 'AI avatar' label (br)")
    p.add_argument("--label-size", type=float_in(0.02, 0.25, "label size"), default=0.045,
                   help="label height as a fraction of the frame height (0.045)")
    p.add_argument("--no-label", action="store_true",
                   help="turn the visible label off (recorded in the stats; the invisible "
                        "watermark stays)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-cam",
        description="Real-time personalized avatar: webcam -> landmarks -> your face "
                    "-> virtual camera.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="render the shipped demo identity, no webcam needed")
    _add_output_args(demo, default_sink="null")
    demo.add_argument("--out", type=Path, help="write the video here (same as --sink file:OUT)")
    demo.add_argument("--person", default="demo", help="enrolled person to show (demo)")
    demo.add_argument("--no-track", action="store_true",
                      help="drive from the script's landmarks instead of tracking its frames")

    run = sub.add_parser("run", help="drive an enrolled person from a webcam or a video")
    run.add_argument("--person", required=True, help="name given to `avatar-cam calibrate`")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", help="webcam index (0) or device path (/dev/video0)")
    src.add_argument("--video", type=Path, help="drive from a video file instead")
    run.add_argument("--loop", action="store_true", help="loop the video")
    run.add_argument("--virtual-mic", action="store_true",
                     help="also pass your microphone to a virtual one (\"avatar-cam "
                          "microphone\": pick it in Zoom/Meet/Teams), held back by the "
                          "avatar's measured latency so voice and face stay in sync (Linux: "
                          "PulseAudio/PipeWire; Windows/macOS: see the README)")
    run.add_argument("--mic", default="default", metavar="SPEC",
                     help="with --virtual-mic: default | device:NAME | file:PATH (default)")
    run.add_argument("--fast", action="store_true",
                     help="read the video as fast as possible instead of in real time")
    _add_output_args(run, default_sink="virtualcam")

    from .convert import add_parser as add_convert_parser

    add_convert_parser(sub)

    from .calibrate.commands import add_parsers as add_calibrate_parsers

    add_calibrate_parsers(sub)  # calibrate, evaluate, metatrain, prepare

    sub.add_parser("devices", help="list cameras and virtual-camera backends")

    from .honesty.verify import add_verify_args

    ver = sub.add_parser("verify", help="check a video, an image or a camera for the "
                                        "avatar-cam watermark and a file's C2PA manifest "
                                        "(exit 0 marked, 1 not, 2 error, 3 manifest invalid)")
    add_verify_args(ver)

    from .webrtc.commands import add_call_parser, add_serve_parser

    add_serve_parser(sub)
    add_call_parser(sub)

    from .backends.commands import add_parser as add_build_engine_parser

    add_build_engine_parser(sub)
    return parser


def _progress(total: int | None, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", leave=True, file=sys.stderr,
                disable=None)  # None: only on a terminal


def _voice_relay(args: argparse.Namespace, pipeline: Callable[[], Any]) -> Any:
    """``--virtual-mic``: the microphone into "avatar-cam microphone", held back by the
    picture's latency as the running pipeline measures it (``audio.relay``)."""
    if not getattr(args, "virtual_mic", False):
        return None
    from .audio.mic import open_mic
    from .audio.relay import VoiceRelay
    from .audio.virtual_mic import DESCRIPTION, VirtualMic
    from .errors import AvatarCamError

    mic = open_mic(args.mic, loop=args.loop)
    if mic is None:
        raise AvatarCamError("--virtual-mic needs a microphone", "give --mic default or "
                             "--mic file:PATH")
    try:
        out = VirtualMic()
    except BaseException:
        mic.close()
        raise
    log.info('your voice goes to the virtual microphone "%s", in step with the avatar: '
             "pick it as the microphone in Zoom, Meet or Teams", DESCRIPTION)
    return VoiceRelay(mic, out, lambda: pipeline().stats.recent_latency_ms(),
                      ready=lambda: bool(pipeline().stats.latencies_ms))


def _run_live(args: argparse.Namespace, person_name: str, source_kind: str) -> int:
    from . import live
    from .person import load_person

    person = load_person(person_name)
    sink = args.sink
    if getattr(args, "out", None) is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        sink = f"file:{args.out}"
    opts = live.LiveOptions(out_size=args.size, fps=args.fps, resolution=args.resolution,
                            background=args.background, frames=args.frames,
                            track=not getattr(args, "no_track", False),
                            renderer=args.renderer, backend=args.backend,
                            precision=args.precision, label=not args.no_label,
                            label_corner=args.label_corner, label_size=args.label_size,
                            framing=args.framing)
    if source_kind == "demo":
        source: Any = live.demo_source(person, args.fps, realtime=True)
    else:
        source = live.open_source(args.camera, args.video, args.fps, args.loop,
                                  realtime=not args.fast, size=(1280, 720))
    bar = _progress(args.frames, f"{person_name} -> {sink}")
    last_log = [time.monotonic()]
    sheet = _ContactSheet(args.frames or 300, args.fps)

    def on_frame(frame: AvatarFrame) -> None:
        sheet.offer(frame)
        bar.update(1)
        if time.monotonic() - last_log[0] > 5 and bar.disable:
            last_log[0] = time.monotonic()
            log.info("%d frames sent", pipeline.stats.frames)

    pipeline: Any = None  # built below; the voice relay reads its latency once it runs
    try:
        voice = _voice_relay(args, lambda: pipeline)
        pipeline = live.build_pipeline(person, source, sink, opts, on_frame=on_frame,
                                       voice=voice)
    except BaseException:
        source.close()
        raise
    try:
        stats = pipeline.run()
    finally:
        bar.close()
        live.close_all(pipeline)
    summary = stats.summary()
    backend = getattr(pipeline.renderer, "backend", None)
    if backend is not None:
        summary["backend"] = {"name": backend.name, "precision": backend.precision,
                              "skipped": dict(backend.skipped)}
    summary.update(person=person_name, sink=sink,
                   renderer=live.renderer_kind(person, opts.renderer),
                   resolution=opts.resolution, tracked=opts.track, label=opts.label,
                   watermark=True)
    if not opts.label:
        log.warning("the visible 'AI avatar' label was turned off (--no-label); "
                    "the invisible watermark is still in every frame")
    log.info("%d frames at %.1f fps, latency p50 %.0f ms / p95 %.0f ms, %d dropped, "
             "%d without a face", summary["frames"], summary["fps"],
             summary["latency_ms"]["p50"], summary["latency_ms"]["p95"],
             summary["dropped"], summary["no_face"])
    if args.stats_json is not None:
        args.stats_json.parent.mkdir(parents=True, exist_ok=True)
        args.stats_json.write_text(json.dumps(summary, indent=2) + "\n")
    if sink.startswith("file:"):
        preview = Path(sink[5:]).with_suffix(".png")
        if sheet.write(preview):
            log.info("wrote %s and the contact sheet %s", sink[5:], preview)
    return 0


class _ContactSheet:
    """Six frames spread over the run, tiled 3x2: a picture to look at after a run."""

    def __init__(self, frames: int, fps: float, tiles: int = 6) -> None:
        step = max(1, frames // tiles)
        self.wanted = {step // 2 + i * step for i in range(tiles)}
        self.images: list[Any] = []
        self.count = 0

    def offer(self, frame: AvatarFrame) -> None:
        if self.count in self.wanted:
            import cv2

            h, w = frame.image.shape[:2]
            self.images.append(cv2.resize(frame.image, (w * 360 // h, 360)))
        self.count += 1

    def write(self, path: Path) -> bool:
        import cv2
        import numpy as np

        if not self.images:
            return False
        blank = np.zeros_like(self.images[0])
        tiles = self.images + [blank] * (-len(self.images) % 3)
        rows = [np.hstack(tiles[i:i + 3]) for i in range(0, len(tiles), 3)]
        return bool(cv2.imwrite(str(path), np.vstack(rows)))


def _devices(_args: argparse.Namespace) -> int:
    from .capture import list_cameras
    from .sinks import virtualcam_status

    cams = list_cameras()
    print("cameras:")
    for cam in cams:
        print("  " + ", ".join(f"{k}={v}" for k, v in cam.items()))
    if not cams:
        print("  none found (a webcam shows up as /dev/video* on Linux)")
    print("virtual camera:")
    for line in virtualcam_status():
        print("  " + line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="avatar-cam: %(message)s", stream=sys.stderr)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .errors import AvatarCamError

    try:
        if args.command == "demo":
            return _run_live(args, args.person, "demo")
        if args.command == "run":
            return _run_live(args, args.person, "run")
        if args.command == "convert":
            from .convert import convert_main

            return convert_main(args)
        from .calibrate.commands import HANDLERS

        if args.command in HANDLERS:
            return int(HANDLERS[args.command](args))
        if args.command == "build-engine":
            from .backends.commands import build_engine_main

            return build_engine_main(args)
        if args.command in ("serve", "call"):
            return int(args.handler(args))
        if args.command == "verify":
            from .honesty.verify import verify_main

            return verify_main(args)
        return _devices(args)
    except AvatarCamError as exc:
        print(f"avatar-cam: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("avatar-cam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
