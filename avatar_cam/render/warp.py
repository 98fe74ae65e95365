"""WarpRenderer: the enrolled face crop warped piecewise-affinely onto new landmarks.

Needs no training. The mesh is built once from the neutral landmarks (``build_mesh``):

- vertices: the 468 face-mesh points (the 10 iris points are left out: they fold on
  blinks), a ring of 36 points around the face (the face-oval points pushed away from the
  oval's centroid by ``RING_SCALE``, less where that would leave the crop) that carries
  hair and neck, and 16 fixed points on the crop border so the picture edge stays put;
- triangles: a Delaunay triangulation (cv2.Subdiv2D) with the inner-lip contour and the
  face oval forced in as edges by edge flips. Plain Delaunay joins upper to lower lip
  across the mouth (smearing lip over an opening mouth) and cheek points to the ring.
  Triangles inside the inner lips are dropped: the mouth is a hole.

Per frame (``render``): the ring follows the head rigidly (a similarity fitted on
mesh.RIGID); every target triangle is filled with its index into a map at ``grid``
resolution (background first, then the face far-to-near by landmark z, so a turned head's
nose hides its cheek; folded triangles are skipped); holes take their nearest triangle;
each triangle's inverse affine turns the map into source coordinates (vectorized),
upsampled to the output (the maps are continuous) for one ``cv2.remap`` of the crop. An
open mouth is then painted (``draw_mouth``): the neutral's own interior moving with the
upper lip when the neutral shows teeth, else drawn teeth and cavity. Coordinates follow
MediaPipe (pixel ``i`` spans ``[i, i + 1)``); OpenCV calls get ``- 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import cv2
import numpy as np

from .. import mesh
from ..geometry import similarity_2x3
from ..types import Landmarks, check_points
from .eyes import Eyes
from .mouth import draw_mouth, fill_polygon, mouth_gap, mouth_width, polygon_area

MouthMode = Literal["auto", "source", "drawn"]

N_FACE = 468  # mesh points without the iris
RING_SCALE = mesh.RING_SCALE
RING_MARGIN = 0.02  # of the crop side: ring points stay this far inside the border
BORDER_STEPS = 4  # border points per side (corners included once)
SHIFT = 4  # fixed-point bits for OpenCV drawing
OPEN_NEUTRAL = 0.08  # neutral gap / mouth width above which the neutral mouth is "open"
OPEN_TARGET_PX2 = 2.0  # inner-lip area (render pixels^2) above which a mouth is drawn

_OVAL = np.array(mesh.FACE_OVAL[:-1], dtype=np.intp)
_RIGID = np.array(mesh.RIGID, dtype=np.intp)
_INNER = np.array(mesh.LIPS_INNER[:-1], dtype=np.intp)  # closed contour, first not repeated
_UPPER = np.array(mesh.UPPER_INNER_LIP, dtype=np.intp)  # 78 -> 308 over the top
_LOWER = np.array(mesh.LOWER_INNER_LIP, dtype=np.intp)  # 78 -> 308 along the bottom
# The lip rows just outside the inner contour, pairwise with _UPPER[1:-1] / _LOWER[1:-1].
_UPPER_SEMI = np.array((183, 42, 41, 38, 12, 268, 271, 272, 407), dtype=np.intp)
_LOWER_SEMI = np.array((96, 89, 179, 86, 15, 316, 403, 319, 325), dtype=np.intp)


@dataclass(frozen=True)
class WarpMesh:
    """Triangulation built from a neutral face at ``resolution`` (square render space)."""

    resolution: int
    triangles: np.ndarray  # (T, 3) intp indices into the extended vertices
    ring: np.ndarray  # (36, 2) float64 neutral ring around the face
    anchor: np.ndarray  # (len(mesh.RIGID), 2) float64 neutral rigid points
    source: np.ndarray  # (N_FACE + 36 + 4 * BORDER_STEPS, 2) float64 neutral vertices
    background: np.ndarray  # (T,) bool: triangle outside the face oval
    mouth_source: bool  # True: the neutral mouth interior is warped, not drawn


def border_points(resolution: int) -> np.ndarray:
    """(4 * BORDER_STEPS, 2) points on the picture edge, corners included."""
    r = float(resolution)
    t = np.arange(BORDER_STEPS) * r / BORDER_STEPS
    return np.concatenate([np.stack([t, np.zeros_like(t)], 1),
                           np.stack([np.full_like(t, r), t], 1),
                           np.stack([r - t, np.full_like(t, r)], 1),
                           np.stack([np.zeros_like(t), r - t], 1)])


def extend(face: np.ndarray, warp_mesh: WarpMesh, border: np.ndarray | None = None) -> np.ndarray:
    """(468, 2) target face points -> (N_FACE + 36 + 16, 2) vertices: the face, the neutral
    ring moved rigidly with the head (a 2D similarity fitted on mesh.RIGID, so it neither
    squashes as the far cheek turns away nor drags the neck down with the chin), and the
    border (``border_points(resolution)``, passed in to save recomputing it)."""
    r = warp_mesh.resolution
    m = similarity_2x3(warp_mesh.anchor, face[_RIGID]).reshape(2, 3)
    margin = RING_MARGIN * r
    ring = np.clip(warp_mesh.ring @ m[:, :2].T + m[:, 2], margin, r - margin)
    return np.concatenate([face, ring, border_points(r) if border is None else border])


def _ring_scale(face: np.ndarray, resolution: int) -> np.ndarray:
    """Per face-oval point, how far (x the distance from the oval's centroid) its ring
    point goes: RING_SCALE, less where the crop ends, never under 1.05."""
    oval = face[_OVAL]
    d = oval - oval.mean(axis=0)
    lo, hi = RING_MARGIN * resolution, (1 - RING_MARGIN) * resolution
    centre = oval.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Largest factor that keeps centre + k * d inside [lo, hi] on both axes.
        kx = np.where(d[:, 0] > 0, (hi - centre[0]) / d[:, 0], (lo - centre[0]) / d[:, 0])
        ky = np.where(d[:, 1] > 0, (hi - centre[1]) / d[:, 1], (lo - centre[1]) / d[:, 1])
    limit = np.nan_to_num(np.minimum(kx, ky), nan=RING_SCALE, posinf=RING_SCALE)
    return np.clip(limit, 1.05, RING_SCALE)


def _topology(face: np.ndarray) -> np.ndarray:
    """The face as triangulated (only the connectivity is taken from it): the inner lips
    pushed apart a little (never past the next lip row), so that the inner-lip constraints
    are well defined even when the neutral lips touch or cross, and the few mesh points on
    or just outside the face oval (the side of the cheeks, jaw) pulled inside it, so that
    between oval and ring there are only oval, ring and border points."""
    out = face.copy()
    oval = face[_OVAL].astype(np.float32)
    centre = face[_OVAL].mean(axis=0)
    margin = 0.02 * mesh.inter_ocular(face)
    for i in sorted(set(range(N_FACE)) - set(_OVAL.tolist())):
        for _ in range(40):
            p = (float(out[i, 0]), float(out[i, 1]))
            if cv2.pointPolygonTest(oval, p, True) >= margin:
                break
            out[i] = centre + 0.98 * (out[i] - centre)
    a, b = face[_UPPER[0]], face[_UPPER[-1]]
    width = float(np.linalg.norm(b - a))
    if width < 1e-6:
        return out
    n = np.array([-(b - a)[1], (b - a)[0]]) / width  # towards the chin
    k = np.arange(1, len(_UPPER) - 1)
    want = 0.06 * width * np.sin(np.pi * k / (len(_UPPER) - 1))
    up, lo = face[_UPPER[1:-1]], face[_LOWER[1:-1]]
    need = np.maximum(want - (lo - up) @ n, 0.0) / 2
    room_up = np.maximum((up - face[_UPPER_SEMI]) @ n, 0.0) * 0.45
    room_lo = np.maximum((face[_LOWER_SEMI] - lo) @ n, 0.0) * 0.45
    out[_UPPER[1:-1]] -= np.minimum(need, room_up)[:, None] * n
    out[_LOWER[1:-1]] += np.minimum(need, room_lo)[:, None] * n
    return out


def _cross(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether segments p-q (arrays of them) and a-b properly intersect."""
    def side(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.sign((v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1])
                       - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0]))
    return np.asarray((side(p, q, a) * side(p, q, b) < 0) & (side(a, b, p) * side(a, b, q) < 0))


