"""The certificate a C2PA manifest is signed with, bound to the user's Ed25519 key.

C2PA signs with an X.509 certificate chain, and the c2pa library refuses a self-signed
leaf ("the certificate is invalid"). So avatar-cam keeps a small local certificate
authority beside the user's key, in the config directory ($AVATAR_CAM_CONFIG, else
~/.config/avatar-cam):

    c2pa-ca.key           the local CA's own Ed25519 key (PKCS#8 PEM, mode 0600)
    c2pa-ca.pem           its self-signed root certificate (10 years)
    c2pa-signer.pem       a leaf certificate for the user's identity.key issued by that CA
                          (1 year, renewed a month before it ends), then the root
    c2pa-organisation.pem optional: a chain an organisation issued for the same key
                          (leaf first); when present it is used instead of the local CA

A validator accepts the signature (the file is as signed, by whoever holds this key) but
lists the local CA as untrusted: nobody vouched for it. An organisation that issues the
leaf for the user's key from its own CA, and tells its validators to trust that CA, turns
the same signature into a trusted one.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from ..errors import ModelError
from .signing import config_dir, fingerprint, load_or_create_key

CA_KEY_FILE = "c2pa-ca.key"
CA_CERT_FILE = "c2pa-ca.pem"
SIGNER_CERT_FILE = "c2pa-signer.pem"
ORGANISATION_CHAIN_FILE = "c2pa-organisation.pem"
CA_ORGANISATION = "avatar-cam local CA (not vouched for by anyone)"
CA_YEARS = 10
LEAF_DAYS = 365
RENEW_DAYS = 30  # renew the leaf this long before it ends, so a long recording never
# ends up signed with a certificate that lapsed during it
# id-kp-documentSigning (RFC 9336): one of the extended key usages C2PA accepts for a
# claim signer; email protection is the other common one and is listed too.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")


@dataclass(frozen=True)
class SigningCredentials:
    """What the c2pa signer needs: the chain (leaf first) and the leaf's private key."""

    chain_pem: bytes
    key_pem: bytes  # the user's identity key, PKCS#8 PEM
    source: str  # "local CA" | "organisation"
    serial: int  # the leaf's serial number, as a validator reports it
    key_fingerprint: str  # "ed25519:..." of the user's key, as signing.Owner names it


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _write_atomic(path: Path, data: bytes) -> None:
    # Certificates are public; written whole so a reader never sees half a PEM file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signer, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=not signer, crl_sign=not signer,
                         encipher_only=False, decipher_only=False)


def _load_cert(path: Path) -> x509.Certificate | None:
    """The first certificate of a PEM file; None when it is missing or unreadable (a
    local file avatar-cam wrote itself: it is then simply made again)."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return None
    return certs[0] if certs else None


def _local_ca(now: datetime.datetime) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    folder = config_dir()
    key = load_or_create_key(folder / CA_KEY_FILE)
    path = folder / CA_CERT_FILE
    cert = _load_cert(path)
    # Two processes creating the CA at once may pair one's key with the other's
    # certificate: a root whose key is not the CA key is made again.
    if (cert is not None and _certifies(cert, key.public_key())
            and cert.not_valid_after_utc > now + datetime.timedelta(days=LEAF_DAYS)):
        return key, cert
    ca_fp = fingerprint(key.public_key())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"avatar-cam local CA {ca_fp}"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANISATION)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signer=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, None))
    _write_atomic(path, _pem(cert))
    return key, cert


def _issue_leaf(user: Ed25519PrivateKey, now: datetime.datetime) -> bytes:
    ca_key, ca = _local_ca(now)
    public = user.public_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"avatar-cam key {fingerprint(public)}"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANISATION)])
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signer=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING,
                                                  ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, None))
    chain = _pem(leaf) + _pem(ca)
    _write_atomic(config_dir() / SIGNER_CERT_FILE, chain)
    return chain


def _certifies(cert: x509.Certificate, public: Ed25519PublicKey) -> bool:
    """True when ``cert`` is for the key ``public``."""
    mine = cert.public_key()
    return isinstance(mine, Ed25519PublicKey) and _raw(mine) == _raw(public)


def _usable(leaf: x509.Certificate, user: Ed25519PrivateKey, now: datetime.datetime) -> bool:
    return (_certifies(leaf, user.public_key())
            and leaf.not_valid_before_utc <= now
            and leaf.not_valid_after_utc > now + datetime.timedelta(days=RENEW_DAYS))


def signing_credentials(now: datetime.datetime | None = None) -> SigningCredentials:
    """The user's key and a chain for it: the organisation's if one is installed, else
    the local CA's (issued or renewed here as needed)."""
    now = now or _now()
    user = load_or_create_key()
    key_pem = user.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    org = config_dir() / ORGANISATION_CHAIN_FILE
    if org.exists():
        # The organisation's chain is the user's own choice: never replaced silently.
        leaf = _load_cert(org)
        if leaf is None or not _usable(leaf, user, now):
            why = ("is not a PEM certificate chain" if leaf is None else
                   "is not for this user's key, not valid yet, or ends within "
                   f"{RENEW_DAYS} days")
            raise ModelError(f"the organisation certificate {org} {why}",
                             "install a current chain issued for identity.key (leaf first), "
                             "or remove it to sign with the local CA")
        return SigningCredentials(org.read_bytes(), key_pem, "organisation",
                                  leaf.serial_number, fingerprint(user.public_key()))
    path = config_dir() / SIGNER_CERT_FILE
    leaf = _load_cert(path)
    if leaf is not None and _usable(leaf, user, now):
        chain = path.read_bytes()
    else:
        chain = _issue_leaf(user, now)
        leaf = x509.load_pem_x509_certificates(chain)[0]
    return SigningCredentials(chain, key_pem, "local CA", leaf.serial_number,
                              fingerprint(user.public_key()))


def local_serials() -> set[int]:
    """Serial numbers of the leaves this machine signs with (to say "signed here")."""
    out = set()
    for name in (SIGNER_CERT_FILE, ORGANISATION_CHAIN_FILE):
        cert = _load_cert(config_dir() / name)
        if cert is not None:
            out.add(cert.serial_number)
    return out
