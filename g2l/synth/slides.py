"""Synthetic whole-slide images: pyramidal tiled JPEG TIFFs with mpp tags and known tissue blobs."""

from __future__ import annotations

import dataclasses
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from g2l.synth.tissue_slide import TissueLayout, TissuePainter, tissue_membership

#: Downsample of the tissue/pen masks returned with a synthetic slide (one mask pixel per 16x16 level-0 px).
MASK_DOWNSAMPLE = 16

#: Default H&E-like stain: (eosin RGB, hematoxylin RGB).
DEFAULT_STAIN: tuple[tuple[int, int, int], tuple[int, int, int]] = ((232, 150, 196), (92, 54, 140))

_PEN_RGB = (30, 150, 70)  # a saturated green marker, the most common pen colour on real slides
_NUCLEUS_CELL_PX = 24  # nuclei sit on a jittered grid of this pitch (vectorised, no per-nucleus loop)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Blob:
    """One tissue blob: a rotated ellipse with a wavy edge, optionally with an elliptic hole."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    wave: tuple[tuple[float, int, float], ...] = ()  # (amplitude, frequency, phase) edge modulations
    hole: tuple[float, float, float, float] | None = None  # (cx, cy, rx, ry), axis-aligned, level-0 px

    def bbox(self) -> tuple[float, float, float, float]:
        """Level-0 bounding box (x0, y0, x1, y1) that contains the blob including its wavy edge."""
        r = max(self.rx, self.ry) * (1.0 + sum(abs(a) for a, _, _ in self.wave))
        return (self.cx - r, self.cy - r, self.cx + r, self.cy + r)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PenStroke:
    """A pen mark: a thick sine-wave stroke from (x0, y) to (x1, y)."""

    x0: float
    x1: float
    y: float
    amplitude: float
    period: float
    half_width: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyntheticSlide:
    """What `write_synthetic_slide` wrote: geometry, mpp, and the ground-truth tissue layout."""

    path: Path
    width: int
    height: int
    mpp: float | None
    tile_px: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    blobs: tuple[Blob, ...]
    pen: PenStroke | None
    mask_downsample: int
    tissue_mask: np.ndarray  # bool [ceil(h/ds), ceil(w/ds)], True on tissue (pen marks do not change it)
    pen_mask: np.ndarray  # bool, same shape, True under the pen stroke

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height)."""
        return (self.width, self.height)

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide area covered by tissue."""
        return float(self.tissue_mask.mean())

    def tissue_mask_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Exact tissue membership of level-0 points (x, y) (float arrays of one shape)."""
        return _tissue(np.asarray(x, np.float32), np.asarray(y, np.float32), self.blobs)


# ----------------------------------------------------------------------------------------- geometry


def _tissue(x: np.ndarray, y: np.ndarray, blobs: Sequence[Blob]) -> np.ndarray:
    """Boolean tissue membership of level-0 points."""
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape), bool)
    for b in blobs:
        bx0, by0, bx1, by1 = b.bbox()
        if x.max() < bx0 or x.min() > bx1 or y.max() < by0 or y.min() > by1:
            continue
        dx, dy = x - b.cx, y - b.cy
        c, s = math.cos(b.angle), math.sin(b.angle)
        u = (dx * c + dy * s) / b.rx
        v = (-dx * s + dy * c) / b.ry
        rho = np.sqrt(u * u + v * v)
        edge = np.ones_like(rho)
        if b.wave:
            theta = np.arctan2(v, u)
            for amp, freq, phase in b.wave:
                edge += amp * np.sin(freq * theta + phase)
        inside = rho < edge
        if b.hole is not None:
            hx, hy, hrx, hry = b.hole
            inside &= ((x - hx) / hrx) ** 2 + ((y - hy) / hry) ** 2 >= 1.0
        out |= inside
    return out


def _pen(x: np.ndarray, y: np.ndarray, pen: PenStroke | None) -> np.ndarray:
    """Boolean pen-stroke membership of level-0 points."""
    shape = np.broadcast_shapes(x.shape, y.shape)
    if pen is None:
        return np.zeros(shape, bool)
    centre = pen.y + pen.amplitude * np.sin(2 * math.pi * (x - pen.x0) / pen.period)
    return np.broadcast_to((np.abs(y - centre) < pen.half_width) & (x >= pen.x0) & (x <= pen.x1), shape)


