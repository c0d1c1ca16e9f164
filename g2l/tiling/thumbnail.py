"""QC thumbnail: the slide with its tissue contour (green) and the kept tiles (blue) drawn over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from g2l.tiling.reader import MAX_READ_PIXELS, bounded_thumbnail
from g2l.tiling.tissue import binary_morph, opencv

CONTOUR_RGB = (0, 200, 0)
TILE_RGB = (30, 80, 255)
# libpng settings OpenCV uses for speed (level 1, run-length strategy, Sub filter): ~4x faster than PIL's
# adaptive filtering at compress_level 3 for the same file size on slide thumbnails.
PNG_FAST = {"level": 1, "strategy": 3, "filter": 16}


def qc_image(reader: Any, path: str | Path, max_px: int) -> np.ndarray:
    """The whole slide for the QC picture: longer side `max_px`, or a pyramid level down to 3/4 of it as is.

    A level within 3/4 of `max_px` is used without resampling, as the tissue image is (a 4x pyramid
    otherwise makes the next level up 16x the pixels to decode). From a tiled JPEG TIFF, that level's
    stored tiles are decoded directly, at the coarsest DCT scale (1/2, 1/4, 1/8) that still covers
    `max_px`, then area-averaged down; the framing is checked on one stored tile against the reader's
    pixels. Anything else (other formats, a mismatch, a level too large to hold) uses the reader.
    """
    try:
        image = _stored_qc_image(reader, str(path), max_px)
    except Exception:  # any surprise in the shortcut: the reader's own thumbnail is always right
        image = None
    return image if image is not None else bounded_thumbnail(reader, max_px)


def _qc_level(reader: Any, max_px: int) -> tuple[int, int]:
    """(level, DCT scale) the QC picture is made from: the smallest level down to 3/4 of `max_px`."""
    least = 0.75 * max_px
    sizes = [(int(w), int(h)) for w, h in reader.level_dimensions]
    fits = [i for i, (w, h) in enumerate(sizes) if max(w, h) >= least]
    level = min(fits, key=lambda i: max(sizes[i])) if fits else 0
    lw, lh = sizes[level]
    return level, next((s for s in (8, 4, 2) if max(lw, lh) // s >= max_px), 1)


def tissue_and_qc_images(reader: Any, tissue_px: int, qc_px: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The tissue image (as `bounded_thumbnail` makes it) and, when one read gives both, the QC picture.

    On a small slide the level the tissue image is shrunk from is often the one the QC picture shows as it
    is (a 768 px level for a 1024 px picture): it is then read once, and the picture is the reader's own
    pixels of that level. Otherwise the picture is None and `qc_image` makes it when the slide is finished.
    """
    from g2l.slides.base import BaseReader, area_resize, thumbnail_plan

    level, scale = _qc_level(reader, qc_px)
    lw, lh = (int(v) for v in reader.level_dimensions[level])
    plain = getattr(type(reader), "thumbnail", None) is BaseReader.thumbnail  # its thumbnail is read_region
    if plain and scale == 1 and max(lw, lh) <= qc_px and lw * lh <= MAX_READ_PIXELS:
        thumb_level, out_w, out_h = thumbnail_plan(reader.dimensions, reader.level_dimensions, tissue_px)
        if thumb_level == level:
            pixels = np.ascontiguousarray(np.asarray(reader.read_region((0, 0), level, (lw, lh)))[..., :3])
            thumb = np.ascontiguousarray(area_resize(pixels, out_w, out_h)[..., :3])
            return thumb, pixels
    return bounded_thumbnail(reader, tissue_px), None


