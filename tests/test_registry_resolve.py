"""`registry:<cancer>@<alias>` specs (used by `g2l evaluate` to score the champion) resolve to the registry's
own verified copy of the student, or None when nothing is registered under the alias yet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from g2l.registry import RegistryError, promote, resolve_spec
from tests.fixtures.lineage import Candidate, World, sha256_file


def test_registry_specs_resolve_to_the_registered_student(
    make_candidate: Callable[..., Candidate],
    lineage_world: World,
    cancer: str,
    registry_uri: str,
    tmp_path: Path,
) -> None:
    cache = str(tmp_path / "cache")
    assert resolve_spec(f"registry:{cancer}@champion", registry_uri=registry_uri, cache_dir=cache) is None

    cand = make_candidate(value=0.8)
    version = promote(
        student=str(cand.student),
        report=str(cand.report),
        decision=str(cand.decision),
        cancer=cancer,
        policy=str(lineage_world.policy),
        registry_uri=registry_uri,
        quiet=True,
    ).version
    by_alias = resolve_spec(f"registry:{cancer}@champion", registry_uri=registry_uri, cache_dir=cache)
    by_version = resolve_spec(f"registry:{cancer}@v{version}", registry_uri=registry_uri, cache_dir=cache)
    assert by_alias is not None and by_alias == by_version
    assert sha256_file(Path(by_alias) / "model.safetensors") == cand.weights_sha256
    assert (Path(by_alias) / "config.json").read_bytes() == (cand.student / "config.json").read_bytes()
    assert resolve_spec(f"registry:{cancer}@challenger", registry_uri=registry_uri, cache_dir=cache) is None
    assert resolve_spec(f"registry:{cancer}@v99", registry_uri=registry_uri, cache_dir=cache) is None

    # A corrupted local copy is fetched again rather than served.
    (Path(by_alias) / "model.safetensors").write_bytes(b"corrupt")
    again = resolve_spec(f"registry:{cancer}@champion", registry_uri=registry_uri, cache_dir=cache)
    assert again is not None and sha256_file(Path(again) / "model.safetensors") == cand.weights_sha256

    with pytest.raises(ValueError, match="registry:<cancer>@<alias>"):
        resolve_spec("registry:brca", registry_uri=registry_uri)
    missing = tmp_path / "none" / "mlflow.db"
    assert resolve_spec(f"registry:{cancer}@champion", registry_uri=f"sqlite:///{missing}") is None
    assert not missing.exists()  # resolving never creates a registry
    with pytest.raises(RegistryError, match="bogus://x"):
        resolve_spec("registry:brca@champion", registry_uri="bogus://x")
