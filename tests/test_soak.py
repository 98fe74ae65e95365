"""Calls that survive bad links (issue 19, parts 5 and 6).

The bad link's fault model (benchmarks/_faulty_link.py: seeded loss, burst statistics,
jitter that reorders, outages that drop everything) on its own and through the relay on
real UDP sockets; the pipeline's bounded latency record; and the soak benchmark's short
version: a real landmark-only call with voice through 5 % loss, 80 ms jitter and a 5 s
outage every 20 s for 2 minutes, against the issue's targets.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _faulty_link import Burst, Faults, FaultyWay, Outages  # noqa: E402
from _relay import Relay  # noqa: E402

from avatar_cam.pipeline import RECENT_FRAMES, Series, Stats  # noqa: E402

# -- the fault model, without sockets -------------------------------------------------------


def _run(way: FaultyWay, n: int, spacing_s: float = 0.01, media: bool = True
         ) -> list[tuple[int, float] | None]:
    return [way.decide(i * spacing_s, media) for i in range(n)]


def test_random_loss_is_seeded_and_near_its_rate() -> None:
    one = _run(FaultyWay(Faults(loss=0.05), seed=3), 20_000)
    again = _run(FaultyWay(Faults(loss=0.05), seed=3), 20_000)
    other = _run(FaultyWay(Faults(loss=0.05), seed=4), 20_000)
    assert one == again and one != other
    lost = sum(d is None for d in one) / len(one)
    assert abs(lost - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 20_000)  # 4 sigma


def test_media_only_loss_spares_setup_datagrams() -> None:
    way = FaultyWay(Faults(loss=0.5, media_only=True), seed=1)
    assert all(d is not None for d in _run(way, 500, media=False))
    assert sum(d is None for d in _run(way, 500, media=True)) > 150
    assert way.counts["lost_random"] == way.lost > 150


def test_burst_loss_has_its_mean_and_its_run_lengths() -> None:
    burst = Burst.of(mean_loss=0.05, mean_burst=4.0)
    assert burst.mean_loss == pytest.approx(0.05)
    way = FaultyWay(Faults(burst=burst), seed=11)
    lost = np.array([d is None for d in _run(way, 200_000)])
    assert lost.mean() == pytest.approx(0.05, abs=0.005)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], lost.astype(int), [0]])))
    runs = edges[1::2] - edges[::2]
    assert runs.mean() == pytest.approx(4.0, rel=0.1)  # geometric runs of mean 1/p_leave
    # i.i.d. loss of the same rate makes runs of 1/(1-p) ~ 1.05: bursts are the difference
    iid = np.array([d is None for d in _run(FaultyWay(Faults(loss=0.05), seed=11), 200_000)])
    e2 = np.flatnonzero(np.diff(np.concatenate([[0], iid.astype(int), [0]])))
    assert (e2[1::2] - e2[::2]).mean() < 1.2


def test_jitter_delays_within_its_range_and_reorders() -> None:
    way = FaultyWay(Faults(delay_ms=10, jitter_ms=80), seed=5)
    decided = [d for d in _run(way, 2000, spacing_s=0.005) if d is not None]
    delays = np.array([d[1] for d in decided])
    assert delays.min() >= 0.010 and delays.max() <= 0.090
    assert delays.mean() == pytest.approx(0.050, abs=0.003)  # uniform on [10, 90] ms
    # hand them on in the order they leave the link: the reorders are counted
    leave = sorted((i * 0.005 + d, index) for i, (index, d) in enumerate(decided))
    for _, index in leave:
        way.handed_on(index)
    swapped = sum(1 for k, (_, i) in enumerate(leave) if i < max(j for _, j in leave[:k + 1]))
    assert way.counts["reordered"] == swapped > 500
    assert way.counts["forwarded"] == len(decided)


def test_explicit_reordering_holds_back_its_share() -> None:
    way = FaultyWay(Faults(reorder=0.1, reorder_ms=30), seed=2)
    decided = [d for d in _run(way, 5000) if d is not None]
    held = [d for _, d in decided if d > 0]
    assert len(held) == way.counts["held_back"]
    assert len(held) / len(decided) == pytest.approx(0.1, abs=0.015)
    assert all(d == pytest.approx(0.030) for d in held)


def test_outages_drop_everything_and_only_inside() -> None:
    outages = Outages.every(t0=100.0, period_s=20.0, duration_s=5.0, until=200.0)
    assert outages.windows == [(120.0, 5.0), (140.0, 5.0), (160.0, 5.0), (180.0, 5.0)]
    way = FaultyWay(Faults(), seed=0, outages=outages)
    for t, media in ((119.99, True), (125.0, False), (139.0, True), (185.0, False)):
        assert way.decide(t, media) is not None, t
    for t, media in ((120.0, False), (122.0, True), (124.999, False), (164.0, True)):
        assert way.decide(t, media) is None, t
    assert way.counts["lost_outage"] == 4
    with pytest.raises(ValueError):
        Outages([(0.0, 5.0), (4.0, 1.0)])
    with pytest.raises(ValueError):
        Outages.every(0.0, 5.0, 5.0, 100.0)


# -- the relay on real sockets: an outage drops STUN too, jitter reorders ----------------


class _Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append(data)


async def _through_relay(faults: Faults, outage: bool) -> tuple[list[bytes], dict[str, Any]]:
    loop = asyncio.get_running_loop()
    relay = await Relay.open(lifetime_s=20.0, seed=9)
    ta, pa = await loop.create_datagram_endpoint(_Peer, local_addr=("127.0.0.1", 0))
    tb, pb = await loop.create_datagram_endpoint(_Peer, local_addr=("127.0.0.1", 0))
    sdp = "a=candidate:1 1 udp 1 127.0.0.1 {} typ host\r\n"
    relay.rewrite(sdp.format(ta.get_extra_info("sockname")[1]), "a")
    relay.rewrite(sdp.format(tb.get_extra_info("sockname")[1]), "b")
    now = loop.time()
    relay.set_faults(faults, faults, Outages([(now, 0.5)]) if outage else None)
    try:
        for i in range(200):
            first = (0x00, 0x16, 0x17, 0x80)[i % 4]  # STUN, DTLS handshake, SCTP, SRTP
            ta.sendto(bytes([first]) + i.to_bytes(2, "big"), ("127.0.0.1", relay.port("b")))
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
    finally:
        ta.close()
        tb.close()
        relay.close()
    return pb.got, relay.snapshot()["a->b"]


def test_relay_outage_drops_every_kind_of_datagram() -> None:
    got, counts = asyncio.run(_through_relay(Faults(), outage=True))
    assert got == [] and counts["forwarded"] == 0
    assert counts["faults"]["lost_outage"] == counts["total_packets"] == 200
    assert {"stun", "dtls_handshake", "sctp", "srtp"} <= set(counts["dropped"])


def test_relay_jitter_reorders_what_it_hands_on() -> None:
    got, counts = asyncio.run(_through_relay(Faults(jitter_ms=40.0), outage=False))
    order = [int.from_bytes(d[1:3], "big") for d in got]
    assert sorted(order) == list(range(200))  # nothing lost, everything arrived
    assert order != sorted(order)
    late = sum(1 for k in range(1, len(order)) if order[k] < max(order[:k]))
    assert counts["faults"]["reordered"] == late > 20


# -- bounded memory: the pipeline's latency record ------------------------------------------


def test_latency_series_is_bounded_and_its_percentiles_hold() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(np.log(30.0), 0.4, 300_000)  # more frames than it keeps
    series = Series()
    for v in values:
        series.append(float(v))
    assert len(series) == len(values) and len(series.recent) < 5000
    for q in (5, 50, 95):
        assert series.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.01)
    assert series.percentile(0) == values.min() and series.percentile(100) == values.max()
    assert series.last(3) == [float(v) for v in values[::-1][:3]]
    stats = Stats()
    for v in values[:100]:
        stats.latencies_ms.append(float(v))
        stats.add_timings({"render": float(v)})
    assert stats.recent_latency_ms() == pytest.approx(np.median(values[70:100]), abs=1.0)
    assert len(stats.stages["render"].recent) == RECENT_FRAMES
    summary = stats.summary()
    assert summary["latency_ms"]["p50"] == pytest.approx(np.percentile(values[:100], 50),
                                                         rel=0.02)
    assert bool(Stats().latencies_ms) is False and bool(stats.latencies_ms) is True


# -- the soak's short version: 2 minutes, the same faults, outages every 20 s ------------

SOAK_S = 120.0
RSS_BOUND_MB = 5.0  # over the 90 s after warm-up: a leak of a frame or of 1 s of sound a
# second (230 KB/s, 96 KB/s) exceeds it; the hour's budget is RSS_GROWTH_MB


@pytest.fixture(scope="module")
def soak_call(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real landmark-only call with voice and the shared model (see the module
    docstring), run by the benchmark in a process of its own, as the hour's run and a
    user's ``avatar-cam call`` are: this test process holds the heap of every test before
    it (over 1 GB of it), whose growth and collector pauses are not the call's.
    Landmark-only, not video too: the two calls at once on 2 shared cores starve both of
    fps, and this mode is the one with a quality target and the most per-frame state
    (bundles, jitter buffer, voice playout)."""
    path = tmp_path_factory.mktemp("soak") / "landmarks.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
    done = subprocess.run(
        [sys.executable, str(script), "--mode", "landmarks", "--minutes", str(SOAK_S / 60),
         "--driver-frames", "150", "--part-json", str(path)],
        capture_output=True, text=True, timeout=SOAK_S + 300)
    assert done.returncode == 0 and path.exists(), (done.returncode, done.stderr[-3000:])
    part: dict[str, Any] = json.loads(path.read_text())
    return part