def _force_edges(pts: np.ndarray, tris: list[list[int]], edges: list[tuple[int, int]]) -> None:
    """Flip edges (in place) until each constraint edge is in the triangulation, as far as
    flips of convex quads allow (Sloan's constrained-Delaunay insertion, simplified; near-
    degenerate lips can make it cycle, hence the cap)."""
    owner: dict[tuple[int, int], list[int]] = {}
    for t, tri in enumerate(tris):
        for i in range(3):
            owner.setdefault((min(tri[i], tri[i - 1]), max(tri[i], tri[i - 1])), []).append(t)

    def move(edge: tuple[int, int], old: int, new: int) -> None:
        key = (min(edge), max(edge))
        owner[key] = [new if t == old else t for t in owner[key]]

    for u, v in edges:
        for _ in range(64):
            if (min(u, v), max(u, v)) in owner:
                break
            keys = [e for e, ts in owner.items() if u not in e and v not in e and len(ts) == 2]
            arr = np.array(keys)
            hits = np.flatnonzero(_cross(pts[arr[:, 0]], pts[arr[:, 1]], pts[u], pts[v]))
            for h in hits.tolist():
                p, q = keys[h]
                t1, t2 = owner[(p, q)]
                r = next(x for x in tris[t1] if x not in (p, q))
                s = next(x for x in tris[t2] if x not in (p, q))
                if _cross(pts[r], pts[s], pts[p], pts[q]):  # convex quad: the flip is valid
                    tris[t1], tris[t2] = [r, s, p], [s, r, q]
                    del owner[(p, q)]
                    owner[(min(r, s), max(r, s))] = [t1, t2]
                    move((q, r), t1, t2)
                    move((p, s), t2, t1)
                    break
            else:
                break  # stuck (crossing constraints): the caller drops spanning triangles


