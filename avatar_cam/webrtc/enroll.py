"""Learning a person's landmark basis (see ``basis``): at enrollment, or on the fly.

The training data, for a person enrolled from one photo:

1. animate() shapes: the motion script's talking, blinking, smiling and brows plus
   random mixes of them (exact, noise-free expressions);
2. ``tracked_sequences``: footage of the person acting a *random* motion script (not
   ``motion.script``, which tests and benchmarks drive with), warp-rendered, tracked by
   MediaPipe and adapted, i.e. exactly what a live sender transmits. It adds what
   animate() lacks: the face contour sliding as the head turns, and tracker noise.

``python -m avatar_cam.webrtc.enroll NAME`` learns from both and saves the basis with the
person, signing the folder again (about a minute on 2 cores); ``basis_for`` falls back
to (1) alone when none is saved (12 components, a few seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import mesh, motion
from ..person import Person
from ..types import N_LANDMARKS, check_points
from .basis import (
    COEF_LIMIT_FACTOR,
    COEF_STEP,
    LOG_SCALE_LIMIT,
    LOG_SCALE_STEP,
    MAX_COMPONENTS,
    N_POSE,
    ROT_LIMIT,
    ROT_STEP,
    TRANS_LIMIT,
    TRANS_STEP,
    ExpressionBasis,
    best_order,
    fit_pose,
    load_basis,
    save_basis,
)


def _expression_only(m: motion.Motion) -> motion.Motion:
    return motion.Motion(jaw_open=m.jaw_open, blink_left=m.blink_left,
                         blink_right=m.blink_right, smile=m.smile, brow_raise=m.brow_raise)


def training_motions(fps: float = 15.0, extra: int = 180, seed: int = 0) -> list[motion.Motion]:
    """The script's expressions over one period (no head motion) plus random mixes."""
    out = [_expression_only(motion.script(i / fps)) for i in range(int(motion.PERIOD_S * fps))]
    rng = np.random.default_rng(seed)
    for _ in range(extra):
        u = rng.random(7)
        wink = u[5] < 0.3
        out.append(motion.Motion(jaw_open=u[0], smile=u[3], brow_raise=u[4],
                                 blink_left=u[1] * wink, blink_right=u[2] * wink * (u[6] < .5)))
    return out


def random_script(seed: int, seconds: float) -> Callable[[float], motion.Motion]:
    """A motion script unlike ``motion.script``: random head sway, talking spells,
    blinks, smiles and brow raises (so a basis learned on it is tested on the script)."""
    rng = np.random.default_rng(seed)
    waves = [(rng.uniform(0.05, 0.5), rng.uniform(0.0, 2 * math.pi)) for _ in range(10)]
    amps = (22.0, 22.0, 10.0, 10.0, 7.0, 7.0, 0.05, 0.05, 0.03, 0.03)
    blinks = np.sort(rng.uniform(0.0, seconds, max(1, int(seconds / 3))))

    def spells(n: int, lo: float, hi: float) -> list[tuple[float, float]]:
        return [(s, s + rng.uniform(lo, hi)) for s in np.sort(rng.uniform(0.0, seconds, n))]

    talk, smile = spells(int(seconds / 5), 1.0, 4.0), spells(int(seconds / 8), 0.8, 3.0)
    brow, syllables = spells(int(seconds / 6), 0.4, 1.5), rng.uniform(3.0, 6.0)

    def at(t: float) -> motion.Motion:
        v = [a * math.sin(2 * math.pi * w * t + ph) for a, (w, ph) in zip(amps, waves,
                                                                          strict=True)]
        talking = sum(motion._window(t, a, b, 0.2) for a, b in talk)
        jaw = talking * (0.4 + 0.6 * abs(math.sin(math.pi * syllables * t))) \
            * (0.5 - 0.5 * math.cos(2 * math.pi * syllables * t))
        blink = sum(motion._blink(t, b) for b in blinks)
        return motion.Motion(
            yaw=v[0] + v[1], pitch=v[2] + v[3], roll=v[4] + v[5], offset_x=v[6] + v[7],
            offset_y=v[8] + v[9], jaw_open=min(jaw, 1.0), blink_left=blink, blink_right=blink,
            smile=min(1.0, sum(motion._window(t, a, b, 0.3) for a, b in smile)),
            brow_raise=min(1.0, sum(motion._window(t, a, b, 0.2) for a, b in brow)))

    return at


def tracked_sequences(person: Person, seconds: float = 20.0, seeds: tuple[int, ...] = (1, 2),
                      fps: float = 30.0) -> list[np.ndarray]:
    """What the live sender would transmit for this person: footage of the person acting
    ``random_script`` (warp-rendered at 640x480), tracked by MediaPipe and adapted onto
    the person's neutral. Captures what animate() alone lacks: how the tracker's face
    contour slides as the head turns, and its noise. About 25 s per 20 s on 2 cores."""
    from ..drive import Adapter
    from ..footage import Footage
    from ..tracking import MediaPipeTracker
    from ..types import Frame

    class _Scripted(Footage):
        acting: Callable[[float], motion.Motion]  # set per instance below

        def landmarks_at(self, t_s: float) -> np.ndarray:
            return motion.animate(self.person.neutral, self.acting(t_s))

    out = []
    for seed in seeds:
        footage = _Scripted(person, (640, 480), fps)
        footage.acting = random_script(seed, seconds)
        adapter = Adapter(person.neutral, (person.crop_size, person.crop_size))
        frames = []
        with MediaPipeTracker() as tracker:
            for n in range(int(seconds * fps)):
                image, _ = footage.frame(n)
                t_ns = int(n * 1e9 / fps)
                lm = tracker.track(Frame(n, t_ns, image))
                frames.append(adapter.drive(lm, n, t_ns).points)
        out.append(np.asarray(frames))
    return out


