"""The registry-held promotion lock (for MLflow servers): a live holder blocks until the timeout, naming
itself; a lock left by a dead promoter is broken once stale."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from g2l.registry import RegistryConfig, RegistryError, model_name, promote
from g2l.registry.lock import LOCK_SUFFIX
from g2l.registry.store import open_client
from tests.fixtures.lineage import Candidate, World


def _hold(uri: str, cancer: str, since: float) -> None:
    open_client(uri).create_registered_model(
        model_name(cancer) + LOCK_SUFFIX,
        tags={
            "g2l.lock.token": "other",
            "g2l.lock.owner": "host-b:4242",
            "g2l.lock.acquired_at": f"{since:.3f}",
        },
    )


def test_registry_lock_blocks_while_held_and_breaks_when_stale(
    make_candidate: Callable[..., Candidate], lineage_world: World, cancer: str, registry_uri: str
) -> None:
    cand = make_candidate(value=0.8)

    def run(config: RegistryConfig):  # type: ignore[no-untyped-def]
        return promote(
            student=str(cand.student),
            report=str(cand.report),
            decision=str(cand.decision),
            cancer=cancer,
            policy=str(lineage_world.policy),
            registry_uri=registry_uri,
            config=config,
            quiet=True,
        )

    open_client(registry_uri)  # the session db exists before the lock model is planted
    _hold(registry_uri, cancer, since=time.time())
    with pytest.raises(RegistryError, match=r"held by host-b:4242.*delete the registered model"):
        run(RegistryConfig(lock="registry", lock_timeout_s=1.0))

    client = open_client(registry_uri)
    client.delete_registered_model(model_name(cancer) + LOCK_SUFFIX)
    _hold(registry_uri, cancer, since=time.time() - 3600)  # its holder died an hour ago
    result = run(RegistryConfig(lock="registry", lock_stale_s=60.0, lock_timeout_s=30.0))
    assert result.status == "promoted"
    with pytest.raises(Exception, match="RESOURCE_DOES_NOT_EXIST|not found|does not exist"):
        client.get_registered_model(model_name(cancer) + LOCK_SUFFIX)  # released after use
