"""Reading, writing and hashing manifests; `load` reads a path, a gs:// URI or a git/DVC revision."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
from pathlib import Path

import pandas as pd

from g2l import storage
from g2l.manifest.canonical import canonical_columns, canonical_csv, canonical_sha256
from g2l.manifest.schema import ManifestError, RowError, is_missing, is_parquet, validate


@dataclasses.dataclass(frozen=True, kw_only=True)
class Manifest:
    """A loaded manifest: its rows, sha256 of its canonical CSV, the git revision and where it came from."""

    df: pd.DataFrame
    content_hash: str
    rev: str | None
    source: str
    uri: str = ""  # the path or URI as given (relative to `repo` when read at a revision)
    repo: str | None = None


def parse_table(data: bytes, name: str) -> pd.DataFrame:
    """Parse manifest bytes (CSV or Parquet by `name`'s extension); CSV cells stay strings, blanks ''.

    Bytes that are not such a table (a slide, an image, an empty file) raise `ManifestError` naming the file.
    """
    kind = "Parquet" if is_parquet(name) else "CSV"
    try:
        if is_parquet(name):
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[])
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many kinds for bytes that are not a table
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ManifestError(name, [RowError(
            row=None, column="", value=None, message=f"not a readable {kind} table ({reason})",
            fix="give a manifest: a UTF-8 CSV with a header row (slide_id,uri,cancer_type,site,...) or a "
            ".parquet file")]) from None


def read_table(path_or_uri: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest/inventory table from a local path or gs:// URI, without validation."""
    return parse_table(storage.read_bytes(path_or_uri), str(path_or_uri))


def canonical_csv_bytes(df: pd.DataFrame) -> bytes:
    """The canonical CSV form: canonical column order, file row order, values as plain strings, '\\n' ends."""
    return canonical_csv([str(c) for c in df.columns], {str(c): df[c].tolist() for c in df.columns})


def content_hash(df: pd.DataFrame) -> str:
    """sha256 of the manifest's canonical CSV bytes: the manifest's identity in every artifact's lineage."""
    return canonical_sha256([str(c) for c in df.columns], {str(c): df[c].tolist() for c in df.columns})


def write_table(df: pd.DataFrame, path_or_uri: str | os.PathLike[str]) -> None:
    """Write a manifest atomically (local or gs://): canonical CSV, or Parquet by extension."""
    if is_parquet(str(path_or_uri)):
        buf = io.BytesIO()
        cols = canonical_columns([str(c) for c in df.columns])
        df[cols].to_parquet(buf, index=False)
        storage.put_bytes(path_or_uri, buf.getvalue())
    else:
        storage.put_bytes(path_or_uri, canonical_csv_bytes(df))


def _git(repo: str, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", repo, *args], capture_output=True, check=False)
    if proc.returncode != 0:
        raise FileNotFoundError(f"git {' '.join(args)} in {repo}: {proc.stderr.decode().strip()}")
    return proc.stdout


def _resolve_commit(repo: str | None, rev: str | None) -> str | None:
    """The full commit hash of `rev` in a local repo (recorded in lineage); `rev` unchanged elsewhere."""
    if rev is None:
        return None
    where = repo or "."
    if not Path(where).is_dir():
        return rev
    try:
        return _git(where, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    except FileNotFoundError:
        return rev


def read_at_rev(path: str, rev: str | None, repo: str | None) -> bytes:
    """Bytes of `path` at git revision `rev`: DVC-tracked outputs via dvc.api (cache or remote), else git."""
    import dvc.api

    try:
        return dvc.api.read(path, repo=repo, rev=rev, mode="rb")
    except Exception as dvc_exc:  # dvc raises many kinds; a plain git file in a non-DVC repo is fine
        where = repo or "."
        if not Path(where).is_dir():
            raise
        rel = os.path.relpath(os.path.abspath(os.path.join(where, path)), os.path.abspath(where)) \
            if not os.path.isabs(path) else os.path.relpath(path, os.path.abspath(where))
        try:
            return _git(where, "show", f"{rev or 'HEAD'}:{rel}")
        except FileNotFoundError as git_exc:
            raise FileNotFoundError(
                f"{path} at revision {rev!r} of {where}: not readable through dvc.api ({dvc_exc}) nor git "
                f"({git_exc}); check the path is relative to the repo root and the revision exists"
            ) from git_exc


def to_manifest_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Typed view of a validated manifest: `mpp` as float (NaN where empty), the rest unchanged."""
    out = df.copy()
    if "mpp" in out.columns:
        out["mpp"] = [float("nan") if is_missing(v) else float(v) for v in out["mpp"].tolist()]
    return out


def load(path_or_uri: str | os.PathLike[str], rev: str | None = None, repo: str | None = None,
         *, check: bool = True) -> Manifest:
    """Load and validate a manifest from a path, a gs:// URI, or `path` at git revision `rev` of `repo`.

    With `rev` (or `repo`) the file is read through `dvc.api` (DVC-tracked outputs come from the
    cache or the DVC remote) or git for plain files. `content_hash` is the sha256 of the canonical
    CSV; `rev` the resolved commit. Invalid manifests raise ManifestError listing every bad row.
    """
    path = str(path_or_uri)
    if rev is None and repo is None:
        data = storage.read_bytes(path)
        source = path
    else:
        data = read_at_rev(path, rev, repo)
        source = f"{repo or '.'}@{rev or 'HEAD'}:{path}"
    df = parse_table(data, path)
    if check:
        errors = validate(df, first_row=1 if is_parquet(path) else 2)
        if errors:
            raise ManifestError(source, errors)
    return Manifest(df=to_manifest_frame(df), content_hash=content_hash(df),
                    rev=_resolve_commit(repo, rev), source=source, uri=path, repo=repo)
