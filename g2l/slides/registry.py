"""Backend registry and `open_slide`: explicit backends never fall back; `auto` tries a fixed order."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from g2l.slides.protocol import BackendUnavailableError, SlideReader, SlideReadError

Opener = Callable[..., SlideReader]


def _cucim(path: str, *, mpp_override: float | None, reason: str) -> SlideReader:
    from g2l.slides.cucim_backend import CuCIMReader

    return CuCIMReader(path, mpp_override=mpp_override, reason=reason)


def _openslide(path: str, *, mpp_override: float | None, reason: str) -> SlideReader:
    from g2l.slides.openslide_backend import OpenSlideReader

    return OpenSlideReader(path, mpp_override=mpp_override, reason=reason)


def _tiffslide(path: str, *, mpp_override: float | None, reason: str) -> SlideReader:
    from g2l.slides.tiffslide_backend import TiffSlideReader

    return TiffSlideReader(path, mpp_override=mpp_override, reason=reason)


def _tifffile_jpeg(path: str, *, mpp_override: float | None, reason: str) -> SlideReader:
    from g2l.slides.fast import TiffJpegReader

    return TiffJpegReader(path, mpp_override=mpp_override, reason=reason)


#: name -> opener. Backend modules are imported lazily so a missing optional library only matters when used.
BACKENDS: dict[str, Opener] = {
    "cucim": _cucim,
    "openslide": _openslide,
    "tiffslide": _tiffslide,
    "tifffile-jpeg": _tifffile_jpeg,
}

#: The order `backend="auto"` tries (docs/adr/0001-slide-reader-backends.md: why the fast path is not in it).
AUTO_ORDER: tuple[str, ...] = ("cucim", "openslide", "tiffslide")


def _open_checked(name: str, path: str, mpp_override: float | None, reason: str) -> SlideReader:
    """Open with one backend and read with it: a backend that opens a file but cannot read it has failed."""
    reader = BACKENDS[name](path, mpp_override=mpp_override, reason=reason)
    try:
        probe = getattr(reader, "probe", None)
        if probe is not None:
            probe()
        else:
            reader.read_region((0, 0), reader.level_count - 1, (1, 1))
    except BaseException:
        reader.close()
        raise
    return reader


def _short(err: BaseException) -> str:
    if isinstance(err, SlideReadError) and err.attempts:
        text = " ".join(err.attempts[-1][1].split())
    else:
        text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def open_slide(
    path: str | os.PathLike[str],
    backend: str = "auto",
    mpp_override: float | None = None,
) -> SlideReader:
    """Open a local slide file with `backend` ("auto" or a name in `BACKENDS`).

    `mpp_override` (the manifest's `mpp`) wins over the slide's metadata. A backend counts only once it has
    read the file the way tiling reads it (`probe`: batched reads at every level, level 0's last pixel).
    An explicit backend that fails raises `SlideReadError` (no silent fallback); `auto` tries `AUTO_ORDER`
    and records in `backend_reason` why each earlier one failed and which one read the file.
    """
    path = str(path)
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown slide backend {backend!r}; choose 'auto' or one of {sorted(BACKENDS)}")
    if mpp_override is not None and not (isinstance(mpp_override, float) and math.isnan(mpp_override)):
        if not (float(mpp_override) > 0 and math.isfinite(float(mpp_override))):
            raise ValueError(
                f"mpp override for {path} must be a positive number of microns per pixel, "
                f"got {mpp_override!r}; fix the `mpp` value in its manifest row"
            )
    if not Path(path).is_file():
        raise SlideReadError(
            path, [], hint="The file does not exist (stage remote slides to a local path first)"
        )

    if backend != "auto":
        try:
            return _open_checked(backend, path, mpp_override, f"explicit: backend={backend!r}")
        except BackendUnavailableError as e:
            raise SlideReadError(
                path, [(backend, str(e))], hint="Install it or choose another backend"
            ) from e
        except Exception as e:  # noqa: BLE001 - any library error means this backend cannot read the file
            raise SlideReadError(
                path,
                [(backend, _short(e))],
                hint=f"Backend {backend!r} was requested explicitly, so no other was tried (auto tries all)",
            ) from e

    failures: list[tuple[str, str]] = []
    for name in AUTO_ORDER:
        note = "; ".join(f"{n} failed ({err})" for n, err in failures)
        reason = f"auto: {note + '; ' if note else ''}{name} read it"
        try:
            return _open_checked(name, path, mpp_override, reason)
        except Exception as e:  # noqa: BLE001 - try the next backend, remember why this one failed
            failures.append((name, _short(e)))
    raise SlideReadError(
        path, failures, hint="The file may be corrupt, truncated, or in an unsupported format"
    )
