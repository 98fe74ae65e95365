"""C2PA content credentials on every recording avatar-cam writes, and reading them back.

A recording gets one manifest (made and validated with c2pa-python, the Content
Authenticity Initiative's library), signed with the user's Ed25519 key through the
certificate in credentials.py. It holds

- a ``c2pa.actions`` assertion: ``c2pa.created`` with the IPTC digital source type
  trainedAlgorithmicMedia (the picture was made by a trained model) and avatar-cam as
  the software agent;
- an ``org.avatar-cam.avatar`` assertion (ASSERTION_FORMAT 1): the person shown, the
  model's 24-bit fingerprint (the one the watermark carries, 6 hex digits), the model's
  signed owner and owner key, and whether the enrollment passed the liveness check
  ("verified" / "not verified").

The manifest covers the file's bytes (a BMFF hash of the mp4), so changing any byte of
the video makes it fail validation. Reading never fetches anything over the network.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import c2pa

from .. import __version__
from ..errors import AvatarCamError
from .credentials import local_serials, signing_credentials

ASSERTION = "org.avatar-cam.avatar"
ASSERTION_FORMAT = 1
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
LIVENESS = ("verified", "not verified")
MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
              ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
              ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff"}
# Every read is offline: no OCSP, no remote manifests (avatar-cam runs without network).
_VERIFY = {"remote_manifest_fetch": False, "ocsp_fetch": False}
_UNTRUSTED = "signingCredential.untrusted"


class ManifestError(AvatarCamError):
    """A recording that could not be given its C2PA manifest."""


@dataclass(frozen=True)
class Provenance:
    """What a recording's manifest says about the avatar in it. The defaults are for a
    recording of content whose model the recorder does not know (a call's far side)."""

    person: str | None = None
    model_fingerprint: str | None = None  # 6 hex digits, as in the watermark payload
    owner: str | None = None  # the model's signed owner
    owner_key: str | None = None  # "ed25519:..." of the key that signed the model
    liveness: str = "not verified"

    def __post_init__(self) -> None:
        if self.liveness not in LIVENESS:
            raise ValueError(f"liveness must be one of {LIVENESS}, got {self.liveness!r}")

    def assertion(self) -> dict[str, Any]:
        return {"format": ASSERTION_FORMAT, "person": self.person,
                "model_fingerprint": self.model_fingerprint, "owner": self.owner,
                "owner_key": self.owner_key, "liveness": self.liveness}


def provenance_of(person: Any) -> Provenance:
    """The provenance of a loaded person (avatar_cam.person.Person). Liveness is read
    from its signed metadata (the signature's Owner, else person.json); a model enrolled
    before the check was recorded ("not recorded"), or any other value, is "not
    verified": only a recorded pass may be claimed."""
    from .signing import model_fingerprint

    owner = getattr(person, "owner", None)
    meta = getattr(person, "meta", None) or {}
    liveness = getattr(owner, "liveness", None)
    if liveness not in LIVENESS and isinstance(meta, dict):
        liveness = meta.get("liveness")
    return Provenance(
        person=str(person.name),
        model_fingerprint=f"{model_fingerprint(person.folder):06x}",
        owner=None if owner is None else str(owner.name),
        owner_key=None if owner is None else str(owner.key_fingerprint),
        liveness=liveness if liveness in LIVENESS else "not verified")


def _mime(path: Path) -> str:
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ManifestError(f"cannot add a C2PA manifest to {path.name}: unknown format",
                            f"use one of {', '.join(sorted(MIME_TYPES))}")
    return mime


def manifest_definition(title: str, provenance: Provenance) -> dict[str, Any]:
    """The manifest c2pa's Builder is given (the library adds the hash and signature)."""
    agent = {"name": "avatar-cam", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": agent,
                "description": "a synthetic video-call avatar rendered by a trained model"}]}},
            {"label": ASSERTION, "data": provenance.assertion()},
        ],
    }


def sign_recording(path: Path | str, provenance: Provenance | None = None) -> None:
    """Embed a signed manifest in the closed file ``path`` (replaced atomically, so a
    failure leaves the unsigned recording as it was). ManifestError on failure."""
    path = Path(path)
    mime = _mime(path)
    try:
        creds = signing_credentials()
    except AvatarCamError as exc:
        raise ManifestError(f"{path} was written without its C2PA manifest: {exc.problem}",
                            exc.fix) from exc
    tmp = path.with_name(f".{path.name}.c2pa.{os.getpid()}")
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            c2pa.C2paSigningAlg.ED25519, creds.chain_pem, creds.key_pem, None))
        with signer, c2pa.Builder(manifest_definition(path.name, provenance or Provenance())
                                  ) as builder, path.open("rb") as src, tmp.open("w+b") as dst:
            builder.sign(signer, mime, src, dst)
        os.replace(tmp, path)
    except (c2pa.C2paError, OSError) as exc:
        raise ManifestError(f"{path} was written without its C2PA manifest ({exc})",
                            "the recording itself is intact; check the disk has room and "
                            "the file is a complete video") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@dataclass
