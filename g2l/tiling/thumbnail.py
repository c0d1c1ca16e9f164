"""QC thumbnail: the slide with its tissue contour (green) and the kept tiles (blue) drawn over it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from g2l.tiling.tissue import binary_morph

CONTOUR_RGB = (0, 200, 0)
TILE_RGB = (30, 80, 255)


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
    """PNG bytes of the slide `image` (any size) shrunk to `max_px`, with the mask's contour and the tiles."""
    h, w = image.shape[:2]
    shrink = min(1.0, max_px / max(h, w))
    out_w, out_h = max(1, int(round(w * shrink))), max(1, int(round(h * shrink)))
    canvas = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    mask_img = Image.fromarray(mask.astype(np.uint8) * 255)
    if (out_w, out_h) != (w, h):
        canvas = canvas.resize((out_w, out_h), Image.Resampling.BOX)
    if mask_img.size != (out_w, out_h):
        mask_img = mask_img.resize((out_w, out_h), Image.Resampling.NEAREST)
    small = np.asarray(mask_img) > 127
    edge = small & ~binary_morph(small, "erode", 1)
    edge = binary_morph(edge, "dilate", 1) if max(out_w, out_h) >= 512 else edge
    pixels = np.array(canvas)
    pixels[edge] = CONTOUR_RGB
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    fx = out_w / width0
    fy = out_h / height0
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        draw.rectangle(
            [x * fx, y * fy, (x + size0) * fx - 1, (y + size0) * fy - 1], outline=TILE_RGB, width=1
        )
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=3)  # level 6 costs ~3x the time for ~10% smaller
    return buffer.getvalue()
