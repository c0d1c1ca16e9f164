"""Errors of the model zoo: each message names the model or file and the fix."""

from __future__ import annotations


class ModelError(ValueError):
    """A model cannot be built; the message names the model or file and the fix."""


class UnknownModelError(ModelError):
    """The name is neither registered, nor a timm model, nor a local checkpoint."""


class ModelUnavailableError(ModelError):
    """The model is known but its weights cannot be fetched (offline, gated, or not on any hub)."""
