"""C2PA content credentials: every recording carries a signed manifest that the c2pa
library's own Reader validates, and that fails validation once a byte of the video is
changed. Real components throughout: the real CLI and file sink write the mp4s, the
real c2pa library signs and reads them."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import c2pa
import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from avatar_cam.cli import main
from avatar_cam.errors import ModelError
from avatar_cam.honesty import credentials
from avatar_cam.honesty.c2pa_manifest import (
    ASSERTION,
    TRAINED_ALGORITHMIC_MEDIA,
    Provenance,
    provenance_of,
    read_manifest,
    sign_recording,
)
from avatar_cam.honesty.signing import load_or_create_key, model_fingerprint
from avatar_cam.person import load_person
from avatar_cam.sinks import FileSink
from avatar_cam.types import AvatarFrame

W, H, FPS = 160, 96, 30.0


@pytest.fixture(scope="module")
def demo_mp4(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`avatar-cam demo --out` for the enrolled astronaut: a real recording."""
    out = tmp_path_factory.mktemp("c2pa") / "demo.mp4"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVATAR_CAM_HOME", str(home))
        code = main(["demo", "--person", "astro", "--frames", "12", "--no-track",
                     "--size", "320x180", "--out", str(out)])
    assert code == 0
    return out


def library_read(path: Path, anchors: bytes | None = None) -> tuple[str | None, dict[str, Any]]:
    """The c2pa library's own verdict and active manifest, without any of our code."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if anchors is not None:
        settings["trust"] = {"user_anchors": anchors.decode()}
    context = c2pa.Context(c2pa.Settings.from_dict(settings))
    with path.open("rb") as stream, c2pa.Reader("video/mp4", stream, None, context) as reader:
        store = json.loads(reader.json())
        return reader.get_validation_state(), store["manifests"][store["active_manifest"]] | {
            "_results": store.get("validation_results", {})}


def failure_codes(manifest: dict[str, Any]) -> set[str]:
    return {f["code"] for f in manifest["_results"]["activeManifest"].get("failure", [])}


def assertion(manifest: dict[str, Any], label: str) -> dict[str, Any]:
    found = [a["data"] for a in manifest["assertions"] if a["label"].startswith(label)]
    assert len(found) == 1, [a["label"] for a in manifest["assertions"]]
    return found[0]


def change_a_video_byte(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    mdat = data.find(b"mdat")
    assert mdat > 0
    data[mdat + 4 + (len(data) - mdat) // 3] ^= 0x01  # one bit of the coded picture
    dst.write_bytes(bytes(data))


def write_frames(path: Path, n: int, provenance: Provenance | None = None) -> FileSink:
    sink = FileSink(path, W, H, FPS, provenance)
    with sink:
        for i in range(n):
            image = np.full((H, W, 3), (40 + 9 * i) % 256, np.uint8)
            sink.send(AvatarFrame(seq=i, t_capture_ns=time.monotonic_ns(), image=image))
    return sink


@pytest.fixture
def fresh_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config directory of its own: a new user key, no CA yet."""
    folder = tmp_path / "config"
    monkeypatch.setenv("AVATAR_CAM_CONFIG", str(folder))
    yield folder


# ---- a demo recording ------------------------------------------------------------------

