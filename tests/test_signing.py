"""Signed personal models: a signed folder verifies; any change, addition, removal,
forged manifest or missing signature is refused with a clear ModelError."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from avatar_cam.errors import ModelError
from avatar_cam.honesty import signing
from avatar_cam.person import REPO_CALIBRATION


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = tmp_path / "config"
    monkeypatch.setenv("AVATAR_CAM_CONFIG", str(cfg))
    return cfg


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "calibration" / "demo"
    shutil.copytree(REPO_CALIBRATION / "demo", folder)
    (folder / signing.SIGNATURE_FILE).unlink(missing_ok=True)  # the shipped demo is signed
    (folder / "weights").mkdir()
    (folder / "weights" / "generator.bin").write_bytes(bytes(range(256)) * 10)
    return folder


def test_sign_then_verify(config: Path, model: Path) -> None:
    owner = signing.sign_model(model, owner="Eileen", consent="I enroll my own face")
    key_file = config / signing.KEY_FILE
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    checked = signing.verify_model(model)
    assert checked == owner
    assert checked.name == "Eileen" and checked.consent == "I enroll my own face"
    assert checked.is_local and checked.key_fingerprint.startswith("ed25519:")
    manifest = json.loads((model / signing.SIGNATURE_FILE).read_text())
    assert "weights/generator.bin" in manifest["files"] and "photo.png" in manifest["files"]
    assert checked.model_fingerprint == signing.model_fingerprint(model)
    assert f"{checked.model_fingerprint:06x}" in checked.describe()
    # The key is created once and reused; re-signing changes the model fingerprint
    # (a new signing time), so a watermark names this signing of the model.
    again = signing.sign_model(model)
    assert again.key_fingerprint == owner.key_fingerprint
    assert 0 <= again.model_fingerprint < 1 << 24


def test_unsigned_model_is_refused(config: Path, model: Path) -> None:
    with pytest.raises(ModelError, match="not signed"):
        signing.verify_model(model)


@pytest.mark.parametrize("change", ["edit", "add", "remove", "nested"])
def test_tampered_model_is_refused(config: Path, model: Path, change: str) -> None:
    signing.sign_model(model, owner="Eileen")
    if change == "edit":
        data = bytearray((model / "neutral.npy").read_bytes())
        data[-1] ^= 1
        (model / "neutral.npy").write_bytes(bytes(data))
        match = "changed: neutral.npy"
    elif change == "add":
        (model / "extra.png").write_bytes(b"x")
        match = "added: extra.png"
    elif change == "remove":
        (model / "crop.png").unlink()
        match = "missing: crop.png"
    else:
        (model / "weights" / "generator.bin").write_bytes(b"other weights")
        match = "changed: weights/generator.bin"
    with pytest.raises(ModelError, match=match):
        signing.verify_model(model)


def test_forged_manifest_is_refused(config: Path, model: Path) -> None:
    signing.sign_model(model, owner="Eileen")
    path = model / signing.SIGNATURE_FILE
    manifest = json.loads(path.read_text())
    manifest["owner"] = "Mallory"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="signature does not match"):
        signing.verify_model(model)
    path.write_text("{not json")
    with pytest.raises(ModelError, match="damaged signature"):
        signing.verify_model(model)


def test_someone_elses_model_verifies_but_is_not_local(
        tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_CAM_CONFIG", str(tmp_path / "alice"))
    alice = signing.sign_model(model, owner="Alice")
    monkeypatch.setenv("AVATAR_CAM_CONFIG", str(tmp_path / "bob"))
    signing.load_or_create_key()
    seen = signing.verify_model(model)
    assert seen.name == "Alice" and seen.key_fingerprint == alice.key_fingerprint
    assert not seen.is_local
    assert "Alice" in seen.describe()


def test_symlink_and_bad_key_are_refused(config: Path, model: Path, tmp_path: Path) -> None:
    (model / "link.png").symlink_to(tmp_path)
    with pytest.raises(ModelError, match="symbolic link"):
        signing.sign_model(model)
    (model / "link.png").unlink()
    config.mkdir(parents=True, exist_ok=True)
    (config / signing.KEY_FILE).write_text("not a key")
    with pytest.raises(ModelError, match="cannot read the signing key"):
        signing.sign_model(model)
    with pytest.raises(ModelError, match="does not exist"):
        signing.file_hashes(tmp_path / "nobody")


def test_liveness_and_consent_are_signed_verbatim(config: Path, model: Path) -> None:
    from avatar_cam.calibrate.camera import liveness_record

    consent = "  I am Eileen;\nthese are my photos, and I agree.  "
    owner = signing.sign_model(model, "Eileen", consent, liveness=liveness_record("video"))
    checked = signing.verify_model(model)
    assert checked == owner and checked.consent == consent  # not even stripped
    assert checked.liveness == "not verified" and "--video" in str(checked.liveness_method)
    assert "liveness: not verified" in checked.describe()
    manifest = json.loads((model / signing.SIGNATURE_FILE).read_text())
    assert manifest["liveness"] == "not verified"
    # Claiming a verified liveness by editing the manifest breaks the signature.
    manifest["liveness"] = "verified"
    (model / signing.SIGNATURE_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="does not match"):
        signing.verify_model(model)
    signing.sign_model(model, "Eileen", consent, liveness=liveness_record("camera"))
    assert signing.verify_model(model).liveness == "verified"
    signing.sign_model(model, "Eileen", consent)  # before liveness was recorded
    assert signing.verify_model(model).liveness == "not recorded"
    with pytest.raises(ValueError, match="liveness"):
        signing.sign_model(model, liveness={"liveness": "probably", "liveness_method": ""})


def test_the_badge_says_liveness_was_not_verified() -> None:
    from avatar_cam.live import LiveOptions, label_for

    for name in ("Bob", "A very long owner name indeed"):
        label = label_for(LiveOptions(), name, "not verified")
        assert label is not None and "not verified" in label.text
        assert label.box((320, 240)) is not None  # fits the smallest call picture
        plain = label_for(LiveOptions(), name, "verified")
        assert plain is not None and "verified" not in plain.text