def test_soak_call_survives_without_a_crash(soak_call: dict[str, Any]) -> None:
    a = soak_call["assessment"]
    assert not a["crashed"], (soak_call["first_error"], soak_call["connection_at_end"])
    assert soak_call["samples"][-1]["t"] >= SOAK_S - 0.1  # it lasted its length
    assert all(s["connection"] == "connected" for s in soak_call["samples"])
    # the faults were really there, both ways
    for way in ("a->b", "b->a"):
        f = soak_call["relay"][way]["faults"]
        assert f["lost_outage"] > 0 and f["reordered"] > 0, f
        assert 0.03 < f["lost_random"] / (f["seen"] - f["lost_outage"]) < 0.07, f
    assert len(soak_call["outages_s"]) == 5


def test_soak_call_recovers_after_every_outage(soak_call: dict[str, Any]) -> None:
    import soak

    recoveries = soak_call["assessment"]["recoveries"]
    assert len(recoveries) == 5
    for r, (start, duration) in zip(recoveries, soak_call["outages_s"], strict=True):
        # what the recovery was read from, to tell a late link from a stalled receiver
        around = [tk for tk in soak_call["ticks"] if start - 1 <= tk[0] <= start + duration + 6]
        assert r["fps_before"] > 5, r  # there was a picture to lose
        assert r["recovered_after_s"] is not None and r["recovered_after_s"] <= soak.RECOVER_S, \
            (r, around, soak_call["receiver_counts"])
    # and during each outage the picture really stopped (the measure can tell)
    for start, duration in soak_call["outages_s"]:
        inside = [s["fps"] for s in soak_call["samples"]
                  if start + 1.5 <= s["t"] <= start + duration]
        assert inside and max(inside) < 3, inside


def test_soak_call_keeps_memory_and_descriptors_bounded(soak_call: dict[str, Any]) -> None:
    a = soak_call["assessment"]
    assert a["fds_ok"], a["fds"]
    assert a["rss_mb"]["growth_after_warmup"] < RSS_BOUND_MB, a["rss_mb"]


def test_soak_call_keeps_quality_and_voice(soak_call: dict[str, Any]) -> None:
    import soak

    a = soak_call["assessment"]
    q = a["psnr_db"]
    assert q["samples"] >= 20
    # The target at 5 % loss; the codec's basis alone (no link) is the ceiling.
    assert q["mean_steady"] >= soak.PSNR_DB, q
    assert q["mean_steady"] <= q["basis_only_steady"] + 0.5, q
    assert a["quality_ok"] == (q["mean_steady"] >= soak.PSNR_DB)
    # the recording speaker heard the bursts, timed against the picture
    assert a["av_offset_ms_steady"]["n"] >= 30, a["av_offset_ms_steady"]
    assert soak_call["speaker_samples"] > 48_000 * SOAK_S * 0.5
