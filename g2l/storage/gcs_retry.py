"""How gs:// calls retry: server errors keep the library's backoff, an unreachable endpoint fails fast.

google-cloud-storage retries every call with `DEFAULT_RETRY` (google/cloud/storage/retry.py, 3.x: predicate
`_should_retry`, which counts `requests.ConnectionError` as transient) for up to 120 s
(google/api_core/retry/retry_base.py, 2.x: `_DEFAULT_DEADLINE`), and each request may wait 60 s
(google/cloud/storage/constants.py `_DEFAULT_TIMEOUT`). A dead or mistyped endpoint therefore cost two
minutes per slide, and at 1,000 slides a day. Here a call gives up on connection errors once
`connect_budget_s` has passed since it started (its backoff stays short), keeps the library's policy for
errors the server returns (429, 5xx), connects with a short timeout, and once an endpoint has been found
unreachable, further calls try it once only (`EndpointHealth`) until one succeeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: Seconds a call keeps retrying connection errors (refused, unresolvable, connect timeout, reset).
CONNECT_BUDGET_S = 8.0
#: Seconds to wait for a TCP connection; reads of a healthy endpoint keep the library's 60 s.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
#: After an endpoint was found unreachable, calls within this many seconds try once, without backoff.
DOWN_HOLD_S = 60.0


def is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` means the endpoint could not be talked to at all (not an error it answered with)."""
    import requests
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return True
    if isinstance(exc, auth_exceptions.TransportError) and exc.args:
        first = exc.args[0]
        return isinstance(first, BaseException) and is_connection_error(first)
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and isinstance(cause, requests.exceptions.ConnectionError)


def _library_predicate() -> Callable[[Exception], bool]:
    """google-cloud-storage's own retry predicate (what it retries by default)."""
    from google.api_core.retry import if_transient_error
    from google.cloud.storage import retry as storage_retry

    return getattr(storage_retry, "_should_retry", None) or if_transient_error


class EndpointHealth:
    """Whether the endpoint was recently found unreachable (shared by every call of one GCSStorage)."""

    def __init__(self, hold_s: float = DOWN_HOLD_S) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._hold_s = hold_s

    def mark_down(self) -> None:
        """An endpoint that exhausted a call's connection budget."""
        with self._lock:
            self._down_since = time.monotonic()

    def mark_up(self) -> None:
        """A call got through."""
        with self._lock:
            self._down_since = None

    def is_down(self) -> bool:
        """True within `hold_s` of the last unreachable verdict."""
        with self._lock:
            return self._down_since is not None and time.monotonic() - self._down_since < self._hold_s


def call_retry(health: EndpointHealth, connect_budget_s: float = CONNECT_BUDGET_S) -> Any:
    """A fresh `google.api_core.retry.Retry` for one call (its connection budget starts now)."""
    from google.api_core.retry import Retry

    started = time.monotonic()
    budget = 0.0 if health.is_down() else connect_budget_s
    library = _library_predicate()

    def predicate(exc: Exception) -> bool:
        if is_connection_error(exc):
            return time.monotonic() - started < budget
        return bool(library(exc))

    # Backoff: 0.5 s doubling to 4 s (random in [0, delay]) keeps the last wait of a dead endpoint short;
    # the 120 s overall deadline for server errors is the library's default.
    return Retry(predicate=predicate, initial=0.5, maximum=4.0, multiplier=2.0, timeout=120.0)
