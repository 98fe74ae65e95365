"""A real browser (Debian's chromium, headless) loads the served page and plays the avatar.

The page POSTs what it sees once a second (videoWidth, framesDecoded; in landmark mode
the packets it decoded, the last parameters and two synthesized points), and the test
reads those reports from the server. Skipped, with the reason, where chromium is absent.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avatar_cam import live
from avatar_cam.capture import SyntheticSource
from avatar_cam.person import Person, load_person
from avatar_cam.webrtc.basis import ExpressionBasis
from avatar_cam.webrtc.enroll import learn_basis

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--mute-audio", "--autoplay-policy=no-user-gesture-required",
         # Host candidates on loopback, not hidden behind mDNS names: no network needed.
         "--allow-loopback-in-peer-connection",
         "--disable-features=WebRtcHideLocalIpsWithMdns",
         "--remote-debugging-port=0")  # keeps headless chromium running with the page open


@pytest.fixture(scope="module")
def person() -> Person:
    return load_person("demo")


async def _watch(person: Person, landmarks: bool, profile: Path, done: Any,
                 query: str = "", timeout_s: float = 45.0, mic: Any = None,
                 speaker: Any = None, flags: tuple[str, ...] = (), access: Any = None
                 ) -> tuple[list[dict[str, Any]], Any]:
    from avatar_cam.webrtc.peer import (
        LocalAvatar,
        PeerOptions,
        configure_loop,
    )
    from avatar_cam.webrtc.server import AvatarServer

    configure_loop(asyncio.get_running_loop())
    opts = PeerOptions(landmarks_only=landmarks, out_size=(320, 240))
    basis = None
    if landmarks:
        basis = ExpressionBasis.from_bytes(
            learn_basis(person.neutral, (person.crop_size, person.crop_size)).to_bytes())
    neutral = (person.neutral * (256 / person.crop_size)).astype(np.float32)
    local = LocalAvatar(person, SyntheticSource(neutral, (256, 256), fps=30.0),
                        live.LiveOptions(out_size=(320, 240), resolution=256, track=False),
                        opts, basis, mic=mic)
    running = asyncio.ensure_future(local.run())
    server = AvatarServer(local, opts, "127.0.0.1", 0, speaker=speaker, access=access)
    await server.start()
    assert CHROMIUM is not None
    browser = await asyncio.create_subprocess_exec(
        CHROMIUM, *FLAGS, *flags, f"--user-data-dir={profile}",
        server.url + query.replace("?", "&"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    reports: list[dict[str, Any]] = []
    try:
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            await asyncio.sleep(1.0)
            reports = [dict(r) for r in server.reports.values()]
            if reports and done(reports[-1], server, local):
                break
        return reports, local
    finally:
        browser.terminate()
        try:
            await asyncio.wait_for(browser.wait(), 10)
        except TimeoutError:
            browser.kill()
            await browser.wait()
        await server.close()
        local.stop()
        await running


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_browser_plays_the_video(person: Person, tmp_path: Path, codec: str) -> None:
    seen: list[int] = []

    def done(report: dict[str, Any], server: Any, local: Any) -> bool:
        seen.append(int(report.get("framesDecoded", 0)))
        return len(seen) >= 3 and seen[-1] > seen[-3] > 0

    reports, _ = asyncio.run(_watch(person, False, tmp_path / "profile", done, f"?codec={codec}"))
    assert reports, "the page never reported (did it load and connect?)"
    last = reports[-1]
    assert last["videoWidth"] == 320 and last["videoHeight"] == 240
    assert seen[-1] > seen[-3] > 0  # frames decoded, and still rising
    assert last["state"] == "connected"
    assert last["codec"] == {"vp8": "video/VP8", "h264": "video/H264"}[codec]


def test_browser_plays_from_the_https_invitation_alone(person: Person, tmp_path: Path) -> None:
    """serve over HTTPS with its self-signed certificate: the browser trusts that one
    certificate (as a person accepts it once), opens the invitation link and plays."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from avatar_cam.webrtc.invite import Gate
    from avatar_cam.webrtc.signaling import Access
    from avatar_cam.webrtc.tls import server_tls

    tls = server_tls("127.0.0.1", force=True, folder=tmp_path / "tls")
    assert tls is not None
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    seen: list[int] = []

    def done(report: dict[str, Any], server: Any, local: Any) -> bool:
        seen.append(int(report.get("framesDecoded", 0)))
        return len(seen) >= 3 and seen[-1] > seen[-3] > 0

    access = Access(Gate(), tls)
    reports, _ = asyncio.run(_watch(person, False, tmp_path / "profile", done, access=access,
                                    flags=(f"--ignore-certificate-errors-spki-list={pin}",)))
    assert reports and seen[-1] > seen[-3] > 0
    assert reports[-1]["state"] == "connected"
    assert access.gate.counts["forbidden"] == 0  # every request carried the invitation


