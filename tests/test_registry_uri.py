"""A registry URI that cannot work is a clear error naming the URI and the fix, not a traceback or a hang."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from g2l.registry import RegistryConfig, RegistryError, promote, resolve_uri
from tests.fixtures.lineage import Candidate, World, promote_args


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "uri, says",
    [
        ("bogus://registry", "unsupported scheme 'bogus'"),
        ("mlflow.db", "has no scheme"),
        ("sqlite:///{blocker}/mlflow.db", "cannot create the directory"),
        ("http://127.0.0.1:{port}", "no MLflow server answers"),
    ],
)
def test_bad_registry_uri_is_a_clear_error(
    uri: str, says: str, make_candidate: Callable[..., Candidate], lineage_world: World, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    uri = uri.format(blocker=blocker, port=_closed_port())
    cand = make_candidate(value=0.8)
    started = time.monotonic()
    with pytest.raises(RegistryError) as err:
        promote(
            student=str(cand.student),
            report=str(cand.report),
            decision=str(cand.decision),
            cancer="brca",
            policy=str(lineage_world.policy),
            registry_uri=uri,
            quiet=True,
        )
    message = str(err.value)
    assert says in message and repr(uri) in message
    assert "fix:" in message and "MLFLOW_TRACKING_URI" in message
    assert time.monotonic() - started < 30  # fails fast: no long retry loop against a dead server


def test_bad_registry_uri_on_the_cli_exits_2_with_the_message(
    make_candidate: Callable[..., Candidate], lineage_world: World
) -> None:
    cand = make_candidate(value=0.8)
    out = subprocess.run(
        [sys.executable, "-m", "g2l", *promote_args(cand, lineage_world, "brca", "postgres-typo://db/mlflow")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "postgres-typo://db/mlflow" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr


def test_registry_uri_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    embedded = resolve_uri(None, RegistryConfig(), str(tmp_path / "art"))
    assert embedded == f"sqlite:///{tmp_path / 'art' / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri(None, RegistryConfig(), "x") == "http://env:5000"
    assert resolve_uri(None, RegistryConfig(tracking_uri="http://cfg:5000"), "x") == "http://cfg:5000"
    assert (
        resolve_uri("http://cli:5000", RegistryConfig(tracking_uri="http://cfg:5000"), "x")
        == "http://cli:5000"
    )


def test_audit_and_listing_of_a_missing_embedded_registry_name_it_and_create_nothing(tmp_path: Path) -> None:
    from g2l.audit import audit
    from g2l.registry import list_versions

    missing = tmp_path / "nowhere" / "mlflow.db"
    for call in (
        lambda: audit(cancer="brca", registry_uri=f"sqlite:///{missing}"),
        lambda: list_versions("brca", registry_uri=f"sqlite:///{missing}"),
    ):
        with pytest.raises(
            RegistryError, match=r"no registry database at .*mlflow\.db.*fix: run `g2l promote`"
        ):
            call()
    assert not missing.parent.exists()
