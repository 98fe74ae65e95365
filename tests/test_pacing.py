"""The one pacing rule (avatar_cam.pacing) and its three users: the paced capture
sources, the receiver's JitterSource and the pipeline's sends.

Everything runs on a fake clock that moves only when someone sleeps or the test says
time passed, so schedules of seconds take no real time and no real timer is asserted.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from avatar_cam import capture
from avatar_cam.pacing import MAX_LAG_S, SEND_CREDIT, Pacer, send_pacer
from avatar_cam.person import load_person
from avatar_cam.webrtc.basis import load_basis
from avatar_cam.webrtc.enroll import basis_for
from avatar_cam.webrtc.receive import JitterSource, LandmarkReceiver

T0 = 100.0


class FakeClock:
    """Monotonic seconds that advance only through ``sleep`` and ``advance``."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0.0, seconds  # a pacer must not call sleep for nothing
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _waits(pacer: Pacer, clock: FakeClock, work: list[float]) -> list[float]:
    """Times at which each wait() returned; ``work[i]`` is spent before wait ``i``."""
    out = []
    for seconds in work:
        clock.advance(seconds)
        pacer.wait()
        out.append(clock.now)
    return out


def test_capture_reexports_the_shared_pacer() -> None:
    assert capture.Pacer is Pacer and capture.MAX_LAG_S == MAX_LAG_S


def test_frames_are_due_on_schedule_whatever_the_reader_spends() -> None:
    clock = FakeClock()
    times = _waits(Pacer(10.0, clock, clock.sleep), clock, [0.0, 0.0, 0.03, 0.099, 0.0])
    assert times == pytest.approx([T0 + n * 0.1 for n in range(5)])


def test_a_late_reader_is_not_slept_for_and_the_schedule_is_kept() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock, clock.sleep)
    # Frame 1 comes 0.25 s late (under MAX_LAG_S): frames 1-3 go at once to catch up,
    # frame 4 is back on the original schedule.
    times = _waits(pacer, clock, [0.0, 0.35, 0.0, 0.0, 0.0])
    assert times[1:4] == pytest.approx([T0 + 0.35] * 3)
    assert clock.sleeps == [pytest.approx(0.05)]
    assert times[4] == pytest.approx(T0 + 0.4)


@pytest.mark.parametrize("stall_s", [MAX_LAG_S + 0.05, 5.0])
def test_a_stall_reanchors_instead_of_bursting(stall_s: float) -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock, clock.sleep)
    times = _waits(pacer, clock, [0.0, 0.1 + stall_s, 0.0, 0.0, 0.0])
    # The late frame goes at once; the ones after it are a period apart from it.
    resumed = T0 + 0.1 + stall_s
    assert times[1:] == pytest.approx([resumed + n * 0.1 for n in range(4)])
    assert clock.sleeps == [pytest.approx(0.1)] * 3


def test_sources_forget_a_stall_and_sends_keep_half_a_period() -> None:
    # The same 0.25 s of lateness: caught up by a source; the sends keep 1.5 periods.
    late = [0.0, 0.35, 0.0, 0.0]
    source_clock, send_clock = FakeClock(), FakeClock()
    source = _waits(Pacer(10.0, source_clock, source_clock.sleep), source_clock, late)
    sends = _waits(send_pacer(10.0, send_clock, send_clock.sleep), send_clock, late)
    assert source[2:] == pytest.approx([T0 + 0.35, T0 + 0.35])
    assert sends[2:] == pytest.approx([T0 + 0.35, T0 + 0.40])


def _sends(fps: float, ready: list[float]) -> list[float]:
    """When the pipeline sends frame ``i``, ready at ``ready[i]``: it waits for the slot
    (send_pacer), then takes the frame as soon as it is ready."""
    clock = FakeClock()
    clock.now = ready[0]
    pacer = send_pacer(fps, clock, clock.sleep)
    out = []
    for t in ready:
        pacer.wait()
        clock.now = max(clock.now, t)
        pacer.sent()
        out.append(clock.now)
    return out


@pytest.mark.parametrize("phase", [0.05, 0.3, 0.6, 0.95])
def test_a_source_at_the_same_rate_never_waits_for_a_slot(phase: float) -> None:
    # A camera at 30 fps, its frames ready at a fixed phase of the send schedule with a
    # little jitter: whatever the phase, each goes as soon as it is ready (a schedule
    # that forgets lateness locks onto the phase and holds every frame for its slot).
    rng = random.Random(int(phase * 100))
    period = 1.0 / 30.0
    ready = [T0 + (n + phase) * period + rng.uniform(-0.2, 0.2) * period
             for n in range(300)]
    sends = _sends(30.0, ready)
    waits = np.array(sends[1:]) - np.array(ready[1:])
    assert waits.max() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_sends_never_pass_the_rate_through_jitter(seed: int) -> None:
    # A renderer faster than fps with up to a period of jitter: never sent before it is
    # ready, fps on average, and no window holds more than the credit over its share.
    rng = random.Random(seed)
    fps, period = 30.0, 1.0 / 30.0
    ready = [T0 + n * period + rng.uniform(0.0, 0.99 * period) for n in range(300)]
    sends = np.array(_sends(fps, ready))
    assert all(s >= t for s, t in zip(sends, ready, strict=True))
    assert sends[-1] - sends[0] == pytest.approx(299 * period, abs=2 * period)
    for i in range(len(sends) - 10):  # 11 sends span at least 10 periods less the credit
        assert sends[i + 10] - sends[i] >= (10 - SEND_CREDIT) * period - 1e-9


