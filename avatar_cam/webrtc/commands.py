"""Command-line wiring of `avatar-cam serve` and `avatar-cam call` (cli.py adds them).

    sub = parser.add_subparsers(...)
    add_serve_parser(sub); add_call_parser(sub)     # each sets args.handler
    ...
    return args.handler(args)                         # an exit code

Heavy imports (aiortc, aiohttp, mediapipe) happen in the handlers, not at import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from ..argtypes import float_in, int_in, size_in

log = logging.getLogger("avatar_cam")

INVITE_TTL_S = 600.0  # a call's invitation: sent to someone who joins within minutes


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--person", default="demo", help="your enrolled person (demo)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", help="webcam index or device; default: the synthetic demo driver")
    src.add_argument("--video", type=Path, help="drive from a video file")
    p.add_argument("--loop", action="store_true", help="loop the video")
    p.add_argument("--no-track", action="store_true",
                   help="demo driver only: use its script's landmarks instead of tracking it")
    p.add_argument("--landmarks-only", action="store_true",
                   help="send landmarks (a few kbit/s) instead of video; the receiver renders")
    p.add_argument("--size", type=size_in((64, 64), (3840, 2160)), default=(640, 480),
                   help="video size (640x480)")
    p.add_argument("--fps", type=float, default=30.0, choices=(15.0, 24.0, 25.0, 30.0))
    p.add_argument("--resolution", type=int, default=384, choices=(256, 384, 512),
                   help="face render resolution (384)")
    p.add_argument("--codec", choices=("vp8", "h264"), default="vp8",
                   help="preferred video codec (vp8)")
    p.add_argument("--duration", type=float_in(1e-3, 1e7, "duration"),
                   help="stop after this many seconds")
    p.add_argument("--mic", default="default", metavar="SPEC",
                   help="your voice: default (the system's default input) | file:PATH (an "
                        "audio file played as the microphone) | none (default)")
    p.add_argument("--speaker", default="default", metavar="SPEC",
                   help="where the peer's voice plays: default | none (default)")
    p.add_argument("--opus-kbps", type=int_in(6, 96, "Opus bitrate"),
                   help="the voice's Opus bitrate in kbit/s (default: 12 with "
                        "--landmarks-only, clear speech for a bad connection; 32 with video)")
    sec = p.add_argument_group("who may join", "every listener prints an invitation URL "
                               "with an unguessable token; nothing works without it")
    sec.add_argument("--invite-ttl", type=float_in(1, 1e7, "invitation lifetime"),
                     metavar="SECONDS",
                     help="the invitation stops working after this long (call: 600; serve: "
                          "while it runs)")
    sec.add_argument("--tls-cert", type=Path, metavar="PEM",
                     help="HTTPS certificate (default: a self-signed one made on first use, "
                          "its fingerprint pinned through the invitation)")
    sec.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    sec.add_argument("--tls", action="store_true",
                     help="HTTPS even on 127.0.0.1 (elsewhere it always is)")
    net = p.add_argument_group("networks", "across NATs and firewalls (default: host "
                               "candidates only, i.e. one machine or one LAN)")
    net.add_argument("--stun", metavar="URL",
                     help="a STUN server, e.g. stun:stun.example.org:3478 (gets through most "
                          "home routers)")
    net.add_argument("--turn", metavar="URL",
                     help="a TURN server that relays the call when nothing else gets through, "
                          "e.g. turn:turn.example.org:3478 (?transport=tcp, or turns:, for "
                          "networks that block UDP)")
    net.add_argument("--turn-user", metavar="USER", help="the TURN server's user name")
    net.add_argument("--turn-pass", metavar="PASSWORD",
                     help="the TURN server's password (or set AVATAR_CAM_TURN_PASS)")
    net.add_argument("--relay-only", action="store_true",
                     help="use only relay candidates: the media always goes through the TURN "
                          "server and the peers never see each other's addresses")


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve your avatar to a browser over WebRTC (one page)")
    _common(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1; 0.0.0.0 lets the network watch, "
                        "over HTTPS, those you give the invitation)")
    p.add_argument("--port", type=int_in(0, 65535, "port"), default=8080, help="HTTP port (8080)")
    p.add_argument("--max-viewers", type=int_in(1, 64, "viewers"), default=8,
                   help="pages watching at once (8); more are told it is full")
    p.set_defaults(handler=run_serve)
    return p


def add_call_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "call", help="a call between two avatar-cam instances over WebRTC")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--listen", type=int_in(0, 65535, "port"), metavar="PORT",
                     help="wait for a call on PORT")
    how.add_argument("--connect", metavar="URL",
                     help="call the invitation URL the listener printed (quote it)")
    p.add_argument("--host", default="127.0.0.1",
                   help="with --listen: address to listen on (127.0.0.1; 0.0.0.0 for a LAN, "
                        "over HTTPS)")
    _common(p)
    p.add_argument("--bundle-frames", type=int_in(1, 8, "frames per message"), default=4,
                   help="landmark-only: landmark frames (and the voice of that time) sent "
                        "per message: fewer packets and header bytes, ~33 ms more latency "
                        "per extra frame (4: a whole call under 32 kbit/s each way)")
    p.add_argument("--peer-renderer", choices=("auto", "neural", "warp"), default="auto",
                   help="landmark-only: draw the peer with their shared generator (neural), "
                        "the warp renderer, or the generator when it keeps --fps (auto)")
    p.add_argument("--share-model", nargs="?", const="call", choices=("call", "keep"),
                   help="landmark-only: let the peer render you with your own model (your "
                        "photo, face crop and generator cross, to the invited peer only, "
                        "once the call is up). call (the default): they hold it for this "
                        "call and delete it at hang-up; keep: they may keep it for later "
                        "calls, recorded with your signature")
    p.add_argument("--sink", default="virtualcam",
                   help="where the peer's avatar goes: virtualcam[:BACKEND] | window | "
                        "file:PATH.mp4 | null (virtualcam)")
    p.add_argument("--frames", type=int, help="hang up after this many received frames")
    p.add_argument("--stats-json", type=Path, help="write the call's statistics here")
    p.set_defaults(handler=run_call)
    return p


def _ice(args: argparse.Namespace) -> Any:
    import os

    from .ice import IceServers

    return IceServers(stun=args.stun, turn=args.turn, turn_user=args.turn_user,
                      turn_pass=args.turn_pass or os.environ.get("AVATAR_CAM_TURN_PASS"),
                      relay_only=args.relay_only)


def _options(args: argparse.Namespace) -> Any:
    from .peer import PeerOptions

    share = getattr(args, "share_model", None)
    return PeerOptions(ice=_ice(args), landmarks_only=args.landmarks_only,
                       share_model=share is not None, share_keep=share == "keep",
                       fps=args.fps, out_size=args.size, resolution=args.resolution,
                       codec=args.codec, opus_kbps=args.opus_kbps,
                       bundle_frames=getattr(args, "bundle_frames", 1),
                       remote_renderer=getattr(args, "peer_renderer", "auto"))


async def _local(args: argparse.Namespace, opts: Any) -> Any:
    from .. import live
    from ..person import load_person
    from .enroll import basis_for
    from .options import workers
    from .peer import LocalAvatar

    person = await workers().run(load_person, args.person)
    basis = None
    if opts.landmarks_only:
        basis = await workers().run(basis_for, person.neutral, person.crop_size, person.folder)
    live_opts = live.LiveOptions(out_size=args.size, fps=args.fps, resolution=args.resolution,
                                 track=not (args.no_track and args.camera is None
                                            and args.video is None))
    if args.camera is None and args.video is None:
        source: Any = live.demo_source(person, args.fps, realtime=True)
    else:
        source = live.open_source(args.camera, args.video, args.fps, args.loop, realtime=True,
                                  size=(1280, 720))
    try:
        mic = open_voice_input(args.mic, loop=args.loop)
    except BaseException:
        source.close()
        raise
    try:
        return LocalAvatar(person, source, live_opts, opts, basis, mic=mic)
    except BaseException:
        source.close()
        if mic is not None:
            mic.close()
        raise


def open_voice_input(spec: str, loop: bool = False) -> Any:
    """The microphone ``--mic`` names. A file the user named must work (one clear error
    otherwise); without a default input device the call goes on without a voice, saying so."""
    from ..audio.mic import open_mic
    from ..errors import AvatarCamError

    try:
        return open_mic(spec, loop=loop)
    except AvatarCamError as exc:
        if spec != "default":
            raise
        log.warning("no microphone: %s -- the call goes on without your voice (--mic none "
                    "to silence this)", exc)
        return None


def open_voice_output(spec: str) -> Any:
    """The speaker ``--speaker`` names; without a default output device the peer's voice
    is not played, saying so (a file: sink still records it)."""
    from ..audio.speaker import open_speaker
    from ..errors import AvatarCamError

    try:
        return open_speaker(spec)
    except AvatarCamError as exc:
        if spec != "default":
            raise
        log.warning("no speaker: %s -- the peer's voice is not played (--speaker none to "
                    "silence this)", exc)
        return None


def _access(args: argparse.Namespace, one_use: bool, ttl_s: float | None) -> Any:
    from .invite import Gate
    from .signaling import Access
    from .tls import server_tls

    tls = server_tls(args.host, args.tls_cert, args.tls_key, force=args.tls)
    ttl = args.invite_ttl if args.invite_ttl is not None else ttl_s
    return Access(Gate(ttl_s=ttl, one_use=one_use), tls)


def _quiet() -> None:
    # aioice logs every connectivity check at INFO.
    logging.getLogger("aioice").setLevel(logging.WARNING)


def run_serve(args: argparse.Namespace) -> int:
    _quiet()
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from .options import configure_loop, wait_awake
    from .server import AvatarServer

    pool = configure_loop(asyncio.get_running_loop())
    opts = _options(args)
    access = _access(args, one_use=False, ttl_s=None)  # a certificate problem: said first
    local = await _local(args, opts)
    running = asyncio.ensure_future(local.run())
    speaker = open_voice_output(args.speaker)
    server = AvatarServer(local, opts, args.host, args.port, max_peers=args.max_viewers,
                          speaker=speaker, access=access)
    try:
        await server.start()
        log.info("serving %s (%s); Ctrl-C stops", args.person, opts.mode)
        print(f"Invitation (open it in a browser; anyone you give it to can watch):\n"
              f"  {server.url}", flush=True)
        if server.access.tls is not None and server.access.tls.fingerprint in server.url:
            print("  (a self-signed certificate: the browser asks once; its SHA-256 is the "
                  "fp= in the link)", flush=True)
        await wait_awake(running, args.duration)
        if running.done():
            log.info("the source ended")
    finally:
        await server.close()
        local.stop()
        await running
        if speaker is not None:
            speaker.close()
        pool.close()
    return 0


def run_call(args: argparse.Namespace) -> int:
    _quiet()
    return asyncio.run(_call(args))


async def _call(args: argparse.Namespace) -> int:
    from ..sinks import open_sink
    from .call import Until, connect, listen
    from .options import configure_loop

    pool = configure_loop(asyncio.get_running_loop())
    opts = _options(args)
    if args.share_model and not args.landmarks_only:
        log.warning("--share-model only matters with --landmarks-only; ignored")
    access = _access(args, one_use=True, ttl_s=INVITE_TTL_S) if args.listen is not None else None
    local = await _local(args, opts)
    running = asyncio.ensure_future(local.run())
    sink = speaker = None
    try:
        sink = open_sink(args.sink, args.size[0], args.size[1], args.fps)
        speaker = open_voice_output(args.speaker)
        until = Until(args.duration, args.frames)
        if args.listen is not None:
            stats = await listen(local, opts, sink, args.host, args.listen, until, speaker,
                                 access=access)
        else:
            stats = await connect(local, opts, sink, args.connect, until, speaker)
    finally:
        local.stop()
        await running
        for out in (speaker, sink):
            if out is not None:
                out.close()
        pool.close()
    stats["sent"] = dict(local.counts)
    log.info("call ended: %s", json.dumps(stats))
    if args.stats_json is not None:
        args.stats_json.parent.mkdir(parents=True, exist_ok=True)
        args.stats_json.write_text(json.dumps(stats, indent=2) + "\n")
    return 0