def _make_blobs(rng: np.random.Generator, width: int, height: int, n: int) -> tuple[Blob, ...]:
    """Random, mostly non-overlapping blobs kept away from the slide border."""
    side = min(width, height)
    blobs: list[Blob] = []
    for i in range(n):
        rx = float(rng.uniform(0.07, 0.16) * side)
        ry = float(rx * rng.uniform(0.6, 1.0))
        margin = max(rx, ry) * 1.3
        cx = float(rng.uniform(margin, max(margin + 1, width - margin)))
        cy = float(rng.uniform(margin, max(margin + 1, height - margin)))
        wave = tuple(
            (float(rng.uniform(0.03, 0.09)), int(f), float(rng.uniform(0, 2 * math.pi))) for f in (2, 3, 5)
        )
        hole = None
        if i == 0:  # the first (and a typical) blob gets a hole, like a vessel lumen or a tear
            hole = (cx + 0.15 * rx, cy - 0.1 * ry, 0.3 * rx, 0.25 * ry)
        blobs.append(
            Blob(cx=cx, cy=cy, rx=rx, ry=ry, angle=float(rng.uniform(0, math.pi)), wave=wave, hole=hole)
        )
    return tuple(blobs)


def _make_pen(rng: np.random.Generator, width: int, height: int) -> PenStroke:
    """A pen stroke across part of the slide (real pen marks circle or underline tissue)."""
    return PenStroke(
        x0=float(width * rng.uniform(0.05, 0.2)),
        x1=float(width * rng.uniform(0.6, 0.9)),
        y=float(height * rng.uniform(0.1, 0.9)),
        amplitude=float(height * 0.03),
        period=float(width * 0.3),
        half_width=float(max(6.0, min(width, height) * 0.006)),
    )