def build_mesh(neutral: np.ndarray, size: tuple[int, int], resolution: int,
               mouth: MouthMode = "auto") -> WarpMesh:
    """Triangulate (478, 3) ``neutral`` landmarks (pixels of ``size``) in render space."""
    check_points(neutral)
    scale = np.array([resolution / size[0], resolution / size[1]])
    face = neutral[:N_FACE, :2].astype(np.float64) * scale
    if mesh.inter_ocular(face) < 2.0:
        raise ValueError("neutral landmarks are degenerate (eyes less than 2 px apart)")
    oval = face[_OVAL]
    centre = oval.mean(axis=0)
    ring = centre + _ring_scale(face, resolution)[:, None] * (oval - centre)
    border = border_points(resolution)
    source = np.concatenate([face, ring, border])
    topo = np.concatenate([_topology(face), ring, border])

    pad = resolution
    sub = cv2.Subdiv2D((-pad, -pad, 3 * pad, 3 * pad))
    first: dict[tuple[float, float], int] = {}
    key = topo.astype(np.float32)
    for i, (x, y) in enumerate(key.tolist()):
        first.setdefault((x, y), i)
        sub.insert((x, y))
    tris = [[first[(float(t[j]), float(t[j + 1]))] for j in (0, 2, 4)]
            for t in np.asarray(sub.getTriangleList()).tolist()
            if all((float(t[j]), float(t[j + 1])) in first for j in (0, 2, 4))]
    contours = [(int(a), int(b)) for ring_ in (_INNER, _OVAL)
                for a, b in zip(ring_, np.roll(ring_, -1), strict=True)]
    _force_edges(topo, tris, contours)
    tri = np.array(tris, dtype=np.intp)

    inner, up, lo = set(_INNER.tolist()), set(_UPPER[1:-1].tolist()), set(_LOWER[1:-1].tolist())
    poly = topo[_INNER].astype(np.float32)
    drop = []
    for t in tri.tolist():
        ts = set(t)
        centre = topo[t].mean(axis=0)
        inside = ts <= inner and cv2.pointPolygonTest(poly, centre.tolist(), False) > 0
        spans = bool(ts & up) and bool(ts & lo) and not ts <= inner
        drop.append(inside or spans)
    tri = tri[~np.array(drop, dtype=bool)]
    oval_poly, oval_set = topo[_OVAL].astype(np.float32), set(_OVAL.tolist())
    background = np.array([max(t) >= N_FACE or (set(t) <= oval_set and cv2.pointPolygonTest(
        oval_poly, topo[t].mean(axis=0).tolist(), False) < 0) for t in tri.tolist()], dtype=bool)
    mouth_source = mouth == "source" or (
        mouth == "auto" and mouth_gap(face) > OPEN_NEUTRAL * mouth_width(face))
    return WarpMesh(resolution, tri, ring, face[_RIGID], source, background, bool(mouth_source))


