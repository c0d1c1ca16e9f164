"""`registry:<cancer>@<alias>` / `registry:<cancer>@v<N>` model specs -> a local student directory."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from g2l.registry import blobs, lineage
from g2l.registry.config import RegistryConfig
from g2l.registry.store import RegistryError, alias_version, model_name, open_client, resolve_uri, sqlite_path

PREFIX = "registry:"
CACHE_ENV = "G2L_REGISTRY_CACHE"
_SPEC = re.compile(r"^registry:(?P<cancer>[A-Za-z0-9-]+)@(?P<ref>[A-Za-z0-9_-]+)$")


def resolve_spec(
    spec: str,
    *,
    registry_uri: str | None = None,
    config: RegistryConfig | None = None,
    artifact_root: str = "demo-output/artifacts",
    cache_dir: str | None = None,
) -> str | None:
    """The registered student a spec names, downloaded (once, sha256-verified) into a local directory.

    `registry:brca@champion` follows an alias, `registry:brca@v3` names a version. None when the model or
    alias does not exist yet (e.g. no champion before the first promotion), so callers can skip it.
    """
    from mlflow.exceptions import MlflowException

    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(f"model spec {spec!r} is not registry:<cancer>@<alias> or registry:<cancer>@v<N>")
    cancer, ref = match["cancer"], match["ref"]
    uri = resolve_uri(registry_uri, config or RegistryConfig(), artifact_root)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return None  # no embedded registry yet, so nothing registered (and none created as a side effect)
    client = open_client(uri)
    name = model_name(cancer)
    mv: Any
    if re.fullmatch(r"v\d+", ref):
        try:
            mv = client.get_model_version(name, ref[1:])
        except MlflowException:
            return None
    else:
        try:
            mv = alias_version(client, name, ref)
        except MlflowException:
            return None
    if mv is None:
        return None
    if not mv.run_id:
        raise RegistryError(
            f"{name} v{mv.version} has no run to download the student from; it was not "
            "registered by `g2l promote`"
        )
    root = Path(cache_dir or os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "g2l-registry")
    target = root / name / f"v{mv.version}"
    expected = (mv.tags or {}).get(f"{lineage.PREFIX}student_weights_sha256")
    weights = target / "student" / lineage.WEIGHTS_FILE
    if not (weights.exists() and blobs.sha256_uri(str(weights)) == expected):
        target.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target, prefix=".download-"))
        client.download_artifacts(mv.run_id, "student", str(tmp))
        got = blobs.sha256_uri(str(tmp / "student" / lineage.WEIGHTS_FILE))
        if expected and got != expected:
            raise RegistryError(
                f"{name} v{mv.version}: downloaded weights sha256 {got} differ from the recorded "
                f"{expected}; the registry's artifact store was changed (run `g2l audit`)"
            )
        final = target / "student"
        if final.exists():
            import shutil

            shutil.rmtree(final)
        os.replace(tmp / "student", final)
        tmp.rmdir()
    return str(target / "student")