def _stored_qc_image(reader: Any, path: str, max_px: int) -> np.ndarray | None:
    from g2l.tiling.stored_tiles import MATCH_TOLERANCE, StoredTiles, _mad

    w0, h0 = (int(v) for v in reader.dimensions)
    level, scale = _qc_level(reader, max_px)
    lw, lh = (int(v) for v in reader.level_dimensions[level])
    if max(lw, lh) // scale > max_px:
        ratio = max_px / max(w0, h0)
        out_w, out_h = max(1, round(w0 * ratio)), max(1, round(h0 * ratio))
    else:  # the level (at this scale) is at most max_px: used as it is, never enlarged
        out_w, out_h = -(-lw // scale), -(-lh // scale)
    if (lw // scale) * (lh // scale) > MAX_READ_PIXELS:
        return None
    stored = StoredTiles(path, width=lw, height=lh)
    try:
        tile = stored.tile
        if tile % scale:
            return None
        part = tile // scale
        # Framing: the first stored tile decoded at full size must match the reader's pixels there.
        size = min(tile, lw), min(tile, lh)
        expected = np.asarray(reader.read_region((0, 0), level, size))[..., :3]
        for adobe in (False, True):
            stored.scaled_adobe = adobe
            try:
                full = stored.decode_at_scale(0, 0, 1)[: size[1], : size[0]]
            except Exception:
                continue
            if _mad(full, expected) <= MATCH_TOLERANCE:
                break
        else:
            return None
        across, down = -(-lw // tile), -(-lh // tile)
        canvas = np.empty((down * part, across * part, 3), np.uint8)
        for ty in range(down):
            for tx in range(across):
                canvas[ty * part : (ty + 1) * part, tx * part : (tx + 1) * part] = stored.decode_at_scale(
                    tx * tile, ty * tile, scale
                )
    finally:
        stored.close()
    cv2 = opencv()
    canvas = canvas[: -(-lh // scale), : -(-lw // scale)]
    if canvas.shape[:2] != (out_h, out_w):
        canvas = cv2.resize(canvas, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(canvas)  # decoded as RGB


def render_thumbnail(
    image: np.ndarray,
    mask: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    size0: int,
    width0: int,
    height0: int,
    max_px: int,
) -> bytes:
    """PNG bytes of the slide `image` (any size) shrunk to `max_px`, with the mask's contour and the tiles.

    Drawn with OpenCV and numpy, which release the GIL (tile decoding goes on meanwhile on other threads),
    and pixel for pixel what PIL's NEAREST mask resize and ImageDraw's 1 px rectangles give.
    """
    import imagecodecs

    cv2 = opencv()
    h, w = image.shape[:2]
    shrink = min(1.0, max_px / max(h, w))
    out_w, out_h = max(1, int(round(w * shrink))), max(1, int(round(h * shrink)))
    if (out_w, out_h) != (w, h):
        from PIL import Image

        source = Image.fromarray(np.ascontiguousarray(image[..., :3]))
        pixels = np.array(source.resize((out_w, out_h), Image.Resampling.BOX))
    else:
        pixels = np.array(image[..., :3])  # a copy: the caller's image stays as it is
    small = mask.astype(np.uint8)
    if small.shape != (out_h, out_w):
        # OpenCV documents INTER_NEAREST_EXACT as giving PIL's nearest-neighbour pixels.
        small = cv2.resize(small, (out_w, out_h), interpolation=cv2.INTER_NEAREST_EXACT)
    inside = small > 0
    edge = inside & ~binary_morph(inside, "erode", 1)
    edge = binary_morph(edge, "dilate", 1) if max(out_w, out_h) >= 512 else edge
    pixels[edge] = CONTOUR_RGB
    fx = out_w / width0
    fy = out_h / height0
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        # ImageDraw truncated the float corners to whole pixels; the outline is 1 px wide, corners included.
        corner0 = (int(x * fx), int(y * fy))
        corner1 = (int((x + size0) * fx - 1), int((y + size0) * fy - 1))
        cv2.rectangle(pixels, corner0, corner1, TILE_RGB, 1)
    return bytes(imagecodecs.png_encode(pixels, **PNG_FAST))
