"""A real TURN server for the tests: Debian's coturn (``turnserver``), started for the
module on 127.0.0.1 at a free UDP port, with long-term credentials (one user, one realm),
relaying allowed to loopback peers (coturn refuses them by default), no TLS/DTLS, no TCP,
no CLI, no config file (``-n``: /etc/turnserver.conf is not read), its database, pid
file and verbose log in a temporary folder that the tests read, stopped by its pid at
the end. Without coturn the tests that need it skip, saying how to get it, unless
AVATAR_CAM_NEED_TURN is set (CI's .ci/run): then they fail."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from processes import stop

INSTALL = "Debian: apt-get install coturn"
USER, REALM = "avatar", "avatar-cam.test"
MAGIC_COOKIE = 0x2112A442


def _without(reason: str) -> NoReturn:
    if os.environ.get("AVATAR_CAM_NEED_TURN"):
        pytest.fail(f"the TURN tests need coturn's turnserver here: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class TurnServer:
    host: str
    port: int
    user: str
    password: str
    realm: str
    log: Path

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}"

    def log_size(self) -> int:
        """Where the log ends now: ``log_since`` of it reads what came after."""
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stun_binding(host: str, port: int, timeout: float = 0.5) -> tuple[str, int] | None:
    """One STUN Binding request (RFC 8489): our address as the server saw it, or None
    if nothing (or something that is not a Binding success for it) came back."""
    tid = secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(struct.pack("!HHI", 0x0001, 0, MAGIC_COOKIE) + tid, (host, port))
        try:
            data = s.recv(2048)
        except OSError:  # a timeout, or "connection refused" when nothing listens
            return None
    if len(data) < 20:
        return None
    kind, _, cookie = struct.unpack("!HHI", data[:8])
    if (kind, cookie, data[8:20]) != (0x0101, MAGIC_COOKIE, tid):  # a Binding success
        return None
    at = 20
    while at + 4 <= len(data):
        kind, size = struct.unpack("!HH", data[at:at + 4])
        value = data[at + 4:at + 4 + size]
        if kind == 0x0020 and len(value) >= 8:  # XOR-MAPPED-ADDRESS, IPv4
            xport = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            xaddr = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
            return socket.inet_ntoa(struct.pack("!I", xaddr)), xport
        at += 4 + (size + 3) // 4 * 4
    return None


def _start(folder: Path, port: int, password: str) -> subprocess.Popen[bytes]:
    with (folder / "stderr").open("wb") as err:  # a file: a pipe nobody reads would fill
        return subprocess.Popen(
            ["turnserver", "-n",  # no configuration file: only what is given here
             "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
             "--listening-port", str(port), "--allow-loopback-peers",
             "--no-tls", "--no-dtls", "--no-tcp", "--no-tcp-relay", "--no-cli",
             "--no-rfc5780",  # else it may also listen on port + 1
             "--lt-cred-mech", "--fingerprint", f"--user={USER}:{password}",
             f"--realm={REALM}",
             "--db", str(folder / "turndb"), "--pidfile", str(folder / "turnserver.pid"),
             "--log-file", str(folder / "turn.log"), "--simple-log", "--no-stdout-log",
             "--verbose"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def _said(folder: Path) -> str:
    text = ""
    for name in ("turn.log", "stderr"):
        if (folder / name).is_file():
            text += (folder / name).read_text(errors="replace")
    return text.strip()[-400:]


@pytest.fixture(scope="module")
def turn_server() -> Iterator[TurnServer]:
    if shutil.which("turnserver") is None:
        _without(f"coturn's turnserver is not installed ({INSTALL})")
    password = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="avatar-cam-turn-") as name:
        folder = Path(name)
        for _attempt in range(3):  # the free port may be taken before coturn binds it
            port = _free_udp_port()
            proc = _start(folder, port, password)
            t_end = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < t_end:
                if stun_binding("127.0.0.1", port) is not None:
                    break
                time.sleep(0.1)
            else:
                stop(proc)
                continue
            break
        else:
            _without(f"turnserver would not start: {_said(folder)}")
        log = folder / "turn.log"
        try:
            if not re.search(rf"UDP listener opened on: 127\.0\.0\.1:{port}\b",
                             log.read_text(errors="replace")):
                _without(f"turnserver answers but its log says otherwise: {_said(folder)}")
            yield TurnServer("127.0.0.1", port, USER, password, REALM, log)
        finally:
            stop(proc)


# -- what coturn's log says about the sessions (its --verbose lines, as 4.6 writes them):
#   session 001000000000000001: realm <avatar-cam.test> user <avatar>: incoming packet
#       ALLOCATE processed, success
#   session 000000000000000002: peer 127.0.0.1:59954 lifetime updated: 600
#   session 000000000000000002: usage: realm=<avatar-cam.test>, username=<avatar>, rp=89,
#       rb=82609, sp=90, sb=84843          (with the client: received/sent packets, bytes)
#   session 000000000000000002: peer usage: realm=<...>, username=<avatar>, rp=86, ...
#                                          (on the relay address, with the peers)
#   session 000000000000000002: closed (2nd stage), user <avatar> ...

_SESSION = re.compile(r"session (\d+): (.*)")
_ALLOCATED = re.compile(r"user <([^>]*)>: incoming packet ALLOCATE processed, success")
_PEER = re.compile(r"peer ([0-9.]+):(\d+) lifetime updated")
_USAGE = re.compile(r"(peer )?usage: realm=<[^>]*>, username=<([^>]*)>, "
                    r"rp=(\d+), rb=(\d+), sp=(\d+), sb=(\d+)")
_RELAY = re.compile(r"Local relay addr: ([0-9.]+):(\d+)")


@dataclass(frozen=True)
class Usage:
    received_packets: int
    received_bytes: int
    sent_packets: int
    sent_bytes: int


@dataclass
class Session:
    """One client's allocation as coturn logged it."""

    id: str
    user: str | None = None  # set once an ALLOCATE succeeded
    peers: set[tuple[str, int]] = field(default_factory=set)  # relayed to/from
    usage: Usage | None = None  # with the client (its ChannelData/Send/Data, control)
    peer_usage: Usage | None = None  # on the relay address, with the peers
    closed: bool = False


def sessions(log: str) -> dict[str, Session]:
    found: dict[str, Session] = {}
    for line in log.splitlines():
        m = _SESSION.search(line)
        if m is None:
            continue
        s = found.setdefault(m[1], Session(m[1]))
        what = m[2]
        if (a := _ALLOCATED.search(what)) is not None:
            s.user = a[1]
        elif (p := _PEER.match(what)) is not None:
            s.peers.add((p[1], int(p[2])))
        elif (u := _USAGE.match(what)) is not None:
            usage = Usage(*(int(x) for x in u.groups()[2:]))
            if u[1]:
                s.peer_usage = usage
            else:
                s.usage = usage
        elif what.startswith("closed"):
            s.closed = True
    return found


def relay_addresses(log: str) -> set[tuple[str, int]]:
    """The relay addresses coturn handed out (``Local relay addr: IP:PORT``)."""
    return {(m[1], int(m[2])) for m in _RELAY.finditer(log)}
