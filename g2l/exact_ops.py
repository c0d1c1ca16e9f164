"""Integer image operations (colour jitter, Gaussian blur) that give the same bytes on every CPU.

torchvision's colour and blur functions compute in float through SIMD kernels picked at run time
(AVX-512, AVX2 or scalar), so their uint8 results differ by one level here and there between CPUs
(`ATEN_CPU_CAPABILITY=avx2` reproduces it on an AVX-512 machine). A cached teacher target must pair
with exactly the pixels the student sees, possibly on another machine, so the views use these
operations instead: every factor is turned into a 16-bit fixed-point integer with Python float
arithmetic (IEEE-754 basic operations, correctly rounded everywhere), and everything after that is
integer arithmetic in numpy (exact on every CPU and SIMD path). The one transcendental function,
the Gaussian's exp, is evaluated by `exp_neg` with basic operations only, not by libm.
"""

from __future__ import annotations

import numpy as np

#: Fixed-point scale of factors: 16 fractional bits.
Q = 16
_ONE = 1 << Q
_HALF = 1 << (Q - 1)
#: Luma weights in Q16 (ITU-R BT.601 0.299, 0.587, 0.114; the ones PIL's "L" conversion uses).
_LUMA = (19595, 38470, 7471)
#: Gaussian kernel weights sum to 2**_KERNEL_BITS.
_KERNEL_BITS = 14


def fixed(factor: float) -> int:
    """`factor` as a Q16 integer (round half to even, as Python's round)."""
    return int(round(float(factor) * _ONE))


def exp_neg(t: float) -> float:
    """exp(-t) for t >= 0 from IEEE basic operations only, so every CPU gets the same double.

    Range reduction by halving until t < 1/16, a 12-term Taylor series, then squaring back. The
    result is within a few ulp of libm's exp; what matters is that it is the same everywhere.
    """
    if t < 0:
        raise ValueError(f"exp_neg needs t >= 0, got {t}")
    if t > 700.0:
        return 0.0
    halvings = 0
    while t > 0.0625:
        t *= 0.5
        halvings += 1
    term, total = 1.0, 1.0
    for n in range(1, 13):
        term = term * (-t) / n
        total += term
    for _ in range(halvings):
        total *= total
    return total


def _luma_q16(x: np.ndarray) -> np.ndarray:
    """Q16 luma of an integer [..., 3] RGB array (< 2**24, exact in int32 or int64)."""
    return x[..., 0] * _LUMA[0] + x[..., 1] * _LUMA[1] + x[..., 2] * _LUMA[2]