def test_demo_recording_carries_a_valid_manifest(demo_mp4: Path, home: Path) -> None:
    state, manifest = library_read(demo_mp4)
    # Valid: signature and content hash check; the local CA is on no trust list, which
    # is the one failure a validator lists (and the reason "Valid", not "Trusted").
    assert state == "Valid"
    assert failure_codes(manifest) == {"signingCredential.untrusted"}
    assert manifest["signature_info"]["alg"] == "Ed25519"
    assert manifest["signature_info"]["issuer"] == credentials.CA_ORGANISATION
    created = assertion(manifest, "c2pa.actions")["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    ours = assertion(manifest, ASSERTION)
    astro = home / "calibration" / "astro"
    assert ours["model_fingerprint"] == f"{model_fingerprint(astro):06x}"
    assert ours["person"] == "astro" and ours["owner"] == "astro"
    assert ours["owner_key"].startswith("ed25519:") and ours["liveness"] == "not verified"
    # The recording is still an ordinary video.
    cap = cv2.VideoCapture(str(demo_mp4))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and cap.read()[0]
    cap.release()


def test_the_local_ca_makes_it_trusted_where_it_is_trusted(demo_mp4: Path) -> None:
    anchor = (credentials.config_dir() / credentials.CA_CERT_FILE).read_bytes()
    state, manifest = library_read(demo_mp4, anchor)
    assert state == "Trusted" and failure_codes(manifest) == set()
    report = read_manifest(demo_mp4, [credentials.config_dir() / credentials.CA_CERT_FILE])
    assert report.trusted and report.valid and report.signed_here


def test_a_changed_byte_fails_validation(demo_mp4: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.mp4"
    change_a_video_byte(demo_mp4, tampered)
    state, manifest = library_read(tampered)
    assert state == "Invalid"
    assert "assertion.bmffHash.mismatch" in failure_codes(manifest)
    report = read_manifest(tampered)
    assert report.present and not report.valid and report.failed
    assert any(f.startswith("assertion.bmffHash.mismatch") for f in report.failures)


def test_our_reader_agrees_with_the_library(demo_mp4: Path, home: Path) -> None:
    report = read_manifest(demo_mp4)
    assert report.present and report.valid and not report.trusted and not report.failures
    assert report.state == "Valid" and report.signed_here and report.avatar_cam
    assert report.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert report.model_fingerprint == f"{model_fingerprint(home / 'calibration/astro'):06x}"
    assert report.owner == "astro" and report.liveness == "not verified"
    assert report.signer is not None and report.signer.startswith("avatar-cam key ed25519:")


# ---- the file sink ---------------------------------------------------------------------

def test_every_file_sink_signs_even_without_a_person(tmp_path: Path) -> None:
    path = tmp_path / "call.mp4"
    sink = write_frames(path, 5)
    assert sink.manifest_error is None
    state, manifest = library_read(path)
    assert state == "Valid"
    ours = assertion(manifest, ASSERTION)
    assert ours["person"] is None and ours["model_fingerprint"] is None
    assert ours["liveness"] == "not verified"


def test_a_file_with_no_frames_gets_no_manifest(tmp_path: Path) -> None:
    sink = write_frames(tmp_path / "empty.mp4", 0)
    assert sink.manifest_error is None and sink.frames_sent == 0
    assert not read_manifest(tmp_path / "empty.mp4").present


def test_a_failed_signature_keeps_the_recording(fresh_config: Path, tmp_path: Path) -> None:
    fresh_config.mkdir(parents=True)
    (fresh_config / credentials.ORGANISATION_CHAIN_FILE).write_text("not a certificate")
    path = tmp_path / "kept.mp4"
    sink = write_frames(path, 4)
    assert sink.manifest_error is not None and "organisation certificate" in sink.manifest_error
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    assert not read_manifest(path).present
    assert not list(tmp_path.glob(".*c2pa*"))  # no temporary file left behind


# ---- provenance ------------------------------------------------------------------------

def test_liveness_comes_from_the_signed_metadata(home: Path) -> None:
    person = load_person("astro", home / "calibration")
    assert provenance_of(person).liveness == "not verified"  # enrolled from a photo
    for value, expected in (("verified", "verified"), ("yes", "not verified"),
                            (None, "not verified")):
        changed = dataclasses.replace(person, meta={**person.meta, "liveness": value})
        assert provenance_of(changed).liveness == expected
    # The signature's record (signing.Owner.liveness) comes first; "not recorded", a
    # model signed before it was kept, claims nothing.
    for recorded, expected in (("verified", "verified"), ("not recorded", "not verified")):
        owner = types.SimpleNamespace(name="astro", key_fingerprint="ed25519:00",
                                      liveness=recorded)
        assert provenance_of(dataclasses.replace(person, owner=owner)).liveness == expected
    with pytest.raises(ValueError, match="liveness"):
        Provenance(liveness="probably")


def test_manifest_names_a_verified_liveness(tmp_path: Path) -> None:
    path = tmp_path / "live.mp4"
    write_frames(path, 3, Provenance(person="bob", model_fingerprint="abcdef", owner="Bob",
                                     owner_key="ed25519:0123456789abcdef", liveness="verified"))
    ours = assertion(library_read(path)[1], ASSERTION)
    assert ours["liveness"] == "verified" and ours["model_fingerprint"] == "abcdef"


# ---- certificates ----------------------------------------------------------------------

def _leaf_for(public: Any, issuer_key: Ed25519PrivateKey, issuer: x509.Name, *,
              self_signed: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Alice Example"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp")])
    return (x509.CertificateBuilder().subject_name(subject)
            .issuer_name(subject if self_signed else issuer).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                         False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .sign(issuer_key, None))


def _org_root() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp Root"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp")])
    now = datetime.datetime.now(datetime.UTC)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=900))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, None))
    return key, root


