"""HTTPS for the signaling, so nobody on the path can swap the DTLS fingerprint in an SDP.

A listener (``call --listen``, ``serve``) uses ``--tls-cert/--tls-key`` if given, else a
self-signed certificate made on first use and kept in ``~/.config/avatar-cam/tls/`` (or
``$AVATAR_CAM_HOME/tls/``; the key readable by its owner only). The certificate's SHA-256
fingerprint rides in the invitation URL (``invite.py``), and ``call --connect`` pins it:
a listener that shows any other certificate is refused before a byte of the offer leaves.
Plain HTTP stays available on 127.0.0.1 only, where no one is on the path.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ..errors import AvatarCamError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CERT_DAYS = 825
CERT_FILE, KEY_FILE = "cert.pem", "key.pem"


class TlsError(AvatarCamError):
    """A certificate or key that cannot be used, or plain HTTP where it is not safe."""


def is_loopback(host: str) -> bool:
    return host in LOOPBACK


@dataclass(frozen=True)
class ServerTls:
    context: ssl.SSLContext
    fingerprint: str  # SHA-256 of the certificate (DER), lowercase hex
    cert: Path


def tls_home() -> Path:
    home = os.environ.get("AVATAR_CAM_HOME")
    if home:
        return Path(home) / "tls"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "avatar-cam" / "tls"


def fingerprint_of(cert_pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))).hexdigest()


def self_signed(folder: Path | None = None) -> tuple[Path, Path]:
    """This machine's self-signed certificate and key, made the first time (EC P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = folder or tls_home()
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    common = f"avatar-cam {socket.gethostname()}"[:64]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname()),
           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    key_bytes = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    os.replace(key_path.with_suffix(".tmp"), key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_tls(host: str, cert: Path | None = None, key: Path | None = None,
               force: bool = False, folder: Path | None = None) -> ServerTls | None:
    """The listener's TLS: the given certificate, else a self-signed one unless the listener
    is on 127.0.0.1 and ``force`` is off (then None: plain HTTP)."""
    if (cert is None) != (key is None):
        raise TlsError("--tls-cert and --tls-key go together",
                       "give both (the certificate and its private key), or neither")
    if cert is None or key is None:
        if is_loopback(host) and not force:
            return None
        cert, key = self_signed(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        pem = Path(cert).read_bytes()
        fingerprint = fingerprint_of(pem)
    except (OSError, ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise TlsError(f"cannot use the certificate {cert} with the key {key}: {exc}",
                       "give a PEM certificate and its matching PEM private key") from exc
    return ServerTls(context, fingerprint, Path(cert))


def client_ssl(scheme: str, host: str, fingerprint: str | None) -> aiohttp.Fingerprint | bool:
    """How ``call --connect`` checks the listener: the pinned fingerprint of the invitation,
    else the system's certificate authorities; plain HTTP only to 127.0.0.1."""
    if scheme == "http":
        if not is_loopback(host):
            raise TlsError(f"plain http to {host} could be tampered with on the way",
                           "use the https:// invitation URL the listener printed")
        return False
    if fingerprint is None:
        return True  # a certificate from an authority (--tls-cert on the listener)
    try:
        digest = bytes.fromhex(fingerprint)
        return aiohttp.Fingerprint(digest)
    except ValueError as exc:
        raise TlsError(f"the invitation's certificate fingerprint {fingerprint!r} is not a "
                       "SHA-256", "copy the whole invitation URL again") from exc