def test_browser_decodes_landmark_packets(person: Person, tmp_path: Path) -> None:
    def done(report: dict[str, Any], server: Any, local: Any) -> bool:
        return int(report.get("decoded", 0)) > 60 and "q" in report

    reports, local = asyncio.run(_watch(person, True, tmp_path / "profile", done))
    assert reports, "the page never reported (did it load and connect?)"
    last = reports[-1]
    assert last["decoded"] > 60 and last.get("malformed", 0) == 0
    assert last["videoWidth"] == 0  # no video in this mode: only data-channel bytes
    # The page's decoder agrees with the Python encoder, and its synthesis with Python's.
    q = np.array(last["q"], dtype=np.int64)
    np.testing.assert_array_equal(q, local.encoder.recent[int(last["lastSeq"])])
    points = local.basis.synthesize(local.basis.dequantize(q))
    np.testing.assert_allclose(last["probe"], [*points[1, :2], *points[152, :2]], atol=0.05)


# Chromium's fake microphone (a beep every second) with the permission granted.
FAKE_MIC = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


@pytest.mark.parametrize("landmarks", [False, True], ids=["video", "landmarks"])
def test_browser_talks_and_hears_the_avatar(person: Person, tmp_path: Path,
                                            landmarks: bool) -> None:
    """The page sends its microphone (chromium's fake device) and plays the avatar's
    voice (a WAV as the server's microphone): its getStats() audio counters rise, and the
    server's recording speaker receives the page's beeps."""
    from test_call_voice import tone_wav

    from avatar_cam.audio.mic import open_mic
    from avatar_cam.audio.speaker import RecordingSpeaker

    speaker = RecordingSpeaker()
    mic = open_mic("file:" + str(tone_wav(tmp_path / "voice.wav", 440.0, 60.0)))

    def done(report: dict[str, Any], server: Any, local: Any) -> bool:
        return (int(report.get("audioPackets", 0)) > 100 and
                int(report.get("audioSamples", 0)) > 48000 and
                int(report.get("audioSent", 0)) > 100 and speaker.duration_s > 1.0)

    reports, _ = asyncio.run(_watch(person, landmarks, tmp_path / "profile", done, mic=mic,
                                    speaker=speaker, flags=FAKE_MIC))
    assert reports, "the page never reported (did it load and connect?)"
    last = reports[-1]
    assert last["mic"] == "on"
    assert last["audioPackets"] > 100 and last["audioSamples"] > 48000  # our voice arrived
    assert last["audioEnergy"] > 0  # and it is not silence
    assert last["audioSent"] > 100 and speaker.duration_s > 1.0  # the page's voice, here
    assert speaker.rms() > 100  # chromium's fake microphone beeps


def test_browser_without_microphone_permission_says_so_and_still_listens(
        person: Person, tmp_path: Path) -> None:
    from test_call_voice import tone_wav

    from avatar_cam.audio.mic import open_mic

    mic = open_mic("file:" + str(tone_wav(tmp_path / "voice.wav", 440.0, 60.0)))

    def done(report: dict[str, Any], server: Any, local: Any) -> bool:
        return int(report.get("audioPackets", 0)) > 100

    reports, _ = asyncio.run(_watch(person, False, tmp_path / "profile", done, mic=mic,
                                    flags=("--use-fake-device-for-media-stream",
                                           "--deny-permission-prompts")))
    assert reports, "the page never reported (did it load and connect?)"
    last = reports[-1]
    assert last["mic"] in ("refused", "failed")
    assert last["audioPackets"] > 100 and last.get("audioSent", 0) == 0
