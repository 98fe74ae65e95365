"""An enrolled person on disk: calibration/<name>/.

Layout (version 1):
  person.json   {"version", "name", "crop_size", "crop_to_photo" (2x3 affine),
                 "photo_size" [w, h], "rasterizer", "created", "sources"}
  photo.png     the enrollment photo the warp renderer and the background come from (BGR)
  crop.png      (S, S, 3) the aligned square face crop, S = crop_size
  neutral.npy   (478, 3) float32 neutral landmarks in crop pixels (z in the same units)

Everything is validated on load: a damaged folder is a PersonError naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import PersonError
from .types import N_LANDMARKS

PERSON_FORMAT = 1
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


REPO_CALIBRATION = Path(__file__).resolve().parent.parent / "calibration"


def calibration_root() -> Path:
    """Where persons live: $AVATAR_CAM_HOME/calibration, else ./calibration."""
    home = os.environ.get("AVATAR_CAM_HOME")
    return (Path(home) if home else Path.cwd()) / "calibration"


def find_root(name: str) -> Path:
    """The calibration folder holding ``name``: the user's, else the source checkout's
    (where the shipped demo identity lives), else the user's (for a clear error)."""
    root = calibration_root()
    if not (root / name / "person.json").is_file() \
            and (REPO_CALIBRATION / name / "person.json").is_file():
        return REPO_CALIBRATION
    return root


def check_name(name: str) -> str:
    if not name or name.startswith(".") or not set(name) <= NAME_CHARS or len(name) > 64:
        raise PersonError(
            f"invalid person name {name!r}",
            "use 1-64 letters, digits, '_', '-' or '.', not starting with '.'",
        )
    return name


@dataclass(frozen=True)
class Person:
    name: str
    folder: Path
    photo: np.ndarray  # (H, W, 3) uint8 BGR
    crop: np.ndarray  # (S, S, 3) uint8 BGR
    neutral: np.ndarray  # (478, 3) float32, crop pixels
    crop_to_photo: np.ndarray  # (2, 3) float64 affine: crop pixel -> photo pixel
    meta: dict
    owner: Any = None  # honesty.signing.Owner of a verified model; None when not checked

    @property
    def crop_size(self) -> int:
        return int(self.crop.shape[0])


def person_dir(name: str, root: Path | None = None) -> Path:
    return (root or calibration_root()) / check_name(name)


def list_persons(root: Path | None = None) -> list[str]:
    base = root or calibration_root()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "person.json").is_file())


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if img is None:
        raise PersonError(f"person file {path} is missing or not an image",
                          f"re-enroll with: avatar-cam calibrate {path.parent.name} --images PHOTO")
    return img


def load_person(name: str, root: Path | None = None, verify: bool = True) -> Person:
    """Load and validate calibration/<name>/. ``verify``: check its signature first, so a
    tampered or unsigned model is refused (errors.ModelError) before anything is read."""
    root = root or find_root(check_name(name))
    folder = person_dir(name, root)
    if not (folder / "person.json").is_file():
        known = ", ".join(list_persons(root)) or "none"
        raise PersonError(
            f"unknown person {name!r} (enrolled: {known})",
            f"enroll first: avatar-cam calibrate {name} --images PHOTO",
        )
    owner = None
    if verify:
        from .honesty.signing import verify_model

        owner = verify_model(folder)
    fix = f"re-enroll with: avatar-cam calibrate {name} --images PHOTO"
    try:
        meta = json.loads((folder / "person.json").read_text())
        if not isinstance(meta, dict) or meta.get("version") != PERSON_FORMAT:
            raise ValueError(f"unsupported person format {meta.get('version')!r}")
        crop_to_photo = np.asarray(meta["crop_to_photo"], dtype=np.float64)
        if crop_to_photo.shape != (2, 3) or not np.isfinite(crop_to_photo).all():
            raise ValueError("crop_to_photo must be a finite 2x3 matrix")
        neutral = np.load(folder / "neutral.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PersonError(f"person {name!r} is damaged: {exc}", fix) from exc
    if neutral.shape != (N_LANDMARKS, 3) or not np.isfinite(neutral).all():
        raise PersonError(f"person {name!r} is damaged: neutral.npy has shape {neutral.shape}",
                          fix)
    photo = _read_image(folder / "photo.png")
    crop = _read_image(folder / "crop.png")
    if crop.shape[0] != crop.shape[1] or crop.shape[0] != int(meta.get("crop_size", -1)):
        raise PersonError(f"person {name!r} is damaged: crop.png is {crop.shape[:2]}", fix)
    return Person(name, folder, photo, crop, neutral.astype(np.float32), crop_to_photo, meta,
                  owner)


def save_person(person: Person, root: Path | None = None,
                sign: Callable[[Path], object] | None = None) -> Path:
    """Write atomically: into a temporary sibling folder (signed there by ``sign`` when
    given, so no unsigned model is ever in place), then rename over the old one."""
    final = person_dir(person.name, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{person.name}.tmp-{os.getpid()}"
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir()
    try:
        cv2.imwrite(str(tmp / "photo.png"), person.photo)
        cv2.imwrite(str(tmp / "crop.png"), person.crop)
        np.save(tmp / "neutral.npy", person.neutral.astype(np.float32), allow_pickle=False)
        meta = dict(person.meta)
        meta.update(version=PERSON_FORMAT, name=person.name, crop_size=person.crop_size,
                    crop_to_photo=person.crop_to_photo.tolist(),
                    photo_size=[int(person.photo.shape[1]), int(person.photo.shape[0])])
        (tmp / "person.json").write_text(json.dumps(meta, indent=2) + "\n")
        if sign is not None:
            sign(tmp)
        if final.exists():
            old = final.parent / f".{person.name}.old-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            _rmtree(old)
        else:
            tmp.rename(final)
    except BaseException:
        _rmtree(tmp)
        raise
    return final


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
