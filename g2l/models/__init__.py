"""Model zoo: build teachers/students by name or checkpoint, their preprocessing, weight digest, embedding."""

from g2l.distill.export import load_student  # re-export: the exported distilled student
from g2l.models.build import LoadedModel, build_model, embed, skeleton
from g2l.models.checkpoint import load_state_dict_file, read_header
from g2l.models.digest import state_dict_sha256, weights_sha256
from g2l.models.errors import ModelError, ModelUnavailableError, UnknownModelError
from g2l.models.layouts import LAYOUTS, detect_layout, to_timm
from g2l.models.preprocess import Preprocess
from g2l.models.zoo import REGISTRY, ModelSpec, get_spec, known_models

__all__ = [
    "LAYOUTS",
    "REGISTRY",
    "LoadedModel",
    "ModelError",
    "ModelSpec",
    "ModelUnavailableError",
    "Preprocess",
    "UnknownModelError",
    "build_model",
    "detect_layout",
    "embed",
    "get_spec",
    "known_models",
    "load_state_dict_file",
    "load_student",
    "read_header",
    "skeleton",
    "state_dict_sha256",
    "to_timm",
    "weights_sha256",
]
