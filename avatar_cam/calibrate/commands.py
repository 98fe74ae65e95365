"""argparse wiring for `calibrate`, `evaluate`, `metatrain` and `prepare`.

``add_parsers(subparsers)`` adds the four commands; each handler takes the parsed
arguments and returns an exit status (user errors are raised as AvatarCamError for the
CLI to print). Outputs are written to a temporary sibling folder and renamed into place,
so an interrupted or failed run never leaves a half-written calibration/<name>.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..argtypes import float_in, int_in
from ..errors import AvatarCamError, ImageError
from ..person import Person, calibration_root, check_name, person_dir, save_person

if TYPE_CHECKING:
    from ..bank import Bank

log = logging.getLogger("avatar_cam")
POSITIVE = int_in(1, 10**9, "value")
PHOTO_NO_TRAIN = ("no generator trained: from photos it could only learn the warp "
                  "renderer's own renders")


def add_parsers(sub: Any) -> None:
    """Add calibrate, evaluate, metatrain and prepare to an argparse subparsers object."""
    cal = sub.add_parser("calibrate", help="enroll a person and train their generator")
    cal.add_argument("name", help="the person's name (letters, digits, _ - .)")
    src = cal.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="a clip of the person (10-60 s is ideal)")
    src.add_argument("--camera", help="record from this webcam index or device")
    src.add_argument("--images", type=Path, nargs="+", metavar="PHOTO", help="1-8 photos")
    # A maximum: the guided capture stops once it has recorded everything it prompts for;
    # 30 s leaves a person about 2-3 s a prompt (nine of them, the talk included).
    cal.add_argument("--seconds", type=float_in(3.0, 600.0, "--seconds"), default=30.0,
                     help="--camera: the most to record, in seconds (default 30); it stops "
                          "earlier once the prompts have recorded every pose and expression "
                          "and a few seconds of talking")
    cal.add_argument("--who", type=int_in(0, 99, "--who"), default=0, metavar="N",
                     help="a clip showing several people: train on person N (0: the one "
                          "in the most frames; told apart by face colour)")
    cal.add_argument("--consent", required=True, metavar="STATEMENT",
                     help="who is pictured and that they agree; signed into the model")
    cal.add_argument("--owner", help="owner named in the signed model (default: your login)")
    cal.add_argument("--no-train", action="store_true",
                     help="enroll for the warp renderer, train nothing (photos: the "
                          "default)")
    cal.add_argument("--train", action="store_true",
                     help="photos: train a generator anyway (it learns the warp renderer's "
                          "own renders of the photo, so it draws what the warp renderer "
                          "draws, slower; for development)")
    _train_args(cal)
    cal.add_argument("--workers", type=int_in(0, 64, "--workers"), metavar="N",
                     help="processes that make training batches (default: none on a CPU, "
                          "the cores but one, up to 8, on a GPU)")
    cal.add_argument("--renders", type=POSITIVE, default=400,
                     help="photos: warp renders to train on (400)")
    cal.add_argument("--references", choices=("scenes", "photo"), default="scenes",
                     help="a clip: what each training frame's warp render is made from: a "
                          "frame of its own scene, lit like it (default), or the photo")
    cal.add_argument("--init", type=Path, help="meta-learned checkpoint from `metatrain`")
    cal.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from calibration/.NAME.work")
    cal.add_argument("--perceptual", type=Path,
                     help="optional local VGG19 safetensors for a perceptual loss")

    ev = sub.add_parser("evaluate", help="measure an enrolled person's generator")
    ev.add_argument("name")
    ev.add_argument("--video", type=Path, help="evaluate on this clip instead of held-out")
    ev.add_argument("--json", type=Path, help="write the figures here")
    ev.add_argument("--png", type=Path, help="side-by-side image (default next to the JSON "
                                             "or calibration/NAME/evaluation.png)")
    ev.add_argument("--device", default="cpu")

    mt = sub.add_parser("metatrain", help="meta-learn an --init checkpoint on many people")
    mt.add_argument("dataset", type=Path, help="a folder made by `avatar-cam prepare`")
    mt.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    mt.add_argument("--shots", type=POSITIVE, default=8, help="K frames per episode (8)")
    _train_args(mt)

    pr = sub.add_parser("prepare", help="mp4s (VIDEOS/PERSON/*.mp4) -> metatrain dataset")
    pr.add_argument("videos", type=Path)
    pr.add_argument("dataset", type=Path)
    pr.add_argument("--resolution", type=int, choices=(64, 128, 256, 512), default=256)


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=POSITIVE, default=1500, help="training steps (1500)")
    p.add_argument("--batch", type=POSITIVE, default=8)
    p.add_argument("--resolution", type=int, choices=(64, 128, 256, 512), default=256)
    p.add_argument("--variant", choices=("realtime", "full"), default="realtime",
                   help="realtime: the CPU-budget generator; full: the paper-sized one")
    p.add_argument("--condition", choices=("sketch+warp", "sketch"), default="sketch+warp",
                   help="what G sees: the sketch and the warp render of your photo "
                        "(default: sharper, trains faster) or the sketch alone (the paper's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--eval-every", type=POSITIVE, default=50)
    p.add_argument("--patience", type=POSITIVE, default=6)
    p.add_argument("--preview-every", type=POSITIVE, default=100)
    p.add_argument("--adv-start", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests


def model_config(args: argparse.Namespace) -> Any:
    from ..model.config import ModelConfig, full_config, tiny_config

    condition = getattr(args, "condition", "sketch")
    if getattr(args, "tiny", False):
        return tiny_config(args.resolution, args.variant, condition)
    if args.variant == "full":
        return full_config(args.resolution, condition)
    return ModelConfig(resolution=args.resolution, condition=condition)


def train_config(args: argparse.Namespace) -> Any:
    from .train_common import TrainConfig

    return TrainConfig(steps=args.steps, batch=args.batch, eval_every=args.eval_every,
                       patience=args.patience, preview_every=args.preview_every,
                       checkpoint_every=args.preview_every, adv_start=args.adv_start,
                       seed=args.seed, workers=getattr(args, "workers", None))


def calibrate(args: argparse.Namespace) -> int:
    """`avatar-cam calibrate`: data -> training -> calibration/NAME, atomically."""
    from ..tracking import HandFinder, MediaPipeTracker
    from .camera import check_consent, liveness_record, record_camera
    from .dataset import photo_index, prepare_scanned, read_video, split, widen_photos
    from .ingest import enroll_photos
    from .novelty import judge
    from .scan import MIN_SEGMENT, default_workers, scan_video
    from .scenes import Scenes
    from .scenes import find as find_scenes
    from .train import fit

    name = check_name(args.name)
    root = calibration_root()
    if args.images is not None and len(args.images) > 8:
        raise ImageError(f"{len(args.images)} photos given", "use 1 to 8 photos, or a clip")
    consent, owner = check_consent(args.consent), args.owner or getpass.getuser()
    kind = "images" if args.images is not None else \
        "video" if args.video is not None else "camera"
    liveness = liveness_record(kind)

    sequences: list[np.ndarray] = []  # the clip's own landmarks, for the codec basis
    banks: list[Bank] = []  # a clip's reference bank (render/bank.py), signed with the rest
    scenes: Scenes | None = None  # a clip's: the warp reference of each scene

    def sign(folder: Path) -> object:
        """Last step in the build folder: a clip's reference bank and the landmark
        codec's basis, then the signature (which covers every file, so nothing may be
        added after it)."""
        from ..bank import save_bank
        from ..honesty.signing import sign_model
        from ..webrtc.basis import save_basis
        from ..webrtc.enroll import learn_basis

        for bank in banks:
            save_bank(bank, folder)
        size = (person.crop_size, person.crop_size)
        save_basis(learn_basis(person.neutral, size, sequences or None), folder)
        return sign_model(folder, owner, consent, liveness=liveness)

    cfg, tc = model_config(args), train_config(args)
    if args.train and args.no_train:
        raise AvatarCamError("--train and --no-train both given", "pick one")
    if args.train and args.images is None:
        raise AvatarCamError("--train is for photos", "a clip always trains; leave it out")
    started = time.monotonic()
    if args.images is not None:
        with MediaPipeTracker(static=True, smoothing=None) as tracker:
            person = enroll_photos(name, args.images, tracker.track)
        person.meta.update(owner=owner, consent=consent, **liveness)
        if not args.train:
            # From photos a generator's only targets are warp renders of the photo: it can
            # learn to draw what the warp renderer draws and nothing more (benchmarks/
            # one_photo.py measures the shipped photo-trained demo against the warp
            # renderer on real drivers), so none is trained and nobody waits for it.
            return _enroll_untrained(person, started, PHOTO_NO_TRAIN, sign,
                                     "; a clip trains one that learns from your real frames:"
                                     " --video or --camera")
        train, held = widen_photos(person, cfg.resolution, count=args.renders, seed=args.seed)
        val, test = held.take(slice(0, 16)), held.take(slice(16, None))
        source: dict[str, Any] = {"kind": "images", "files": [p.name for p in args.images],
                                  "renders": len(train)}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            video = args.video or record_camera(args.camera, args.seconds, Path(tmp))
            frames = read_video(video)
            workers = default_workers()
            log.info("tracking %s (one process per %d frames, up to %d)", video,
                     MIN_SEGMENT, workers)
            scanned = scan_video(video, workers)
            with HandFinder() as hands:
                clip, affine, photo = prepare_scanned(frames, scanned, cfg.resolution,
                                                      str(video), args.who, hands.covers)
        if clip.stats["people"] > 1:
            log.warning("%s shows %d people; training on person %d (%d frames), leaving out "
                        "%d frames of the others (--who picks another)", video,
                        clip.stats["people"], args.who, len(clip), clip.stats["other_people"])
        if clip.stats["hand_covered"]:
            log.info("left out %d frames with a hand over the face (%d frames judged)",
                     clip.stats["hand_covered"], clip.stats["hands_judged"])
        if clip.stats["photo_passed_over"]:
            log.info("photo: frame %d (passed over %d more frontal ones with a hand over "
                     "the face)", clip.stats["photo_frame"], clip.stats["photo_passed_over"])
        i = photo_index(clip)
        person = Person(name, person_dir(name, root), photo, clip.crops[i], clip.points[i],
                        affine, {"created": _now(), "sources": [Path(video).name],
                                 "warp_source": f"frame {clip.stats['photo_frame']}",
                                 "owner": owner, "consent": consent, **liveness})
        train, val, test = split(clip)
        banks.append(_bank(clip, i, len(test)))
        person.meta["bank"] = {"frames": len(banks[0]), "missing": list(banks[0].missing)}
        if args.references == "scenes" and cfg.warp:
            scenes = find_scenes(clip, train, (person.crop, person.neutral),
                                 clip.stats["photo_frame"])
            log.info("%d scene(s): training frames warp a frame of their own scene",
                     len(scenes))
        if clip.points.shape[1:] == (478, 3):
            sequences.append(clip.points)
        if args.no_train:
            return _enroll_untrained(person, started, "--no-train", sign)
        source = {"kind": "camera" if args.video is None else "video",
                  "file": Path(video).name, **clip.stats,
                  "split": {"train": len(train), "val": len(val), "held_out": len(test),
                            "rule": "held-out = last 20% of usable frames (contiguous); "
                                    "val = every 10th frame before it (early stopping)"}}
        source["split"]["rest_in_training"] = judge(train, test, args.device, log)
    work = root / f".{name}.work"
    if work.exists() and not args.resume:
        shutil.rmtree(work)
    log.info("training %s: %d frames, %d validation, %d held out, %s %dpx, up to %d steps",
             name, len(train), len(val), len(test), cfg.variant, cfg.resolution, tc.steps)
    result = fit(cfg, train, val, tc, device=args.device, init=args.init, work=work,
                 perceptual=args.perceptual, reference=(person.crop, person.neutral),
                 log=log.info, scenes=scenes)
    figures = {"steps": result.steps_run, "best_step": result.best_step,
               "best_val_ssim": round(result.best_val_ssim, 4),
               "stopped_early": result.stopped_early, "seconds": round(result.seconds, 1),
               "seconds_per_step": round(result.seconds_per_step, 3),
               "batch": tc.batch, "device": args.device, "init": bool(args.init),
               "references": "photo" if scenes is None else f"{len(scenes)} scene(s)",
               "history": result.history}
    folder = write_enrollment(person, result.generator, test, figures, source, asdict(tc),
                              root, work / "preview.png", sign=sign)
    shutil.rmtree(work, ignore_errors=True)
    log.info("enrolled %s into %s (best validation SSIM %.3f at step %d)", name, folder,
             result.best_val_ssim, result.best_step)
    return 0


def _enroll_untrained(person: Person, started: float, why: str,
                      sign: Callable[[Path], object], hint: str = "") -> int:
    """Save ``person`` for the warp renderer, recording how long enrolling took (from
    ``started``, a time.monotonic()) and why nothing was trained."""
    seconds = round(time.monotonic() - started, 1)
    person.meta["enrollment"] = {"trained": False, "seconds": seconds, "why": why}
    log.info("enrolled %s for the warp renderer in %.0f s into %s (%s%s)", person.name,
             seconds, save_person(person, sign=sign), why, hint)
    return 0


def _bank(clip: Any, photo: int, held_out: int) -> Bank:
    """The reference bank of ``clip`` (photo at index ``photo``), chosen from the frames
    before its last ``held_out`` (held out for `evaluate`, never in the bank)."""
    from ..bank import build_bank

    before = len(clip) - held_out
    keep = np.arange(before) if photo < before else np.append(np.arange(before), photo)
    at = int(np.flatnonzero(keep == photo)[0])
    bank = build_bank(clip.crops[keep], clip.points[keep], photo=at, frames=clip.index[keep])
    log.info("reference bank: %d of the clip's frames%s", len(bank),
             f" (it lacks: {'; '.join(bank.missing)})" if bank.missing else "")
    return bank


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_enrollment(person: Person, generator: Any, held_out: Any, figures: dict[str, Any],
                     source: dict[str, Any], train_cfg: dict[str, Any], root: Path,
                     preview: Path | None = None,
                     sign: Callable[[Path], object] | None = None) -> Path:
    """person files + generator.safetensors + meta.json + heldout/ into root/NAME, built in
    a temporary folder, signed there by ``sign`` (so no unsigned model is ever in place)
    and renamed into place (an older enrollment is replaced whole)."""
    from ..model.generator import save_generator
    from ..raster import RASTER_VERSION
    from ..render.neural import GENERATOR_FILE, META_FILE
    from .dataset import save_clip

    final = person_dir(person.name, root)
    build = root / f".{person.name}.build-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    try:
        folder = save_person(replace(person, folder=build / person.name), build)
        save_generator(generator, folder / GENERATOR_FILE,
                       {"person": person.name, "rasterizer": RASTER_VERSION})
        meta = {"format": 1, "resolution": generator.cfg.resolution,
                "rasterizer": RASTER_VERSION, "model": json.loads(generator.cfg.to_json()),
                "neutral": np.round(person.neutral.astype(np.float64), 3).tolist(),
                "neutral_size": [person.crop_size, person.crop_size],
                "created": _now(), "source": source, "training": figures, "train": train_cfg}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        save_clip(held_out, folder / "heldout")
        if preview is not None and preview.is_file():
            shutil.copy(preview, folder / "preview.png")
        if sign is not None:
            sign(folder)
        if final.exists():
            old = root / f".{person.name}.old-{os.getpid()}"
            final.rename(old)
            folder.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            folder.rename(final)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return final


def evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_person

    report = evaluate_person(args.name, video=args.video, png=args.png, json_path=args.json,
                             device=args.device)
    nme = "n/a" if report["nme"] is None else f"{report['nme']:.4f}"
    log.info("%s on %s: PSNR %.2f dB, SSIM %.4f (face %.4f / rest %.4f), MS-SSIM %.4f, NME "
             "%s (face found in %.0f%%), render %.1f ms/frame; side by side: %s", args.name,
             report["on"], report["psnr"], report["ssim"], report["ssim_face"],
             report["ssim_outside"], report["ms_ssim"], nme, 100 * report["face_found"],
             report["render_ms"], report["png"])
    if report.get("rest_in_training") is not None:
        log.info("outside the face, the training frames matched the held-out slice at %.2f "
                 "at best (1 = all of it seen in training)", report["rest_in_training"])
    return 0


def metatrain(args: argparse.Namespace) -> int:
    from .metatrain import metatrain as run

    run(args.dataset, args.out, model_config(args), train_config(args), shots=args.shots,
        device=args.device, log=log.info)
    return 0


def prepare(args: argparse.Namespace) -> int:
    from .metatrain import prepare_dataset

    prepare_dataset(args.videos, args.dataset, args.resolution, log=log.info)
    return 0


HANDLERS = {"calibrate": calibrate, "evaluate": evaluate, "metatrain": metatrain,
            "prepare": prepare}


def main(argv: list[str] | None = None) -> int:
    """`python -m avatar_cam.calibrate.commands ...`: these commands without the main CLI."""
    import sys


    parser = argparse.ArgumentParser(prog="avatar-cam")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="avatar-cam: %(message)s", stream=sys.stderr)
    try:
        return HANDLERS[args.command](args)
    except AvatarCamError as exc:
        print(f"avatar-cam: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
