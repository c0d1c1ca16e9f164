"""Opening the MLflow registry: URI resolution, a clear error for a bad URI, model and experiment names."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g2l.registry.config import RegistryConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRACKING_ENV = "MLFLOW_TRACKING_URI"
_SERVER_SCHEMES = ("http", "https")
_DB_SCHEMES = ("postgresql", "mysql", "mssql")
_FIX = (
    "fix: pass --registry sqlite:////abs/path/mlflow.db (embedded), --registry http://HOST:5000 "
    "(an MLflow server), set registry.tracking_uri in the config, or set MLFLOW_TRACKING_URI"
)


class RegistryError(RuntimeError):
    """The registry cannot be used or refused an operation; the message names the URI or item and the fix."""


def model_name(cancer: str) -> str:
    """The registered model of a cancer type: one per cancer."""
    return f"g2l-student-{cancer}"


def experiment_name(cancer: str) -> str:
    """The MLflow experiment that holds promotion runs of a cancer type."""
    return f"g2l-{cancer}"


def default_uri(artifact_root: str) -> str:
    """The embedded registry: a sqlite db under the artifact root (artifacts beside it)."""
    if "://" in artifact_root:
        raise RegistryError(
            f"the embedded sqlite registry needs a local artifact root, got {artifact_root!r}; " + _FIX
        )
    return f"sqlite:///{Path(artifact_root).resolve() / 'mlflow' / 'mlflow.db'}"


def resolve_uri(explicit: str | None, config: RegistryConfig, artifact_root: str) -> str:
    """The registry URI: --registry, else registry.tracking_uri, else $MLFLOW_TRACKING_URI, else embedded."""
    for candidate in (explicit, config.tracking_uri, os.environ.get(TRACKING_ENV)):
        if candidate:
            return candidate
    return default_uri(artifact_root)


def scheme(uri: str) -> str:
    """The URI scheme, without any sqlalchemy driver suffix (`postgresql+psycopg2` -> `postgresql`)."""
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI, else None."""
    if scheme(uri) != "sqlite":
        return None
    rest = uri.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        return None
    return Path(rest[1:])  # sqlite:///rel.db is relative, sqlite:////abs.db absolute


def check_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URI and the fix, when the registry URI cannot work."""
    kind = scheme(uri)
    if kind == "sqlite":
        path = sqlite_path(uri)
        if path is None or path.name in ("", ":memory:"):
            raise RegistryError(f"registry URI {uri!r} names no database file; {_FIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(
                f"registry URI {uri!r}: cannot create the directory {path.parent} ({exc.strerror}); {_FIX}"
            ) from exc
        if path.exists() and path.is_dir():
            raise RegistryError(f"registry URI {uri!r}: {path} is a directory, not a sqlite file; {_FIX}")
        return
    if kind in _SERVER_SCHEMES:
        health = f"{uri.rstrip('/')}/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout_s) as resp:
                if resp.status == 200:
                    return
                problem = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = str(getattr(exc, "reason", exc))
        raise RegistryError(f"registry URI {uri!r}: no MLflow server answers at {health} ({problem}); {_FIX}")
    if kind in _DB_SCHEMES or kind in ("databricks", "databricks-uc", "uc"):
        return  # reachability is checked on first use by open_client
    if not kind:
        raise RegistryError(
            f"registry URI {uri!r} has no scheme; for an embedded registry use "
            f"sqlite:///{Path(uri).resolve()}/mlflow.db; {_FIX}"
        )
    raise RegistryError(
        f"registry URI {uri!r} has unsupported scheme {kind!r} (use sqlite, http(s), postgresql, mysql); "
        f"{_FIX}"
    )


def open_client(uri: str, *, create: bool = True) -> MlflowClient:
    """An MlflowClient on `uri` (tracking and registry), verified with one cheap call.

    With `create=False` a sqlite registry that does not exist yet is an error rather than a new database.
    """
    db = sqlite_path(uri)
    if not create and db is not None and not db.exists():
        raise RegistryError(
            f"registry URI {uri!r}: no registry database at {db} (nothing promoted there yet); "
            f"fix: run `g2l promote` first or point at the right registry. {_FIX}"
        )
    check_uri(uri)
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # quiet "creating tables" lines
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep CLI output to our lines
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_registered_models(max_results=1)
    except Exception as exc:  # mlflow raises many types here (sqlalchemy, requests, MlflowException)
        raise RegistryError(f"registry URI {uri!r} is not usable: {_short(exc)}; {_FIX}") from exc
    return client


def artifact_location(uri: str, config: RegistryConfig, cancer: str) -> str | None:
    """Where a new experiment keeps run artifacts: config, else beside the sqlite db, else server default."""
    if config.artifact_location:
        return f"{config.artifact_location.rstrip('/')}/{experiment_name(cancer)}"
    path = sqlite_path(uri)
    if path is not None:
        return str(path.parent / "artifacts" / experiment_name(cancer))
    return None


def ensure_experiment(client: MlflowClient, uri: str, config: RegistryConfig, cancer: str) -> str:
    """The id of the cancer's experiment, created on first use (safe when two promoters race)."""
    from mlflow.exceptions import MlflowException

    name = experiment_name(cancer)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location(uri, config, cancer)))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def ensure_model(client: MlflowClient, name: str, description: str) -> None:
    """Create the registered model unless it exists (safe when two promoters race)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def alias_version(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The model version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