def _lut(table: np.ndarray, img: np.ndarray) -> np.ndarray:
    """Map every uint8 level of `img` through a 256-entry table (clipped to uint8)."""
    return np.clip(table, 0, 255).astype(np.uint8)[img]


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale every channel by `factor` (uint8 HxWx3 in and out)."""
    levels = np.arange(256, dtype=np.int64)
    return _lut((levels * fixed(factor) + _HALF) >> Q, img)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's mean luma: `factor * x + (1 - factor) * mean` (torchvision's definition)."""
    n = img.shape[0] * img.shape[1]
    luma_sum = int(_luma_q16(img.reshape(-1, 3).astype(np.int64)).sum())  # Q16, exact in int64
    mean_q16 = (luma_sum + n // 2) // n
    q = fixed(factor)
    levels = np.arange(256, dtype=np.int64)
    return _lut((q * levels * _ONE + (_ONE - q) * mean_q16 + (1 << 31)) >> 32, img)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend every pixel with its own luma: `factor * x + (1 - factor) * luma` (torchvision's definition).

    Computed as x + (factor - 1) * (x - luma) with the factor in Q12 and the luma in Q8, in int32
    while the product fits (|factor - 1| < 8), else int64.
    """
    dq = int(round((float(factor) - 1.0) * 4096))
    x: np.ndarray = img.astype(np.int32 if abs(dq) < 8 * 4096 else np.int64)
    luma_q8 = (_luma_q16(x) + (1 << 7)) >> 8  # the Q16 luma is < 2**24: fits int32
    diff = x * 256 - luma_q8[..., None]  # Q8, |diff| < 2**16
    return np.clip(x + ((dq * diff + (1 << 19)) >> 20), 0, 255).astype(np.uint8)


def adjust_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate hue by `shift` turns (in [-0.5, 0.5]) keeping HSV value and saturation, in integers.

    Hue is held as a position in [0, 6C) (C = max - min, the chroma), the integer form of HSV's six
    sectors; a rotation adds round(shift * 6C) modulo 6C. Back to RGB by the closed form of HSV:
    channel n (R 5, G 3, B 1) = max - clip(min(k, 4C - k), 0, C) with k = (n C + position) mod 6C.
    A zero shift returns the input exactly; grey pixels (C = 0) stay as they are.
    """
    x = np.moveaxis(img, -1, 0).astype(np.int32)  # planar: contiguous channel planes
    r, g, b = x[0], x[1], x[2]
    hi = np.maximum(np.maximum(r, g), b)
    c = hi - np.minimum(np.minimum(r, g), b)
    six_c = 6 * c
    pos = np.where(hi == r, g - b, np.where(hi == g, b - r + 2 * c, r - g + 4 * c))
    pos += (fixed(shift) * six_c + _HALF) >> Q  # |shift * 2**16 * 6 * 255| < 2**31
    # Wrap into [0, 6C) with comparisons (integer division is slow and C may be 0).
    pos += six_c * ((pos < 0).astype(np.int32) - (pos >= six_c).astype(np.int32))
    out = np.empty_like(x)
    for channel, n in enumerate((5, 3, 1)):
        k = pos + n * c
        k -= six_c * (k >= six_c).astype(np.int32)
        out[channel] = hi - np.clip(np.minimum(k, 4 * c - k), 0, c)
    return np.moveaxis(out, 0, -1).astype(np.uint8)


def gaussian_kernel(kernel_px: int, sigma: float) -> np.ndarray:
    """Integer 1-D Gaussian weights (int64, odd length `kernel_px`) summing to 2**14."""
    if kernel_px < 1 or kernel_px % 2 == 0:
        raise ValueError(f"kernel_px must be a positive odd number, got {kernel_px}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    half = kernel_px // 2
    raw = [exp_neg(0.5 * (i / sigma) * (i / sigma)) for i in range(-half, half + 1)]
    total = sum(raw)
    weights = [int(round(w / total * (1 << _KERNEL_BITS))) for w in raw]
    weights[half] += (1 << _KERNEL_BITS) - sum(weights)  # the centre absorbs the rounding
    return np.array(weights, dtype=np.int64)


def gaussian_blur(img: np.ndarray, kernel_px: int, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflect padding (torchvision's border rule), exact in integers.

    The horizontal pass is rounded to 6 fractional bits so the vertical one fits int32.
    """
    k = [int(w) for w in gaussian_kernel(kernel_px, sigma)]
    half = kernel_px // 2
    h, w = img.shape[:2]
    if half >= min(h, w):
        raise ValueError(f"blur kernel {kernel_px} px is too large for a {h}x{w} image")
    x = np.pad(img, ((half, half), (half, half), (0, 0)), mode="reflect").astype(np.int32)
    # The kernel is symmetric: pair the taps i and K-1-i (half the multiplications).
    rows = k[half] * x[:, half:half + w]
    for i in range(half):
        rows += k[i] * (x[:, i:i + w] + x[:, kernel_px - 1 - i:kernel_px - 1 - i + w])
    rows = (rows + (1 << (_KERNEL_BITS - 7))) >> (_KERNEL_BITS - 6)  # Q6, at most 255 * 64
    acc = k[half] * rows[half:half + h]
    for i in range(half):
        acc += k[i] * (rows[i:i + h] + rows[kernel_px - 1 - i:kernel_px - 1 - i + h])
    shift = _KERNEL_BITS + 6
    return np.clip((acc + (1 << (shift - 1))) >> shift, 0, 255).astype(np.uint8)
