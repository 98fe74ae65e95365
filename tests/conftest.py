"""Shared fixtures: a real photograph (scikit-image's public-domain astronaut) and a
person enrolled from it in a temporary calibration folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The user's signing key is created on first use: keep the tests' key out of ~/.config.
os.environ["AVATAR_CAM_CONFIG"] = tempfile.mkdtemp(prefix="avatar-cam-test-config-")


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


@pytest.fixture
def env_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AVATAR_CAM_HOME", str(home))
    return home
