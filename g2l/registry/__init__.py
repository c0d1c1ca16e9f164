"""MLflow model registry: promotion with lineage, listing, and the pieces the audit re-derives."""

from g2l.registry.config import RegistryConfig
from g2l.registry.lineage import LineageOverrides
from g2l.registry.listing import VersionRow, list_versions
from g2l.registry.promote import EXIT_ERROR, EXIT_NOT_PROMOTED, EXIT_PROMOTED, PromotionResult, promote
from g2l.registry.resolve import resolve_spec
from g2l.registry.store import RegistryError, model_name, resolve_uri

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_PROMOTED",
    "EXIT_PROMOTED",
    "LineageOverrides",
    "PromotionResult",
    "RegistryConfig",
    "RegistryError",
    "VersionRow",
    "list_versions",
    "model_name",
    "promote",
    "resolve_spec",
    "resolve_uri",
]
