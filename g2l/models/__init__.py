"""Model zoo: build teachers/students by name or checkpoint, their preprocessing, weight digest, embedding."""

from g2l.distill.export import load_student  # re-export: the exported distilled student
from g2l.models.build import (
    LoadedModel,
    ModelError,
    ModelUnavailableError,
    UnknownModelError,
    build_model,
    embed,
    load_state_dict_file,
)
from g2l.models.digest import state_dict_sha256, weights_sha256
from g2l.models.preprocess import Preprocess
from g2l.models.zoo import REGISTRY, ModelSpec, get_spec, known_models

__all__ = [
    "REGISTRY",
    "LoadedModel",
    "ModelError",
    "ModelSpec",
    "ModelUnavailableError",
    "Preprocess",
    "UnknownModelError",
    "build_model",
    "embed",
    "get_spec",
    "known_models",
    "load_student",
    "load_state_dict_file",
    "state_dict_sha256",
    "weights_sha256",
]
