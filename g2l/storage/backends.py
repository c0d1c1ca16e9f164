"""The backend registry: a URI's scheme picks LocalStorage or GCSStorage (one shared instance each)."""

from __future__ import annotations

import os

from g2l.storage.base import Storage
from g2l.storage.gcs import GCSStorage
from g2l.storage.local import LocalStorage
from g2l.storage.uris import is_remote

_LOCAL = LocalStorage()
_GCS = GCSStorage()
BACKENDS: dict[str, Storage] = {"file": _LOCAL, "gs": _GCS}


def backend_for(uri: str | os.PathLike[str]) -> Storage:
    """The backend for a URI's scheme: gs:// -> GCSStorage, anything else -> LocalStorage."""
    return BACKENDS["gs" if is_remote(uri) else "file"]
