"""Promotion locks: an OS file lock beside a sqlite registry, a lease-based mutex inside a remote registry.

See docs/adr/0007-registry-promotion.md for why these two and what each guarantees.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from g2l.registry.store import RegistryError

LOCK_SUFFIX = ".promotion-lock"
_TOKEN = "g2l.lock.token"
_OWNER = "g2l.lock.owner"
_SINCE = "g2l.lock.acquired_at"


def owner_id() -> str:
    """Who holds a lock: host and pid, for the message a waiting promoter prints."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def file_lock(db_path: Path, timeout_s: float) -> Iterator[None]:
    """Exclusive OS lock (fcntl via `filelock`) on `<db>.promote.lock`; released if the process dies."""
    import filelock

    lock_path = db_path.with_name(db_path.name + ".promote.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(lock_path), timeout=timeout_s)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise RegistryError(
            f"another promotion has held {lock_path} for over {timeout_s:.0f}s; fix: wait for it, or raise "
            "registry.lock_timeout_s"
        ) from exc
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def registry_mutex(
    client: Any, model: str, timeout_s: float, stale_s: float, poll_s: float = 0.25
) -> Iterator[None]:
    """Mutex through the registry itself: creating a registered model with a fixed name is atomic.

    The backing database's unique constraint on registered-model names makes `create_registered_model`
    succeed for exactly one caller; the others get RESOURCE_ALREADY_EXISTS and retry. The lock model
    carries a token, owner and start time; one older than `stale_s` (its holder died) is broken, but only
    if its token is still the one seen as stale.
    """
    from mlflow.exceptions import MlflowException

    name = model + LOCK_SUFFIX
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                name,
                tags={_TOKEN: token, _OWNER: owner_id(), _SINCE: f"{time.time():.3f}"},
                description=f"g2l promotion lock for {model}; held while the champion alias is decided",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _holder(client, name)
        if holder is not None and time.time() - holder[1] > stale_s:
            _break(client, name, holder[0])
            continue
        if time.monotonic() > deadline:
            who = holder[2] if holder else "unknown"
            raise RegistryError(
                f"promotion lock {name!r} held by {who} for over {timeout_s:.0f}s; fix: wait for it, or, if "
                f"that promoter died, delete the registered model {name!r}"
            )
        time.sleep(poll_s * (0.5 + random.random()))  # jitter: contenders do not retry in lock-step
    try:
        yield
    finally:
        holder = _holder(client, name)
        if holder is not None and holder[0] == token:
            with contextlib.suppress(MlflowException):
                client.delete_registered_model(name)


def _holder(client: Any, name: str) -> tuple[str, float, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return None
    try:
        since = float(tags.get(_SINCE, "0"))
    except ValueError:
        since = 0.0
    return tags.get(_TOKEN, ""), since, tags.get(_OWNER, "unknown")


def _break(client: Any, name: str, stale_token: str) -> None:
    from mlflow.exceptions import MlflowException

    holder = _holder(client, name)
    if holder is not None and holder[0] == stale_token:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(name)