def _residuals(neutral: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    n = neutral.astype(np.float64)
    iod = mesh.inter_ocular(n)
    rows = []
    for p in shapes:
        s, r, t = fit_pose(n, p)
        rows.append((((p - t) @ r / s) - n).reshape(-1) / iod)
    return np.asarray(rows)


def learn_basis(neutral: np.ndarray, size: tuple[int, int],
                sequences: list[np.ndarray] | None = None, k: int | None = None
                ) -> ExpressionBasis:
    """PCA basis of a person's expression residuals; see the module docstring.

    neutral: (478, 3) float32 in crop pixels of ``size``; sequences: optional
    (T, 478, 3) landmark sequences of the person in the same pixels (a clip enrollment,
    or ``tracked_sequences``). k: components, default 24 with sequences, else 12 (animate
    alone has about ten independent directions).
    """
    check_points(neutral)
    k = k if k is not None else (24 if sequences else 12)
    if not 1 <= k <= MAX_COMPONENTS:
        raise ValueError(f"k must be in 1..{MAX_COMPONENTS}, got {k}")
    shapes = [motion.animate(neutral, m).astype(np.float64) for m in training_motions()]
    source = "animate"
    for seq in sequences or []:
        arr = np.asarray(seq, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[1:] != (N_LANDMARKS, 3) or not np.isfinite(arr).all():
            raise ValueError(f"sequences must be finite (T, 478, 3) arrays, got {arr.shape}")
        shapes.extend(arr)
        source = "animate+tracked"
    x = _residuals(neutral, np.asarray(shapes))
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[:k]
    # Deterministic signs (SVD's are arbitrary): the largest entry of each row positive.
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    coeffs = (x - mean) @ components.T
    steps = np.array([ROT_STEP] * 3 + [LOG_SCALE_STEP] + [TRANS_STEP] * 3 + [COEF_STEP] * k)
    coef_limit = np.maximum(COEF_LIMIT_FACTOR * np.abs(coeffs).max(axis=0), 0.5)
    limits = np.ceil(np.concatenate([[ROT_LIMIT] * 3, [LOG_SCALE_LIMIT], [TRANS_LIMIT] * 3,
                                     coef_limit]) / steps).astype(np.int64)
    zeros = np.zeros(N_POSE + k, np.int64)
    partial = ExpressionBasis(neutral.astype(np.float32), (int(size[0]), int(size[1])),
                              mean.astype(np.float32), components.astype(np.float32), steps,
                              limits, zeros, zeros, source)
    order_key, order_delta = _orders(partial, sequences)
    return ExpressionBasis(partial.neutral, partial.size, partial.mean, partial.components,
                           steps, limits, order_key, order_delta, source)


def _orders(basis: ExpressionBasis, sequences: list[np.ndarray] | None,
            fps: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Exp-Golomb orders from 30 fps sequences: the given ones, else 6 s of the script."""
    runs = [np.asarray(s, dtype=np.float32) for s in sequences or []]
    if not runs:
        runs = [np.stack([motion.animate(basis.neutral, motion.script(i / fps))
                          for i in range(int(6 * fps))])]
    keys, deltas = [], []
    for run in runs:
        q = np.asarray([basis.quantize(basis.analyze(p))[0] for p in run])
        keys.append(q)
        deltas.append(np.diff(q, axis=0))
    q, d = np.concatenate(keys), np.concatenate(deltas)
    key = np.array([best_order(q[:, j]) for j in range(q.shape[1])], np.int64)
    delta = np.array([best_order(d[:, j]) for j in range(d.shape[1])], np.int64)
    return key, delta


def basis_for(neutral: np.ndarray, crop_size: int, folder: Path | None = None) -> ExpressionBasis:
    """The basis a call's sender codes with: the person's saved basis if ``folder`` has
    one, else one learned now (in memory), recentred on the resting face the live
    adapter drives (``expression.resting_face``: the photo's smile or open mouth taken
    out), since that, not the photo's face, is what a neutral driver sends.

    Always returned as parsed from its own bytes, so the sender encodes with exactly
    the numbers the receiver decodes with.
    """
    from ..expression import resting_face

    basis = load_basis(folder) if folder is not None else None
    if basis is None:
        basis = learn_basis(neutral, (crop_size, crop_size))
    return basis.recentred(resting_face(neutral))


def enroll_basis(person: Person, seconds: float = 20.0) -> Path:
    """Learn the person's basis from animate() and tracked footage and save it with them.

    A person folder is signed over every file (``honesty.signing``), so adding the basis
    means signing again: with this user's key, keeping the owner's name and consent, as
    enrolling does. (Enrollment itself should save the basis before it signs.)
    """
    from ..honesty.signing import sign_model

    basis = learn_basis(person.neutral, (person.crop_size, person.crop_size),
                        tracked_sequences(person, seconds))
    path = save_basis(basis, person.folder)
    owner = person.owner
    sign_model(person.folder, getattr(owner, "name", None), getattr(owner, "consent", None))
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m avatar_cam.webrtc.basis NAME``: (re)learn NAME's landmark basis."""
    import argparse

    from ..person import load_person

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("name")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(enroll_basis(load_person(args.name), args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
