"""The `registry:` config section: where the MLflow registry lives and how promotion is guarded."""

from __future__ import annotations

import dataclasses

from g2l.config import require

LOCK_MODES = ("auto", "file", "registry")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegistryConfig:
    """MLflow tracking/registry location, gate policy, promotion lock and audit tolerance."""

    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite under <artifact_root>/mlflow/
    artifact_location: str | None = None  # run artifacts; None: beside the sqlite db, or the server's default
    policy: str = "configs/gate.yaml"  # gate policy YAML naming `primary_metric: {benchmark, metric}`
    lock: str = "auto"  # auto: file lock for sqlite, registry mutex for a server
    lock_timeout_s: float = 600.0  # how long a promoter waits for another one to finish
    lock_stale_s: float = 1800.0  # a registry lock older than this is taken to be from a dead promoter
    deep_tolerance: float = 1e-3  # |re-evaluated - recorded| allowed per metric in `g2l audit --deep`

    def __post_init__(self) -> None:
        require(
            self.lock in LOCK_MODES,
            f"registry.lock must be one of {', '.join(LOCK_MODES)}, got {self.lock!r}",
        )
        require(self.lock_timeout_s > 0, f"registry.lock_timeout_s must be > 0, got {self.lock_timeout_s}")
        require(self.lock_stale_s > 0, f"registry.lock_stale_s must be > 0, got {self.lock_stale_s}")
        require(self.deep_tolerance >= 0, f"registry.deep_tolerance must be >= 0, got {self.deep_tolerance}")
        require(bool(self.policy), "registry.policy must name the gate policy YAML (e.g. configs/gate.yaml)")