def _affines(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle the 2x3 affine taking (T, 3, 2) ``dst`` points to ``src`` points, as
    (T, 6) [a, b, c, d, e, f] (x' = a x + b y + c, y' = d x + e y + f), and a validity mask
    (False for triangles with (near) zero area, which cover no pixel)."""
    e1, e2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-6
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    # inverse of E = [e1 e2] (2x2, columns)
    i00, i01 = e2[:, 1] * inv_det, -e2[:, 0] * inv_det
    i10, i11 = -e1[:, 1] * inv_det, e1[:, 0] * inv_det
    d1, d2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
    a = d1[:, 0] * i00 + d2[:, 0] * i10
    b = d1[:, 0] * i01 + d2[:, 0] * i11
    d = d1[:, 1] * i00 + d2[:, 1] * i10
    e = d1[:, 1] * i01 + d2[:, 1] * i11
    c = src[:, 0, 0] - a * dst[:, 0, 0] - b * dst[:, 0, 1]
    f = src[:, 0, 1] - d * dst[:, 0, 0] - e * dst[:, 0, 1]
    return np.stack([a, b, c, d, e, f], axis=1), ok


def _nearest_fill(index: np.ndarray) -> None:
    """Give each cell < 0 (in place) the value of the nearest cell >= 0, 0 if none is.
    Only the holes' bounding box (plus a margin that holds their nearest cells) is
    searched: the holes are the mouth and a few slivers."""
    hole = (index < 0).view(np.uint8)
    if not hole.any():
        return
    x, y, w, h = cv2.boundingRect(hole)
    y0, y1 = max(y - 2, 0), min(y + h + 2, index.shape[0])
    x0, x1 = max(x - 2, 0), min(x + w + 2, index.shape[1])
    sub, sub_hole = index[y0:y1, x0:x1], hole[y0:y1, x0:x1]
    known = np.flatnonzero(sub_hole.ravel() == 0)
    if known.size == 0:
        sub[...] = 0
        return
    # DIST_LABEL_PIXEL numbers the zero (known) pixels 1, 2, ... in raster order.
    _, labels = cv2.distanceTransformWithLabels(np.ascontiguousarray(sub_hole), cv2.DIST_L2, 3,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    sub[...] = sub.ravel()[known[labels.ravel() - 1]].reshape(sub.shape)


def _upsample(grid_map: np.ndarray, r: int) -> np.ndarray:
    """Bilinear (g, g) -> (r, r), exact for an affine map also at the picture edge, where
    cv2.resize would clamp (it samples the outermost pixels beyond the first cell centre)."""
    out = cv2.resize(grid_map, (r, r), interpolation=cv2.INTER_LINEAR)
    k = int(np.ceil(0.5 * r / grid_map.shape[0] - 0.5))  # clamped pixels on each side
    if k > 0 and r > 2 * k + 1:
        steps = np.arange(-k, 0, dtype=np.float32)
        col = steps[None, :]
        out[:, :k] = out[:, k:k + 1] + col * (out[:, k + 1:k + 2] - out[:, k:k + 1])
        out[:, -k:] = out[:, -k - 1:-k] - col[:, ::-1] * (out[:, -k - 1:-k] - out[:, -k - 2:-k - 1])
        row = steps[:, None]
        out[:k] = out[k:k + 1] + row * (out[k + 1:k + 2] - out[k:k + 1])
        out[-k:] = out[-k - 1:-k] - row[::-1] * (out[-k - 1:-k] - out[-k - 2:-k - 1])
    return out


class WarpRenderer:
    """Renders the enrolled crop warped onto target landmarks.

    crop: (S, S, 3) uint8 BGR aligned face crop; neutral: (478, 3) float32 landmarks in its
    pixels. ``render(lm)`` returns (resolution, resolution, 3) uint8 BGR for ``lm.points``
    in pixels of ``lm.size`` (the same crop space, rescaled when the sizes differ).
    mouth: "source" warps the neutral's own mouth interior (teeth) along with the upper lip
    and draws a cavity where the mouth opens wider; "drawn" always draws the interior;
    "auto" picks "source" when the neutral mouth is open (gap > OPEN_NEUTRAL * width).
    grid: side of the triangle-index map (default resolution // 2, at least 64); the
    piecewise-affine coordinate maps are continuous, so they are upsampled from it.
    Deterministic; not reentrant (``render`` reuses a buffer): one renderer per thread.
    """

    def __init__(self, crop: np.ndarray, neutral: np.ndarray, resolution: int = 256,
                 mouth: MouthMode = "auto", grid: int | None = None) -> None:
        if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3 \
                or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1] or crop.shape[0] < 8:
            got = f"{crop.shape} {crop.dtype}" if isinstance(crop, np.ndarray) \
                else type(crop).__name__
            raise ValueError(f"crop must be a square (S, S, 3) uint8 BGR image, got {got}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) \
                or not 32 <= resolution <= 2048:
            raise ValueError(f"resolution must be an integer in [32, 2048], got {resolution!r}")
        if mouth not in ("auto", "source", "drawn"):
            raise ValueError(f"mouth must be 'auto', 'source' or 'drawn', got {mouth!r}")
        r = resolution
        g = min(r, max(64, r // 2)) if grid is None else grid
        if isinstance(g, bool) or not isinstance(g, int) or not 16 <= g <= r:
            raise ValueError(f"grid must be an integer in [16, resolution], got {grid!r}")
        size = (crop.shape[1], crop.shape[0])
        self.resolution, self.grid = r, g
        self.mesh = build_mesh(neutral, size, r, mouth)
        interp = cv2.INTER_AREA if crop.shape[0] > r else cv2.INTER_LINEAR
        self._src = np.ascontiguousarray(cv2.resize(crop, (r, r), interpolation=interp))
        self._mouth_src: np.ndarray | None = None
        if self.mesh.mouth_source:
            # BGRA: alpha marks the neutral mouth interior, so the warped interior shows
            # where it reaches and the drawn cavity elsewhere.
            inner = (fill_polygon((r, r), self.mesh.source[_INNER] - 0.5) * 255).astype(np.uint8)
            self._mouth_src = np.dstack([self._src, inner])
        # The warp moves the eyeball without its irises; render() draws them back at the
        # target's iris points, inside its lids (see render/eyes.py).
        self._eyes = Eyes(self._src, neutral[:, :2].astype(np.float64) * (r / np.array(size)))
        self._src = self._eyes.eyeball
        self._neutral_gap = mouth_gap(self.mesh.source[:N_FACE])
        self._src_tri = self.mesh.source[self.mesh.triangles]  # (T, 3, 2)
        self._src_upper = self.mesh.source[_UPPER]
        self._border = border_points(r)
        self._tri_face = np.minimum(self.mesh.triangles, N_FACE - 1)  # for depth: face only
        jj, ii = np.meshgrid(np.arange(g, dtype=np.float32), np.arange(g, dtype=np.float32))
        self._jj, self._ii = jj.ravel(), ii.ravel()
        self._rows = np.empty((g * g, 6), np.float32)  # per grid cell: its triangle's affine
        self._closed = False

    def render(self, lm: Landmarks) -> np.ndarray:
        """(resolution, resolution, 3) uint8 BGR: the crop warped onto ``lm``."""
        if self._closed:
            raise RuntimeError("WarpRenderer is closed")
        check_points(lm.points)
        r, g = self.resolution, self.grid
        w, h = lm.size
        if w <= 0 or h <= 0:
            raise ValueError(f"landmark image size must be positive, got {lm.size!r}")
        pts = lm.points.astype(np.float64)
        # Far-off points would only overflow fixed-point drawing; the picture is unchanged.
        face = np.clip(pts[:N_FACE, :2] * np.array([r / w, r / h]), -r, 2.0 * r)
        dst = extend(face, self.mesh, self._border)[self.mesh.triangles]  # (T, 3, 2)
        coef, ok = _affines(self._src_tri, dst)

        # Folded (mirrored: turned away, or crushed against the picture edge) triangles are
        # left out: their neighbours' maps, continued over the gap, look far better than a
        # mirrored texture. Painter's order: background (ring, border) first, then the face
        # far (large z) to near, so that a turned head's nose hides its cheek.
        folded = coef[:, 0] * coef[:, 4] - coef[:, 1] * coef[:, 3] <= 0
        depth = np.where(self.mesh.background, np.inf, pts[self._tri_face, 2].sum(axis=1))
        inside = (dst.max(axis=1) > 0).all(axis=1) & (dst.min(axis=1) < r).all(axis=1)
        visible = ok & ~folded & inside
        order = np.argsort(-depth, kind="stable")
        fixed = list(np.floor((dst * (g / r) - 0.5) * (1 << SHIFT) + 0.5).astype(np.int32))
        index = np.full((g, g), -1, dtype=np.int32)
        for t in order[visible[order]].tolist():
            cv2.fillConvexPoly(index, fixed[t], t, cv2.LINE_8, SHIFT)
        _nearest_fill(index)  # the mouth hole, folds, slivers: continue the nearest triangle

        # Cell (i, j) centre is at ((j + 0.5) s, (i + 0.5) s) in render pixels; remap wants
        # source positions in OpenCV pixel-centre coordinates (minus half a pixel).
        s = r / g
        a, b, c, d, e, f = coef.T
        table = np.stack([a * s, b * s, c + (a + b) * 0.5 * s - 0.5,
                          d * s, e * s, f + (d + e) * 0.5 * s - 0.5], axis=1)
        rows = np.take(table.astype(np.float32), index.ravel(), axis=0, out=self._rows)
        map_x = (rows[:, 0] * self._jj + rows[:, 1] * self._ii + rows[:, 2]).reshape(g, g)
        map_y = (rows[:, 3] * self._jj + rows[:, 4] * self._ii + rows[:, 5]).reshape(g, g)
        if g != r:
            map_x, map_y = _upsample(map_x, r), _upsample(map_y, r)
        out = cv2.remap(self._src, map_x, map_y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        if polygon_area(face[_INNER]) >= OPEN_TARGET_PX2 * (r / 256.0) ** 2:
            to_source, trim = None, 0.0
            if self._mouth_src is not None:  # the neutral's mouth follows the upper lip
                to_source = similarity_2x3(face[_UPPER], self._src_upper)
                # Opened wider than the neutral, its lower rim (a pixel or two of lip
                # colour inside the tracked contour) would float mid-mouth: trim it.
                trim = float(np.clip(0.5 * (mouth_gap(face) - self._neutral_gap), 0.0, 2.0))
            draw_mouth(out, face, self._mouth_src, to_source, trim)
        self._eyes.paint(out, np.clip(pts[:, :2] * np.array([r / w, r / h]), -r, 2.0 * r))
        return out

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> WarpRenderer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def warp_face(crop: np.ndarray, neutral: np.ndarray, target: np.ndarray,
              resolution: int | None = None, mouth: MouthMode = "auto") -> np.ndarray:
    """One-shot form: warp ``crop`` (its landmarks ``neutral``) onto (478, 3) float32
    ``target`` landmarks in the same crop pixels; (res, res, 3) uint8 BGR, res defaulting
    to the crop side. Building the mesh dominates: reuse a WarpRenderer for many targets."""
    side = crop.shape[0] if isinstance(crop, np.ndarray) and crop.ndim == 3 else 0
    with WarpRenderer(crop, neutral, resolution or side, mouth) as renderer:
        return renderer.render(Landmarks(0, 0, target, (side, side)))
