"""Watermark detection (algorithm version 1; see watermark.py for the scheme).

Resample so the tile is TILE px, whiten, fold tiles, correlate with the sync by FFT over
every cyclic shift, decode the symbol positions, and decide on the z-score (with the
CRC-24 for the weaker threshold). Frames of a video add up.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .watermark import (
    ALGORITHM_VERSION,
    ASPECTS,
    CRC_BITS,
    DECODE_TRIES,
    KNOWN_VERSIONS,
    LATTICE,
    MAX_CROP,
    SYMBOLS,
    THRESHOLD,
    TILE,
    WEAK_THRESHOLD,
    _dft,
    _idft_real,
    _Key,
    _key,
    _payload_of,
    _shift_ramp,
    split_payload,
)

# ---- detection -------------------------------------------------------------------------

@dataclass
class Detection:
    """What a detector found in one image or one video.

    score: the sync correlation's z-score (about 3.5..6 when unmarked; THRESHOLD = 8).
    p_value: bound on the chance that unmarked content scores this high (all shifts and
      scales searched); confidence = 1 - p_value.
    payload: the 48-bit payload if its CRC-24 checked, else None.
    frame_scores: per-frame z-scores (a frame is marked on its own when >= THRESHOLD).
    """

    found: bool
    payload: int | None
    confidence: float
    score: float = 0.0
    p_value: float = 1.0
    version: int | None = None
    frames: int = 0
    frame_scores: list[float] = field(default_factory=list)
    scale_height: float | None = None  # the original frame height that matched
    shift: tuple[float, float] = (0.0, 0.0)  # tile offset found, canonical pixels

    @property
    def fingerprint(self) -> int | None:
        return None if self.payload is None else split_payload(self.payload)[0]

    @property
    def minute(self) -> int | None:
        return None if self.payload is None else split_payload(self.payload)[1]

    @property
    def frames_marked(self) -> int:
        return sum(s >= THRESHOLD for s in self.frame_scores)


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def p_value(score: float, candidates: int = len(ASPECTS) + 1) -> float:
    """Union bound: the max over TILE^2 shifts and the scale candidates (and the known
    versions) reaching ``score`` on unmarked content."""
    return min(1.0, TILE * TILE * candidates * len(KNOWN_VERSIONS) * _norm_sf(score))


def candidate_heights(width: int, height: int) -> list[float]:
    """Original frame heights to try: this one, or one implied by the width when the
    top or bottom was cropped away (by at most MAX_CROP)."""
    out = [float(height)]
    for aspect in ASPECTS:
        h0 = width / aspect
        if height * 1.01 < h0 <= height / (1 - MAX_CROP):
            out.append(h0)
    return out


def _to_gray(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("image must be an (H, W, 3) uint8 BGR or (H, W) uint8 gray array")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"image must have 3 channels (BGR), got {image.shape}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image.astype(np.float32)


def whitened_spectrum(gray: np.ndarray, height0: float, mask: np.ndarray) -> np.ndarray:
    """Phase-only spectrum of the folded, locally whitened frame, assuming it was
    ``height0`` pixels high when marked. (TILE, TILE) complex64, zero off the band."""
    s = TILE / height0
    # An integer area reduction (fast) and then a linear one for the rest: one
    # cv2.INTER_AREA resize at a fractional scale costs 6 ms at 720p.
    k = max(1, int(1 / s))
    if k > 1:
        h, w = gray.shape
        gray = cv2.resize(gray[: h - h % k, : w - w % k], (w // k, h // k),
                          interpolation=cv2.INTER_AREA)
    g = cv2.resize(gray, None, fx=s * k, fy=s * k, interpolation=cv2.INTER_LINEAR)
    # High-pass then divide by local contrast: textured regions (where the picture
    # swamps the mark) count for less, flat ones (where the mark is clean) for more.
    hp = g - cv2.GaussianBlur(g, (0, 0), 3.0)
    env = np.sqrt(cv2.GaussianBlur(hp * hp, (0, 0), 4.0))
    r = np.clip(hp / (env + 0.3), -3.0, 3.0)
    fold = np.zeros((TILE, TILE), np.float32)
    h, w = r.shape
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            block = r[y:y + TILE, x:x + TILE]
            fold[: block.shape[0], : block.shape[1]] += block
    spec = _dft(fold)
    return np.where(mask, spec / (np.abs(spec) + 1e-12), 0).astype(np.complex64)


def _peak(surface: np.ndarray) -> tuple[float, float, float]:
    """(value, row, col) of the maximum, refined to sub-pixel by parabolas."""
    y, x = np.unravel_index(int(np.argmax(surface)), surface.shape)
    n = TILE

    def vertex(a: float, b: float, c: float) -> float:
        d = a - 2 * b + c
        return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))

    dy = vertex(surface[(y - 1) % n, x], surface[y, x], surface[(y + 1) % n, x])
    dx = vertex(surface[y, (x - 1) % n], surface[y, x], surface[y, (x + 1) % n])
    return float(surface[y, x]), float(y + dy), float(x + dx)


def _correlate(spec: np.ndarray, pattern: np.ndarray, bins: int) -> np.ndarray:
    """z-scores of the cyclic correlation at every shift (N(0, 1) for random phases)."""
    return _idft_real(spec * np.conj(pattern)) * np.float32(TILE * TILE / math.sqrt(bins))


def _unit(spec: np.ndarray) -> np.ndarray:
    return spec / np.maximum(np.abs(spec), 1e-12)


def _decode(spec: np.ndarray, key: _Key, dy: float, dx: float) -> int | None:
    """Payload from the symbol peaks relative to the sync at (dy, dx); None if no CRC fits."""
    aligned = spec * np.conj(_shift_ramp(dy, dx))
    best: list[list[tuple[float, int]]] = []
    for pattern in key.symbols:
        lattice = _correlate(aligned, pattern, key.bins)[::LATTICE, ::LATTICE].ravel()
        top = np.argsort(lattice)[-2:][::-1]
        best.append([(float(lattice[i]), int(i)) for i in top])
    first = [b[0][1] for b in best]
    tries = [first]
    # A short list: the runner-up for the weakest one or two symbols.
    order = sorted(range(SYMBOLS), key=lambda i: best[i][0][0] - best[i][1][0])
    for i in order[:3]:
        tries.append([best[j][1][1] if j == i else first[j] for j in range(SYMBOLS)])
    for a, b in ((order[0], order[1]), (order[0], order[2]), (order[1], order[2])):
        tries.append([best[j][1][1] if j in (a, b) else first[j] for j in range(SYMBOLS)])
    for symbols in tries:
        payload = _payload_of(symbols)
        if payload is not None:
            return payload
    return None


_Sums = dict[tuple[int, tuple[int, int], float], np.ndarray]


class Detector:
    """add(image) -> per-frame score; result() -> Detection over all frames added.

    Frames of one video accumulate: each frame's whitened spectrum is summed per
    assumed original height, so a mark buried in single frames adds up over time while
    unmarked content does not (its phases stay random). The payload is also decoded
    per ``window`` frames, because it changes once a minute within a long video.
    """

    def __init__(self, versions: Iterable[int] = KNOWN_VERSIONS, window: int = 30) -> None:
        self._keys = {v: _key(v) for v in versions}
        # (version, frame size, assumed original height) -> sum of whitened spectra
        self._sums: _Sums = {}
        self._window_sums: _Sums = {}
        self.window = window
        self.windows = 0
        self.window_payloads: list[int] = []  # CRC-checked payloads of finished windows
        self.frame_scores: list[float] = []

    def add(self, image: np.ndarray) -> float:
        gray = _to_gray(image)
        h, w = gray.shape
        if h < 32 or w < 32:
            raise ValueError(f"image too small to carry a mark: {w}x{h}")
        best = -math.inf
        specs: dict[float, np.ndarray] = {}
        for key in self._keys.values():
            for h0 in candidate_heights(w, h):
                if h0 not in specs:
                    specs[h0] = whitened_spectrum(gray, h0, key.mask)
                spec = specs[h0]
                best = max(best, float(_correlate(spec, key.sync, key.bins).max()))
                k = (key.version, (w, h), h0)
                for sums in (self._sums, self._window_sums):
                    sums[k] = sums[k] + spec if k in sums else spec.copy()
        self.frame_scores.append(best)
        if self.window and len(self.frame_scores) % self.window == 0:
            self._end_window()
        return best

    def _end_window(self) -> None:
        _score, _v, _h0, _shift, payload = self._analyze(self._window_sums)
        self.windows += 1
        if payload is not None:
            self.window_payloads.append(payload)
        self._window_sums = {}

    def _analyze(self, sums: _Sums
                 ) -> tuple[float, int, float, tuple[float, float], int | None]:
        """(score, version, original height, shift, payload) of the best hypothesis."""
        best: tuple[float, int, float, float, float, np.ndarray] | None = None
        for (version, _size, h0), total in sums.items():
            key = self._keys[version]
            spec = _unit(total) * key.mask
            score, dy, dx = _peak(_correlate(spec, key.sync, key.bins))
            if best is None or score > best[0]:
                best = (score, version, h0, dy, dx, spec)
        if best is None:
            return -math.inf, ALGORITHM_VERSION, 0.0, (0.0, 0.0), None
        score, version, h0, dy, dx, spec = best
        payload = _decode(spec, self._keys[version], dy, dx) if score >= WEAK_THRESHOLD \
            else None
        return score, version, h0, (dy, dx), payload

    def result(self) -> Detection:
        if not self._sums:
            return Detection(False, None, 0.0)
        score, version, h0, shift, payload = self._analyze(self._sums)
        tries = DECODE_TRIES
        if payload is None and self.window_payloads and score >= WEAK_THRESHOLD:
            payload = Counter(self.window_payloads).most_common(1)[0][0]
            tries *= 1 + self.windows
        found = score >= THRESHOLD or payload is not None
        p = p_value(score)
        if score < THRESHOLD and payload is not None:
            p = min(1.0, p * tries / (1 << CRC_BITS))  # sync and a chance CRC match
        return Detection(found, payload if found else None, 1.0 - p, score, p,
                         version if found else None, len(self.frame_scores),
                         list(self.frame_scores), h0, shift)

    def close(self) -> None:
        self._sums.clear()
        self._window_sums.clear()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect(images: np.ndarray | Iterable[np.ndarray]) -> Detection:
    """Detect the mark in one (H, W, 3) uint8 BGR image or in the frames of one video."""
    detector = Detector()
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype == np.uint8 \
            and (images.ndim == 2 or images.shape[2] == 3):
        detector.add(images)
    else:
        for image in images:
            detector.add(image)
    return detector.result()
