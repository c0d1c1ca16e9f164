"""Retries that redo work only for failures worth retrying: node loss and preemption, not bad input.

KFP's retry policy cannot select failures: the backend compiles it to an Argo retryStrategy with a limit
and a backoff only (kubeflow/pipelines backend/src/v2/compiler/argocompiler/container.go
`getTaskRetryStrategyFromInput` at 2.17.0), so every failed attempt is retried. g2l rejects bad input
with a ValueError subclass (ConfigError, ManifestError, ShardError, ModelError, ...); a step that does
records it under the run's directory, and its retried attempts (the compiler sets `KFP_RETRY_INDEX`,
backend/src/v2/component/constants.go) fail at once with the same message, before they load a model or
download a byte. A preempted pod (SIGTERM, exit 143) or a lost node leaves no record and is retried.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from g2l.pipeline.io import run_id

RETRY_ENV = "KFP_RETRY_INDEX"


class BadInputOnRetry(ValueError):
    """A retried attempt of a step whose input an earlier attempt rejected."""


def marker_uri(artifact_root: str, step: str) -> str:
    """Where a step's rejected-input message is kept for its retries: ROOT/pipeline/runs/<run>/<step>."""
    from g2l import storage

    return storage.join(artifact_root, "pipeline", "runs", run_id(), "bad-input", f"{step}.txt")


@contextlib.contextmanager
def no_retry_on_bad_input(artifact_root: str, step: str) -> Iterator[None]:
    """Run a step; on a retry after a rejected input, fail at once; on a rejected input, record it."""
    from g2l import storage

    marker = marker_uri(artifact_root, step)
    if int(os.environ.get(RETRY_ENV) or 0) > 0 and storage.exists(marker):
        raise BadInputOnRetry(
            f"not retrying {step}: an earlier attempt rejected its input: {storage.read_text(marker)}"
        )
    try:
        yield
    except ValueError as exc:
        try:
            storage.put_text(marker, f"{type(exc).__name__}: {exc}")
        except OSError:  # recording is best effort: the step's own error is what matters
            pass
        raise