def test_a_render_hiccup_costs_no_lasting_latency() -> None:
    # A camera at 30 fps, 20 ms of stages, one frame 45 ms slower: the frames after it go
    # as soon as they are ready again (a smaller credit held every later frame ~30 ms).
    period = 1.0 / 30.0
    ready = [T0 + n * period + 0.020 + (0.045 if n == 50 else 0.0) for n in range(120)]
    sends = _sends(30.0, ready)
    waits = np.array(sends[52:]) - np.array(ready[52:])
    assert waits.max() == pytest.approx(0.0, abs=1e-9)


def test_sends_of_a_fast_renderer_are_one_period_apart() -> None:
    ready = [T0 + n * 0.001 for n in range(60)]  # everything ready at once
    sends = _sends(30.0, ready)
    assert np.diff(sends)[2:] == pytest.approx(np.full(57, 1.0 / 30.0))


def test_sends_after_a_stall_are_paced_not_burst() -> None:
    period = 1.0 / 30.0
    # Frames 0-9 on time, then the renderer stalls for 0.3 s and is fast afterwards.
    ready = [T0 + n * period for n in range(10)] + [T0 + 10 * period + 0.3 + n * 0.001
                                                    for n in range(10)]
    sends = _sends(30.0, ready)
    resumed = ready[10]
    assert sends[10] == pytest.approx(resumed)  # the late frame goes at once
    # ...the credit lets one more go as it is ready, then half a period, then a period.
    assert sends[11] == pytest.approx(ready[11])
    assert sends[12] == pytest.approx(resumed + 0.5 * period)
    assert np.diff(sends[12:]) == pytest.approx(np.full(7, period))


@pytest.mark.parametrize(("fps", "max_lag_s"), [(0.0, 0.5), (float("nan"), 0.5),
                                                (-30.0, 0.5), (30.0, -0.1)])
def test_bad_rates_are_refused_with_the_value(fps: float, max_lag_s: float) -> None:
    with pytest.raises(ValueError, match="fps|max_lag_s"):
        Pacer(fps, max_lag_s=max_lag_s)


@pytest.fixture(scope="module")
def receiver() -> LandmarkReceiver:
    person = load_person("demo")
    assert load_basis(person.folder) is not None
    return LandmarkReceiver(basis_for(person.neutral, person.crop_size, person.folder))


def test_jitter_source_is_paced_by_the_shared_rule(receiver: LandmarkReceiver) -> None:
    clock = FakeClock()
    source = JitterSource(receiver, fps=10.0, clock=clock, sleep=clock.sleep)
    times, seqs = [], []
    for work in [0.0, 0.0, 0.03, 2.0, 0.0, 0.0]:  # a 2 s stall before frame 3
        clock.advance(work)
        frame = source.read()
        times.append(clock.now)
        seqs.append(frame.seq)
        assert frame.truth is not None and frame.truth.shape == (478, 3)
    stalled = T0 + 0.2 + 2.0  # frame 2 left at T0 + 0.2, frame 3 came 2 s after it
    assert times[:3] == pytest.approx([T0, T0 + 0.1, T0 + 0.2])
    assert times[3:] == pytest.approx([stalled, stalled + 0.1, stalled + 0.2])
    # Frame numbers go on through the re-anchoring: seq is the stream's, not the schedule's.
    assert seqs == list(range(6))
    assert sorted(source.shown) == seqs
    source.close()


def test_a_stalled_stream_eases_to_the_senders_resting_face(receiver: LandmarkReceiver
                                                            ) -> None:
    """The sender's adapter rests on the photo's face with its open mouth taken out (the
    basis a call codes with is recentred on it); a receiver that eased a stall to the
    photo's own face opened the demo avatar's mouth on every stall (0.16 of its width),
    a mouth moving with no sound."""
    from avatar_cam.expression import mouth_opening, resting_face

    basis = receiver.basis
    rest = resting_face(basis.neutral)
    eased = basis.synthesize(receiver.buffer.neutral)
    assert mouth_opening(basis.neutral) > 0.05  # the demo photo's lips are apart
    assert abs(mouth_opening(eased) - mouth_opening(rest)) < 0.01
    assert mouth_opening(eased) < 0.1 * mouth_opening(basis.neutral)
