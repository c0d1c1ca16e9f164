"""Check that a manifest's slides exist and still match their recorded checksums (before a long run)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from g2l import storage
from g2l.manifest.schema import RowError, is_missing


def _check_row(row: int, uri: str, checksum: str | None, verify_local: bool) -> RowError | None:
    remote = storage.is_remote(uri)
    try:
        # Bucket metadata carries the checksum for free; a local file must be read, so only on request.
        want_crc = verify_local and checksum is not None and checksum.lower().startswith("crc32c:")
        info = storage.stat(uri, checksum=remote or want_crc)
    except FileNotFoundError:
        return RowError(row=row, column="uri", value=uri, message="no such file or object",
                        fix="upload the slide there or correct the uri")
    if checksum is None:
        return None
    try:
        algo, want = storage.parse_checksum(checksum)
    except ValueError:
        return None  # malformed checksums are validate()'s business
    have = info.crc32c if algo == "crc32c" else info.md5
    if have is None and algo == "md5" and not remote and verify_local:
        have = storage.md5_of_file(uri)
    if have is not None and have != want:
        return RowError(row=row, column="checksum", value=checksum,
                        message=f"the file's {algo} is {have}: it changed since the manifest was made",
                        fix="restore the original slide, or rebuild the inventory and re-sample the manifest")
    return None


def check_files(df: pd.DataFrame, *, first_row: int = 2, verify_local_checksums: bool = False,
                workers: int = 16) -> list[RowError]:
    """Every row whose `uri` is missing or whose bytes no longer match its `checksum`, in file order.

    gs:// checksums come from the bucket's metadata (no download); local files are hashed only with
    `verify_local_checksums`.
    """
    jobs = []
    for pos, rec in enumerate(df.to_dict("records")):
        uri = rec.get("uri")
        if is_missing(uri):
            continue
        checksum = None if is_missing(rec.get("checksum")) else str(rec["checksum"])
        jobs.append((first_row + pos, str(uri), checksum))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = pool.map(lambda job: _check_row(job[0], job[1], job[2], verify_local_checksums), jobs)
        return [err for err in found if err is not None]