class ManifestReport:
    """What a file's C2PA manifest says, as c2pa validates it.

    state: c2pa's validation state: "Trusted" (valid and the signer chains to a trust
    anchor), "Valid" (signature and hashes check, signer not vouched for), "Invalid", or
    None when there is no manifest or it could not be read.
    """

    present: bool
    supported: bool = True  # False: a format that cannot carry a manifest (BMP, WebM)
    valid: bool = False
    trusted: bool = False
    state: str | None = None
    error: str | None = None  # why the file's C2PA data could not be read at all
    signer: str | None = None  # the signing certificate's common name
    issuer: str | None = None  # its issuer's organisation
    algorithm: str | None = None
    signed_here: bool = False  # with this machine's key and certificate
    claim_generator: str | None = None
    digital_source_type: str | None = None
    avatar_cam: bool = False  # carries avatar-cam's assertion
    person: str | None = None
    model_fingerprint: str | None = None
    owner: str | None = None
    owner_key: str | None = None
    liveness: str | None = None
    failures: list[str] = field(default_factory=list)  # "code: explanation"

    @property
    def failed(self) -> bool:
        """A manifest is there but does not validate (the file changed after signing),
        or the file's C2PA data is damaged beyond reading."""
        return (self.present and not self.valid) or self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"  C2PA manifest: unreadable ({self.error})"]
        if not self.present:
            return ["  C2PA manifest: none" + ("" if self.supported else
                                               " (this format cannot carry one)")]
        if not self.valid:
            out = ["  C2PA manifest: INVALID -- the file was changed after it was signed"]
        elif self.trusted:
            out = ["  C2PA manifest: valid, signer trusted"]
        else:
            out = ["  C2PA manifest: valid (signature and content hash check); signer not "
                   "on a trust list"]
        here = ", this machine's key" if self.signed_here else ""
        out.append(f"    signed by {self.signer} (issuer {self.issuer}, {self.algorithm}"
                   f"{here})")
        if self.digital_source_type:
            out.append(f"    source: {self.digital_source_type.rsplit('/', 1)[-1]}, made with "
                       f"{self.claim_generator}")
        if self.avatar_cam and self.model_fingerprint is None:
            out.append("    no model named (the recorder did not know it, as for a call's "
                       f"far side), liveness {self.liveness}")
        elif self.avatar_cam:
            out.append(f"    person {self.person}, model fingerprint {self.model_fingerprint}, "
                       f"owner {self.owner} ({self.owner_key}), liveness {self.liveness}")
        out += [f"    failure: {f}" for f in self.failures]
        return out


def _context(trust_anchors: Sequence[Path]) -> c2pa.Context:
    settings: dict[str, Any] = {"verify": dict(_VERIFY)}
    if trust_anchors:
        pems = []
        for anchor in trust_anchors:
            try:
                pems.append(Path(anchor).read_text())
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"cannot read the trust anchors {anchor}: {exc}",
                                    "give a PEM file of CA certificates") from exc
        settings["trust"] = {"user_anchors": "\n".join(pems)}
    try:
        return c2pa.Context(c2pa.Settings.from_dict(settings))
    except c2pa.C2paError as exc:
        raise ManifestError(f"the trust anchors are not usable ({exc})",
                            "give a PEM file of CA certificates") from exc


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _fill(report: ManifestReport, manifest: dict[str, Any]) -> None:
    """Copy what a validated manifest says into ``report``; every field is untrusted
    input, so each is read defensively and turned into text."""
    sig = manifest.get("signature_info") or {}
    if isinstance(sig, dict):
        report.signer, report.issuer = _text(sig.get("common_name")), _text(sig.get("issuer"))
        report.algorithm = _text(sig.get("alg"))
        serial = sig.get("cert_serial_number")
        report.signed_here = serial is not None and str(serial) in {
            str(s) for s in local_serials()}
    gen = manifest.get("claim_generator_info")
    if isinstance(gen, list) and gen and isinstance(gen[0], dict):
        report.claim_generator = f"{gen[0].get('name')} {gen[0].get('version', '')}".strip()
    assertions = manifest.get("assertions")
    for a in assertions if isinstance(assertions, list) else []:
        data = a.get("data") if isinstance(a, dict) else None
        if not isinstance(data, dict):
            continue
        label = str(a.get("label", ""))
        if label.startswith("c2pa.actions"):
            for action in data.get("actions") or []:
                if isinstance(action, dict) and action.get("action") == "c2pa.created":
                    report.digital_source_type = _text(action.get("digitalSourceType"))
        elif label == ASSERTION:
            report.avatar_cam = True
            for key in ("person", "model_fingerprint", "owner", "owner_key", "liveness"):
                setattr(report, key, _text(data.get(key)))


def read_manifest(path: Path | str, trust_anchors: Sequence[Path] = ()) -> ManifestReport:
    """Read and validate the C2PA manifest of ``path`` with the c2pa library. A file
    without one gives present=False; one c2pa cannot parse gives ``error``."""
    path = Path(path)
    context = _context(trust_anchors)
    try:
        with path.open("rb") as stream:
            mime = MIME_TYPES.get(path.suffix.lower())
            reader = c2pa.Reader.try_create(mime, stream, None, context)
            if reader is None:
                return ManifestReport(present=False)
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError.NotSupported:
        return ManifestReport(present=False, supported=False)
    except (c2pa.C2paError, OSError, ValueError) as exc:
        # c2pa could not parse the file's container or its manifest: damaged, or made to
        # look like one; either way nothing in it can be vouched for.
        return ManifestReport(present=False, error=" ".join(str(exc).split())[:300])
    if not isinstance(store, dict):
        return ManifestReport(present=True, error="the manifest store is not a JSON object")
    state = _text(store.get("validation_state"))
    report = ManifestReport(present=True, state=state, valid=state in ("Valid", "Trusted"),
                            trusted=state == "Trusted")
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") if isinstance(results, dict) else None
    failures = active.get("failure") if isinstance(active, dict) else None
    for f in failures if isinstance(failures, list) else []:
        if isinstance(f, dict) and not (report.valid and f.get("code") == _UNTRUSTED):
            report.failures.append(f"{f.get('code')}: {f.get('explanation')}")
    manifests = store.get("manifests")
    label = store.get("active_manifest")
    if isinstance(manifests, dict) and isinstance(manifests.get(label), dict):
        _fill(report, manifests[label])
    return report