# ------------------------------------------------------------------------------------------ pixels


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic per-cell pseudo-random numbers in [0, 1) (integer hash, vectorised)."""
    h = (ix.astype(np.uint32) * np.uint32(73856093)) ^ (iy.astype(np.uint32) * np.uint32(19349663))
    h ^= np.uint32(salt * 83492791 & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(0x1000000)


class _Painter:
    """Renders any level-0 rectangle of the synthetic slide, one tile at a time."""

    def __init__(
        self,
        *,
        blobs: Sequence[Blob],
        pen: PenStroke | None,
        background: tuple[int, int, int],
        stain: tuple[tuple[int, int, int], tuple[int, int, int]],
        noise: float,
        seed: int,
        tile_px: int,
    ) -> None:
        self.blobs = tuple(blobs)
        self.pen = pen
        self.background = np.array(background, np.float32)
        self.eosin = np.array(stain[0], np.float32)
        self.hema = np.array(stain[1], np.float32)
        self.seed = seed
        rng = np.random.default_rng(seed + 7919)
        # A few precomputed noise tiles, picked per tile: per-pixel Gaussians for a whole slide cost
        # more than everything else together.
        sigma = 2.0 + float(noise)
        self.noise_tiles = [
            rng.normal(0.0, sigma, (tile_px, tile_px, 3)).astype(np.float32) for _ in range(4)
        ]
        self.blank_tiles = [
            np.clip(self.background + n + 0.5, 0, 255).astype(np.uint8) for n in self.noise_tiles
        ]
        self.phases = rng.uniform(0, 2 * math.pi, 4).astype(np.float32)
        self.boxes = [b.bbox() for b in self.blobs]

    def _touches_tissue(self, x0: int, y0: int, w: int, h: int) -> list[Blob]:
        return [
            b
            for b, (bx0, by0, bx1, by1) in zip(self.blobs, self.boxes, strict=True)
            if not (x0 + w < bx0 or x0 > bx1 or y0 + h < by0 or y0 > by1)
        ]

    def tile(self, x0: int, y0: int, size: int) -> np.ndarray:
        """RGB uint8 [size, size, 3] of the level-0 square whose top-left corner is (x0, y0)."""
        k = ((x0 // size) * 31 + (y0 // size) * 17) % len(self.noise_tiles)
        nt = self.noise_tiles[k]
        xs = np.arange(x0, x0 + size, dtype=np.float32)[None, :] + 0.5
        ys = np.arange(y0, y0 + size, dtype=np.float32)[:, None] + 0.5
        near = self._touches_tissue(x0, y0, size, size)
        if not near and (self.pen is None or not _pen(xs, ys, self.pen).any()):
            return self.blank_tiles[k][:size, :size].copy()  # plain glass: most of a slide
        img = self.background + nt[:size, :size]
        if near:
            tissue = _tissue(xs, ys, near)
            if tissue.any():
                p = self.phases
                # Low-frequency stain intensity (fibres, cellularity), evaluated in level-0 coordinates.
                field = (
                    0.5
                    + 0.25 * (np.sin(xs / 37.0 + p[0]) * np.sin(ys / 53.0 + p[1]))
                    + 0.25 * np.sin((xs + ys) / 211.0 + p[2])
                )
                eos = self.background + (self.eosin - self.background) * (0.65 + 0.5 * field)[..., None]
                # Nuclei: one candidate per grid cell at a hashed position, present with hashed probability.
                cell = _NUCLEUS_CELL_PX
                ix, iy = np.floor(xs / cell), np.floor(ys / cell)
                jx = _hash01(ix, iy, self.seed * 2 + 1)
                jy = _hash01(ix, iy, self.seed * 2 + 2)
                present = _hash01(ix, iy, self.seed * 2 + 3) < (0.35 + 0.4 * field)
                radius = 3.0 + 3.0 * _hash01(ix, iy, self.seed * 2 + 4)
                ncx = ix * cell + 7.0 + jx * (cell - 14.0)
                ncy = iy * cell + 7.0 + jy * (cell - 14.0)
                nucleus = present & ((xs - ncx) ** 2 + (ys - ncy) ** 2 < radius * radius)
                colour = np.where(nucleus[..., None], self.hema, eos)
                img = np.where(tissue[..., None], colour + nt[:size, :size] * 1.5, img)
        if self.pen is not None:
            pen = _pen(xs, ys, self.pen)
            if pen.any():
                img = np.where(pen[..., None], np.array(_PEN_RGB, np.float32) + nt[:size, :size], img)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ writer


def _aperio_description(
    width: int, height: int, w: int, h: int, tile_px: int, quality: int, mpp: float | None
) -> str:
    """An Aperio-style ImageDescription: openslide, tiffslide and cuCIM read `MPP` from it."""
    head = (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {w}x{h}] ({tile_px}x{tile_px}) "
        f"JPEG/RGB Q={quality}"
    )
    fields = ["ScanScope ID = G2LSYNTH", "Filename = synthetic"]
    if mpp is not None:
        fields += [f"AppMag = {10.0 / mpp:g}", f"MPP = {mpp:.4f}"]
    return "|".join([head, *fields])


def _write_aperio_thumbnail(tif, level1: np.ndarray, width: int, height: int, quality: int) -> None:
    """Append a small stripped JPEG thumbnail page, where Aperio puts it (second page)."""
    f = max(1, -(-max(level1.shape[:2]) // 768))
    thumb = _downsample_area(level1, f) if f > 1 else level1
    desc = f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> {thumb.shape[1]}x{thumb.shape[0]} - "
    tif.write(
        thumb,
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": quality},
        rowsperstrip=16,
        description=desc,
        metadata=None,
        software="g2l.synth",
    )


def _downsample_area(img: np.ndarray, f: int) -> np.ndarray:
    """Area-average an [H, W, 3] uint8 image by an integer factor (rounded; ragged edges cropped)."""
    h, w = img.shape[0] // f, img.shape[1] // f
    acc = np.zeros((h, w, img.shape[2]), np.uint32)
    for i in range(f):  # f*f strided adds beat a reshape-mean by ~10x
        for j in range(f):
            acc += img[i : h * f : f, j : w * f : f]
    return ((acc + (f * f) // 2) // (f * f)).astype(np.uint8)


def write_synthetic_slide(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    mpp: float | None,
    tile_px: int = 256,
    levels: int = 3,
    level_factor: int = 4,
    blobs: Sequence[Blob] | int | None = None,
    seed: int = 0,
    jpeg_quality: int = 90,
    background: tuple[int, int, int] = (240, 240, 240),
    pen_mark: bool = False,
    stain: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
    noise: float = 0.0,
    flavor: str = "aperio",
    compression: str = "jpeg",
    tissue: TissueLayout | None = None,
) -> SyntheticSlide:
    """Write a pyramidal tiled JPEG TIFF with known tissue blobs and return its ground truth.

    Levels are area-averaged from level 0 by `level_factor` each (4x, like Aperio SVS). `flavor="aperio"`
    writes an SVS-like file (Aperio ImageDescription with `MPP`, plus resolution tags); `"generic"` writes a
    plain tiled TIFF whose mpp lives only in the resolution tags (centimetre unit). `mpp=None` writes no mpp
    anywhere. `blobs` is an explicit blob list, a number of random blobs, or None for 3-5 random ones.
    `compression` is the tile codec ("jpeg"; "zstd", "webp", ... make files only some backends can decode).
    `tissue` paints the blobs with the tissue classes of `g2l.synth.tissue` in that layout's site stain
    (`stain` and `noise` are then unused), pixels exact on every CPU; the returned tissue mask is then
    the exact one too.
    """
    import tifffile

    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    if tile_px % 16 or tile_px < 16:
        raise ValueError(f"tile_px must be a positive multiple of 16 (TIFF tiles), got {tile_px}")
    if flavor not in ("aperio", "generic"):
        raise ValueError(f"flavor must be 'aperio' or 'generic', got {flavor!r}")
    if mpp is not None and not mpp > 0:
        raise ValueError(f"mpp must be positive or None, got {mpp!r}")
    rng = np.random.default_rng(seed)
    if blobs is None or isinstance(blobs, int):
        n = int(rng.integers(3, 6)) if blobs is None else int(blobs)
        blob_list = _make_blobs(rng, width, height, n)
    else:
        blob_list = tuple(blobs)
    pen = _make_pen(rng, width, height) if pen_mark else None
    painter: _Painter | TissuePainter
    if tissue is None:
        painter = _Painter(
            blobs=blob_list,
            pen=pen,
            background=background,
            stain=stain or DEFAULT_STAIN,
            noise=noise,
            seed=seed,
            tile_px=tile_px,
        )
    else:
        painter = TissuePainter(
            blobs=blob_list, layout=tissue, pen_rgb=_PEN_RGB,
            pen_mask_fn=None if pen is None else (lambda xs, ys: _pen(xs, ys, pen)),
        )

    dims = [(width, height)]
    for _ in range(1, levels):
        w, h = dims[-1]
        if min(w, h) // level_factor < 1:
            break
        dims.append((w // level_factor, h // level_factor))
    factors = [level_factor**i for i in range(len(dims))]

    # Level 1 is accumulated while level 0 streams out tile by tile; deeper levels come from level 1.
    ntx, nty = -(-width // tile_px), -(-height // tile_px)
    lvl1 = None
    if len(dims) > 1:
        sub = tile_px // level_factor
        lvl1 = np.empty((nty * sub, ntx * sub, 3), np.uint8)

    def paint(tx: int, ty: int) -> np.ndarray:
        t = painter.tile(tx * tile_px, ty * tile_px, tile_px)
        if lvl1 is not None:  # each tile owns a disjoint block of level 1, so threads never collide
            s = tile_px // level_factor
            lvl1[ty * s : (ty + 1) * s, tx * s : (tx + 1) * s] = _downsample_area(t, level_factor)
        return t

    def level0_tiles() -> Iterator[np.ndarray]:
        # numpy releases the GIL in the large array ops, so painting scales over cores; a bounded
        # read-ahead keeps memory at a few tiles per worker.
        workers = min(8, len(os.sched_getaffinity(0)))
        coords = ((tx, ty) for ty in range(nty) for tx in range(ntx))
        with ThreadPoolExecutor(workers) as pool:
            pending: deque[Future[np.ndarray]] = deque()
            for tx, ty in coords:
                pending.append(pool.submit(paint, tx, ty))
                if len(pending) >= 4 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def array_tiles(img: np.ndarray, w: int, h: int) -> Iterator[np.ndarray]:
        for ty in range(-(-h // tile_px)):
            for tx in range(-(-w // tile_px)):
                t = img[ty * tile_px : (ty + 1) * tile_px, tx * tile_px : (tx + 1) * tile_px]
                if t.shape[:2] != (tile_px, tile_px):
                    t = np.pad(t, ((0, tile_px - t.shape[0]), (0, tile_px - t.shape[1]), (0, 0)), mode="edge")
                yield t

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    lossy = compression in ("jpeg", "webp", "jpegxl")
    common: dict = dict(
        photometric="rgb",
        compression=compression,
        compressionargs={"level": int(jpeg_quality)} if lossy else None,
        tile=(tile_px, tile_px),
        metadata=None,
        software="g2l.synth",
    )
    try:
        with tifffile.TiffWriter(tmp, bigtiff=width * height > 2**31) as tif:
            level_img = None
            for i, (w, h) in enumerate(dims):
                kw = dict(common)
                if mpp is not None:
                    pxcm = 1e4 / (mpp * factors[i])  # pixels per centimetre at this level
                    kw.update(resolution=(pxcm, pxcm), resolutionunit="CENTIMETER")
                else:
                    kw.update(resolution=None, resolutionunit=None)
                if flavor == "aperio":
                    kw["description"] = _aperio_description(width, height, w, h, tile_px, jpeg_quality, mpp)
                if i > 0 and flavor == "generic":
                    # Reduced-resolution flag for generic pyramids; Aperio leaves it unset on levels
                    # (tifffile's SVS parser stops at the first reduced page, taking it for the label).
                    kw["subfiletype"] = 1
                if i == 0:
                    tif.write(level0_tiles(), shape=(h, w, 3), dtype=np.uint8, **kw)
                    continue
                if i == 1:
                    assert lvl1 is not None
                    level_img = lvl1[:h, :w]
                    if flavor == "aperio":
                        # SVS layout: level 0, a stripped thumbnail, then the other levels (tifffile's
                        # and tiffslide's SVS parsers expect the thumbnail as the second page).
                        _write_aperio_thumbnail(tif, level_img, width, height, jpeg_quality)
                else:
                    assert level_img is not None
                    prev = level_img
                    level_img = _downsample_area(prev, level_factor)
                    level_img = level_img[:h, :w]
                tif.write(array_tiles(level_img, w, h), shape=(h, w, 3), dtype=np.uint8, **kw)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()

    mh, mw = -(-height // MASK_DOWNSAMPLE), -(-width // MASK_DOWNSAMPLE)
    mx = (np.arange(mw, dtype=np.float32) + 0.5) * MASK_DOWNSAMPLE
    my = (np.arange(mh, dtype=np.float32) + 0.5) * MASK_DOWNSAMPLE
    if tissue is None:
        tissue_mask = _tissue(mx[None, :], my[:, None], blob_list)
    else:
        tissue_mask = tissue_membership(
            mx[None, :].astype(np.float64), my[:, None].astype(np.float64), blob_list
        )
    pen_mask = np.array(_pen(mx[None, :], my[:, None], pen))
    return SyntheticSlide(
        path=path,
        width=width,
        height=height,
        mpp=mpp,
        tile_px=tile_px,
        level_dimensions=tuple(dims),
        level_downsamples=tuple(float(f) for f in factors),
        blobs=blob_list,
        pen=pen,
        mask_downsample=MASK_DOWNSAMPLE,
        tissue_mask=tissue_mask,
        pen_mask=pen_mask,
    )


def write_corrupt_slide(path: str | os.PathLike[str], *, seed: int = 0, kind: str = "garbled") -> Path:
    """Write a file with a slide's name that cannot be read.

    `kind="garbled"`: TIFF magic, an IFD offset beyond the end of the file, noise (no backend opens it).
    `kind="truncated"`: a real synthetic slide cut to 40% of its bytes, as an interrupted copy leaves it (it
    may open, but reading the lost tiles fails).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if kind == "garbled":
        noise = rng.integers(0, 256, 4096, np.uint8).tobytes()
        data = b"II*\x00" + (10_000_000).to_bytes(4, "little") + noise
        path.write_bytes(data)
    elif kind == "truncated":
        write_synthetic_slide(path, width=2048, height=2048, mpp=0.5, seed=seed, blobs=3)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.4)])
    else:
        raise ValueError(f"kind must be 'garbled' or 'truncated', got {kind!r}")
    return path
