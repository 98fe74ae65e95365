"""Command line: `avatar-cam COMMAND`.

    demo          the shipped demo identity (or any person) acting the motion script
    run           an enrolled person driven by a webcam or a video, into a virtual camera
    convert       every frame of a video file as an enrolled person, with its sound
    calibrate     enroll a person from a clip, a webcam or photos (and train a generator)
    evaluate      measure an enrolled person's generator
    metatrain     meta-learn an initial generator on many people
    prepare       clips of many people -> a metatrain dataset
    build-engine  compile a person's generator for a backend (engines/)
    devices       list cameras and virtual-camera backends
    verify        check a video, an image or a camera for the watermark and C2PA manifest
    serve         your avatar to a browser over WebRTC
    call          a call between two avatar-cam instances over WebRTC

Turns arguments into options; `demo` and `run` are built on the embedding API
(``avatar_cam.stream``), the others on their own modules' handlers. Every subcommand's
parser names its handler (``set_defaults(handler=...)``) and ``main`` calls it. The only
place that sets up logging (``--verbose``: debug lines and MediaPipe's own). A user
error ends in one line naming the problem and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audio.relay import VoiceRelay
    from .pipeline import Stats
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
    p.add_argument("--renderer", choices=("auto", "neural", "warp", "bank"), default="auto",
                   help="auto (default): the person's trained generator if they have one, "
                        "else warp; neural: insist on the generator; warp: piecewise-affine "
                        "warp of the enrollment photo, no generator; bank: the nearest of "
                        "the real frames kept from the enrollment clip, warped and blended")
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
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and MediaPipe's own log lines (hidden otherwise)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="render the shipped demo identity, no webcam needed")
    _add_output_args(demo, default_sink="null")
    demo.add_argument("--out", type=Path, help="write the video here (same as --sink file:OUT)")
    demo.add_argument("--person", default="demo", help="enrolled person to show (demo)")
    demo.add_argument("--no-track", action="store_true",
                      help="drive from the script's landmarks instead of tracking its frames")
    demo.set_defaults(handler=_demo)

    run = sub.add_parser("run", help="drive an enrolled person from a webcam or a video")
    run.add_argument("--person", required=True,
                     help="name given to `avatar-cam calibrate` (or the folder it made)")
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
    run.set_defaults(handler=_run)

    # The commands other modules define name their handlers here (serve and call name
    # their own), so that every parser carries one: main calls args.handler(args).
    from .convert import add_parser as add_convert_parser
    from .convert import convert_main

    add_convert_parser(sub)
    sub.choices["convert"].set_defaults(handler=convert_main)

    from .calibrate.commands import HANDLERS as CALIBRATE_HANDLERS
    from .calibrate.commands import add_parsers as add_calibrate_parsers

    add_calibrate_parsers(sub)  # calibrate, evaluate, metatrain, prepare
    for name, handler in CALIBRATE_HANDLERS.items():
        sub.choices[name].set_defaults(handler=handler)

    devices = sub.add_parser("devices", help="list cameras and virtual-camera backends")
    devices.set_defaults(handler=_devices)

    from .honesty.verify import add_verify_args, verify_main

    ver = sub.add_parser("verify", help="check a video, an image or a camera for the "
                                        "avatar-cam watermark and a file's C2PA manifest "
                                        "(exit 0 marked, 1 not, 2 error, 3 manifest invalid)")
    add_verify_args(ver)
    ver.set_defaults(handler=verify_main)

    from .webrtc.commands import add_call_parser, add_serve_parser

    add_serve_parser(sub)
    add_call_parser(sub)

    from .backends.commands import add_parser as add_build_engine_parser
    from .backends.commands import build_engine_main

    add_build_engine_parser(sub).set_defaults(handler=build_engine_main)
    return parser


def _progress(total: int | None, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", leave=True, file=sys.stderr,
                disable=None)  # None: only on a terminal


def _voice_relay(args: argparse.Namespace, stats: Callable[[], Stats]) -> VoiceRelay | None:
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
    return VoiceRelay(mic, out, lambda: stats().recent_latency_ms(),
                      ready=lambda: bool(stats().latencies_ms))


def _demo(args: argparse.Namespace) -> int:
    """`avatar-cam demo`: the person acting the motion script (the demo source)."""
    return _run_live(args, "demo")


def _run(args: argparse.Namespace) -> int:
    """`avatar-cam run`: the person driven by a webcam or a video file."""
    return _run_live(args, f"camera:{args.camera}" if args.camera is not None else args.video)


def _run_live(args: argparse.Namespace, source_spec: str | Path) -> int:
    import avatar_cam

    from . import live

    person = avatar_cam.open_person(args.person)
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
    source = avatar_cam.open_source(source_spec, person=person, fps=args.fps,
                                    realtime=not getattr(args, "fast", False),
                                    loop=getattr(args, "loop", False), size=(1280, 720))
    bar = _progress(args.frames, f"{person.name} -> {sink}")
    last_log = [time.monotonic()]
    sheet = _ContactSheet(args.frames or 300, args.fps)

    def on_frame(frame: AvatarFrame) -> None:
        sheet.offer(frame)
        bar.update(1)
        if time.monotonic() - last_log[0] > 5 and bar.disable:
            last_log[0] = time.monotonic()
            log.info("%d frames sent", current.stats.frames)

    try:  # the voice relay reads the run's latency once it runs
        voice = _voice_relay(args, lambda: current.stats)
    except BaseException:
        source.close()
        raise
    # The API never makes an unlabelled frame; --no-label, the user's explicit choice at
    # the command line (recorded in the stats, the watermark stays), runs the same
    # pipeline through the layer below it.
    start: Callable[..., live.LiveRun] = avatar_cam.stream if opts.label else live.LiveRun
    current = start(person, source, sink, opts, on_frame=on_frame, voice=voice)
    try:
        current.run()
    finally:
        bar.close()
    summary = current.summary()
    summary.update(person=person.name, sink=sink)
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
    if args.verbose:  # before any tracker: MediaPipe's own lines are hidden by default
        from .tracking import set_mediapipe_logging

        set_mediapipe_logging(True)
    from .errors import AvatarCamError

    try:
        return int(args.handler(args))
    except AvatarCamError as exc:
        print(f"avatar-cam: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("avatar-cam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