def test_the_library_refuses_a_self_signed_leaf(fresh_config: Path, tmp_path: Path) -> None:
    """Why the local CA exists: c2pa will not sign with a self-signed certificate."""
    user = load_or_create_key()
    leaf = _leaf_for(user.public_key(), user, x509.Name([]), self_signed=True)
    pem = user.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path = tmp_path / "plain.mp4"
    write_frames(path, 2)
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
        c2pa.C2paSigningAlg.ED25519, leaf.public_bytes(serialization.Encoding.PEM), pem, None))
    builder = c2pa.Builder({"claim_generator_info": [{"name": "test"}], "assertions": []})
    with pytest.raises(c2pa.C2paError), path.open("rb") as src, \
            (tmp_path / "out.mp4").open("w+b") as dst:
        builder.sign(signer, "video/mp4", src, dst)


def test_the_signing_certificate_is_the_users_key(fresh_config: Path) -> None:
    creds = credentials.signing_credentials()
    chain = x509.load_pem_x509_certificates(creds.chain_pem)
    user = load_or_create_key()
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert chain[0].public_key().public_bytes(*raw) == user.public_key().public_bytes(*raw)
    assert chain[0].issuer == chain[1].subject and chain[1].issuer == chain[1].subject
    assert creds.source == "local CA" and creds.serial == chain[0].serial_number
    ca_key = fresh_config / credentials.CA_KEY_FILE
    assert ca_key.is_file() and (ca_key.stat().st_mode & 0o777) == 0o600
    # Reused while it lasts; renewed (same CA) once it is within a month of its end.
    assert credentials.signing_credentials().serial == creds.serial
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=350)
    renewed = credentials.signing_credentials(now=later)
    assert renewed.serial != creds.serial
    assert x509.load_pem_x509_certificates(renewed.chain_pem)[1] == chain[1]


def test_an_organisation_certificate_is_used_and_trusted(fresh_config: Path,
                                                         tmp_path: Path) -> None:
    user = load_or_create_key()
    org_key, root = _org_root()
    leaf = _leaf_for(user.public_key(), org_key, root.subject)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
    (fresh_config / credentials.ORGANISATION_CHAIN_FILE).write_bytes(chain)
    path = tmp_path / "org.mp4"
    assert write_frames(path, 3).manifest_error is None
    root_pem = root.public_bytes(serialization.Encoding.PEM)
    state, manifest = library_read(path)
    assert state == "Valid" and manifest["signature_info"]["issuer"] == "Example Corp"
    assert library_read(path, root_pem)[0] == "Trusted"
    anchors = tmp_path / "example-root.pem"
    anchors.write_bytes(root_pem)
    report = read_manifest(path, [anchors])
    assert report.trusted and report.signer == "Alice Example" and report.signed_here


def test_an_organisation_certificate_for_another_key_is_refused(fresh_config: Path) -> None:
    load_or_create_key()
    org_key, root = _org_root()
    other = Ed25519PrivateKey.generate().public_key()
    (fresh_config / credentials.ORGANISATION_CHAIN_FILE).write_bytes(
        _leaf_for(other, org_key, root.subject).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ModelError, match="not for this user's key"):
        credentials.signing_credentials()


# ---- untrusted input -------------------------------------------------------------------

def test_damaged_files_give_a_report_not_a_crash(demo_mp4: Path, tmp_path: Path) -> None:
    data = demo_mp4.read_bytes()
    jumbf = data.find(b"jumb")
    assert jumbf > 0
    cases = {
        "truncated.mp4": data[: data.find(b"mdat") + 500],
        "cut_in_manifest.mp4": data[: jumbf + 300],
        "manifest_scrambled.mp4": data[:jumbf + 40] + bytes(20) + data[jumbf + 60:],
        "cbor_scrambled.mp4": data[:jumbf + 600] + b"\xa5" * 50 + data[jumbf + 650:],
        "garbage.mp4": b"\x00\x00\x00\x18ftypmp42" + os.urandom(400),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        report = read_manifest(tmp_path / name)
        assert report.failed, (name, report)
        assert report.lines() and not report.trusted, name


def test_a_file_without_a_manifest_is_absent_not_failed(tmp_path: Path) -> None:
    path = tmp_path / "unsigned.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    for _ in range(3):
        writer.write(np.zeros((H, W, 3), np.uint8))
    writer.release()
    bmp = tmp_path / "still.bmp"
    cv2.imwrite(str(bmp), np.zeros((H, W, 3), np.uint8))
    for target in (path, bmp):
        report = read_manifest(target)
        assert not report.present and not report.failed and report.error is None
    assert not read_manifest(bmp).supported


def test_sign_recording_refuses_an_unknown_format(tmp_path: Path) -> None:
    from avatar_cam.honesty.c2pa_manifest import ManifestError

    path = tmp_path / "clip.avi"
    path.write_bytes(b"RIFF")
    with pytest.raises(ManifestError, match="unknown format"):
        sign_recording(path)
