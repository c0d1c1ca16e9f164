"""Fast path for tiled JPEG TIFF pyramids (SVS, generic): raw stored tiles, decoded on all cores, assembled.

Each region is assembled from the stored JPEG tiles it overlaps; the raw bytes come from `os.pread` (no
shared file position, so threads never wait on each other), imagecodecs decodes them with the GIL released,
and a small LRU of decoded tiles means a tile shared by neighbouring regions is decoded once per pass.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from g2l.slides.base import BaseReader, default_workers
from g2l.slides.protocol import BackendUnavailableError

_JPEG = 7  # TIFF Compression tag value for "new-style" JPEG
_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")
_UNIT_UM = {2: 25400.0, 3: 1e4}  # ResolutionUnit INCH, CENTIMETER -> microns per unit

#: Default decoded-tile cache: enough for two rows of 256 px tiles across a 100k px wide level.
DEFAULT_CACHE_BYTES = 256 * 2**20


def _import_tifffile():  # noqa: ANN202 - module object
    try:
        import imagecodecs  # noqa: F401 - tifffile needs it to decode JPEG
        import tifffile
    except ImportError as e:
        raise BackendUnavailableError(
            f"the tifffile-jpeg backend needs tifffile and imagecodecs ({e}); "
            "install them with `pip install tifffile imagecodecs`"
        ) from e
    return tifffile


def _metadata_mpp(page) -> float | None:  # noqa: ANN001 - tifffile.TiffPage
    """Aperio `MPP` from the ImageDescription, else the resolution tags when their unit is a length."""
    m = _APERIO_MPP.search(page.description or "")
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            pass
    factor = _UNIT_UM.get(int(page.resolutionunit or 1))
    xres, yres = page.resolution
    if factor is None or not (xres > 0 and yres > 0):
        return None
    return (factor / xres + factor / yres) / 2


class _Level:
    """One pyramid level: its TIFF page and stored-tile grid."""

    def __init__(self, page, path: str) -> None:  # noqa: ANN001 - tifffile.TiffPage
        if not page.is_tiled or int(page.compression) != _JPEG:
            raise ValueError(
                f"{path}: page {page.index} is not a JPEG-compressed tiled image "
                f"(compression {int(page.compression)}, tiled {page.is_tiled}); use 'openslide' or 'auto'"
            )
        if page.dtype != np.uint8 or page.samplesperpixel not in (3, 4) or page.imagedepth != 1:
            raise ValueError(f"{path}: page {page.index} is not 8-bit RGB; use backend 'openslide' or 'auto'")
        if int(page.planarconfig) != 1:
            raise ValueError(f"{path}: page {page.index} has separate colour planes; use another backend")
        self.page = page
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tw, self.th = int(page.tilewidth), int(page.tilelength)
        self.ntx = -(-self.width // self.tw)
        self.nty = -(-self.height // self.th)
        self.offsets = tuple(int(o) for o in page.dataoffsets)
        self.counts = tuple(int(c) for c in page.databytecounts)
        if len(self.offsets) != self.ntx * self.nty:
            raise ValueError(f"{path}: page {page.index} tile table does not match its size")
        self.decode = page.decode  # tifffile's decoder knows the photometric/colourspace quirks
        self.jpegtables = page.jpegtables
        self.jpegheader = page.jpegheader


class TiffJpegReader(BaseReader):
    """`SlideReader` that decodes stored JPEG tiles itself (tifffile + imagecodecs) with an LRU of tiles."""

    backend = "tifffile-jpeg"

    def __init__(
        self,
        path: str,
        *,
        mpp_override: float | None = None,
        reason: str = "explicit: tifffile-jpeg",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        tifffile = _import_tifffile()
        self._tif = tifffile.TiffFile(str(path))
        try:
            series = self._tif.series[0]
            pages = [lvl.keyframe for lvl in series.levels]
            if not pages:
                raise ValueError(f"{path}: no image series")
            self._levels = [_Level(p, str(path)) for p in pages]
            super().__init__(
                path, metadata_mpp=_metadata_mpp(pages[0]), mpp_override=mpp_override, reason=reason
            )
        except Exception:
            self._tif.close()
            raise
        self._set_levels([(lv.width, lv.height) for lv in self._levels])
        self._fd = os.open(str(path), os.O_RDONLY)
        tile_bytes = max(lv.tw * lv.th * 3 for lv in self._levels)
        self._cache_tiles = max(16, int(cache_bytes) // tile_bytes)
        self._cache: OrderedDict[tuple[int, int], Future[np.ndarray] | np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.tiles_decoded = 0  # how many stored tiles were decoded (cache misses), for benchmarks/tests

    # ---------------------------------------------------------------------------------------- tiles

    def _decode_tile(self, level: int, index: int) -> np.ndarray:
        lv = self._levels[level]
        count = lv.counts[index]
        if count == 0:  # sparse TIFF: a tile that was never written is glass
            return np.full((lv.th, lv.tw, 3), 255, np.uint8)
        data = os.pread(self._fd, count, lv.offsets[index])
        seg, _, _ = lv.decode(data, index, jpegtables=lv.jpegtables, jpegheader=lv.jpegheader)
        with self._lock:
            self.tiles_decoded += 1
        return np.asarray(seg).reshape(seg.shape[-3:])[..., :3]

    def _remember(self, key: tuple[int, int], value: Future[np.ndarray] | np.ndarray) -> None:
        with self._lock:
            self._cache[key] = value
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_tiles:
                self._cache.popitem(last=False)

    def _lookup(self, key: tuple[int, int]) -> Future[np.ndarray] | np.ndarray | None:
        with self._lock:
            value = self._cache.get(key)
            if value is not None:
                self._cache.move_to_end(key)
            return value

    def _tiles_for(self, lx: int, ly: int, level: int, size: tuple[int, int]) -> list[int]:
        """Indices of the stored tiles a region whose top-left is level pixel (lx, ly) overlaps."""
        lv = self._levels[level]
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + size[0], lv.width), min(ly + size[1], lv.height)
        if x0 >= x1 or y0 >= y1:
            return []
        tx0, tx1 = x0 // lv.tw, (x1 - 1) // lv.tw
        ty0, ty1 = y0 // lv.th, (y1 - 1) // lv.th
        return [ty * lv.ntx + tx for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    def _assemble(
        self, lx: int, ly: int, level: int, size: tuple[int, int], tiles: dict[int, np.ndarray]
    ) -> np.ndarray:
        lv = self._levels[level]
        w, h = size
        out = np.full((h, w, 3), 255, np.uint8)
        for index, tile in tiles.items():
            ty, tx = divmod(index, lv.ntx)
            gx0, gy0 = tx * lv.tw, ty * lv.th  # tile origin in level pixels
            # Intersection of tile, region and level bounds (the tile's padding beyond the image is dropped).
            ix0, iy0 = max(gx0, lx, 0), max(gy0, ly, 0)
            ix1 = min(gx0 + lv.tw, lx + w, lv.width)
            iy1 = min(gy0 + lv.th, ly + h, lv.height)
            if ix0 < ix1 and iy0 < iy1:
                out[iy0 - ly : iy1 - ly, ix0 - lx : ix1 - lx] = tile[
                    iy0 - gy0 : iy1 - gy0, ix0 - gx0 : ix1 - gx0
                ]
        return out

    # ------------------------------------------------------------------------------------- reading

    def _read_level(self, lx: int, ly: int, level: int, size: tuple[int, int]) -> np.ndarray:
        indices = self._tiles_for(lx, ly, level, size)
        tiles: dict[int, np.ndarray] = {}
        for index in indices:
            cached = self._lookup((level, index))
            if cached is None:
                tile = self._decode_tile(level, index)
                self._remember((level, index), tile)
            else:
                tile = cached.result() if isinstance(cached, Future) else cached
            tiles[index] = tile
        return self._assemble(lx, ly, level, size, tiles)

    def read_regions(
        self,
        locations: Iterable[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        num_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """Decode the stored tiles of upcoming regions on a thread pool; assemble and yield in input order."""
        size = (int(size[0]), int(size[1]))
        self._check(level, size)
        workers = default_workers(num_workers)
        lv = self._levels[level]
        tiles_per_region = (-(-size[0] // lv.tw) + 1) * (-(-size[1] // lv.th) + 1)
        # Read-ahead of ~8 decodes per worker keeps every core busy while memory stays bounded.
        window = max(2, (8 * workers) // tiles_per_region + 1)
        with ThreadPoolExecutor(workers, thread_name_prefix="g2l-tiffjpeg") as pool:
            pending: deque[tuple[int, int, dict[int, Future[np.ndarray] | np.ndarray]]] = deque()

            def finish() -> np.ndarray:
                lx, ly, parts = pending.popleft()
                try:
                    tiles = {i: (p.result() if isinstance(p, Future) else p) for i, p in parts.items()}
                except Exception as e:  # noqa: BLE001 - name the slide and the region, whatever failed
                    raise self._read_error(
                        f"read_regions(level={level}, size={size}) at level px {(lx, ly)}", e
                    ) from e
                return self._assemble(lx, ly, level, size, tiles)

            for loc in locations:
                lx, ly = self.level_origin((int(loc[0]), int(loc[1])), level)
                indices = self._tiles_for(lx, ly, level, size)
                parts: dict[int, Future[np.ndarray] | np.ndarray] = {}
                for index in indices:
                    key = (level, index)
                    cached = self._lookup(key)
                    if cached is None:
                        cached = pool.submit(self._decode_tile, level, index)
                        self._remember(key, cached)
                    parts[index] = cached  # the region keeps its own reference: eviction cannot lose it
                pending.append((lx, ly, parts))
                if len(pending) >= window:
                    yield finish()
            while pending:
                yield finish()
        self._settle_cache()

    def probe(self) -> None:
        """The shared open-time reads, then an empty tile cache (tiling wants other tiles)."""
        super().probe()
        with self._lock:
            self._cache.clear()

    def _settle_cache(self) -> None:
        """Replace finished futures in the cache by their arrays (and drop failed ones)."""
        with self._lock:
            for key, value in list(self._cache.items()):
                if isinstance(value, Future):
                    if value.done() and value.exception() is None:
                        self._cache[key] = value.result()
                    else:
                        del self._cache[key]

    def close(self) -> None:
        """Close the TIFF and the raw file descriptor; drop the tile cache."""
        if not self._closed:
            os.close(self._fd)
            self._tif.close()
            with self._lock:
                self._cache.clear()
        super().close()
