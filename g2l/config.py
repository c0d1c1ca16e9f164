"""Configuration plumbing: strict YAML loading into frozen, self-validating dataclasses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it and the fix."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type, recursing into nested dataclasses."""
    origin = typing.get_origin(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(value, args[0], where)
        return value
    if origin in (tuple,):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_types = typing.get_args(tp)
        items: list[Any] = list(value)
        if not item_types or (len(item_types) == 2 and item_types[1] is Ellipsis):
            inner = item_types[0] if item_types else Any
            return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(items))
        if len(item_types) != len(items):
            raise ConfigError(f"{where}: expected {len(item_types)} values, got {len(items)}")
        pairs = zip(items, item_types, strict=True)
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(pairs))
    if origin in (dict,):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from a mapping; unknown keys are an error naming the valid ones."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(sorted(names))}"
        )
    hints = _field_types(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a key given twice in one mapping (YAML 1.2 forbids it; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise ConfigError(
                    f"{self.name}: key {key!r} is given twice in one mapping (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); the first would be silently ignored: keep one"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str = "<config>") -> Any:
    """Parse YAML text safely, refusing duplicate keys (a silently ignored setting); names `where`."""
    loader = _UniqueKeyLoader(text)
    loader.name = where
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a file; an empty file is an empty mapping; a duplicate key is an error."""
    text = Path(path).read_text()
    data = parse_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_section(cls: type[T], path: str | Path | None, section: str | None = None, **overrides: Any) -> T:
    """Load one stage's config from a YAML file (optionally one top-level section), then apply overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        raw = load_yaml(path)
        where = str(path)
        if section is not None:
            raw = raw.get(section) or {}
            where = f"{path}:{section}"
        data = dict(raw)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data, where=where)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass, for saving beside outputs."""
    return dataclasses.asdict(config)


def config_hash(config: Any) -> str:
    """sha256 of a config's canonical JSON, recorded in lineage."""
    payload = json.dumps(to_dict(config) if dataclasses.is_dataclass(config) else config,
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def require(condition: bool, message: str) -> None:
    """Raise ConfigError with `message` unless `condition` holds (never `assert`: it vanishes under -O)."""
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What a run is: its cancer type, artifact root and id (the `run:` section)."""

    cancer: str = "demo"
    artifact_root: str = "demo-output/artifacts"
    run_id: str = "local"

    def __post_init__(self) -> None:
        require(bool(self.cancer) and self.cancer.replace("-", "").isalnum(),
                f"run.cancer must be a short alphanumeric name such as 'brca', got {self.cancer!r}")
        require(bool(self.artifact_root), "run.artifact_root must be a local directory or gs:// URI")


#: Every top-level section of a g2l config file and the dataclass that validates it (module:Class,
#: imported on demand so that loading one stage's config never imports another stage's libraries).
SECTIONS: dict[str, str] = {
    "run": "g2l.config:RunConfig",
    "manifest": "g2l.manifest.config:ManifestConfig",
    "tiling": "g2l.tiling.config:TilingConfig",
    "embed": "g2l.embed.config:EmbedConfig",
    "distill": "g2l.distill.config:DistillConfig",
    "evaluate": "g2l.evaluate.config:EvaluateConfig",
    "registry": "g2l.registry.config:RegistryConfig",
    "pipeline": "g2l.pipeline.config:PipelineConfig",
}


def section_class(section: str) -> type:
    """The dataclass that validates `section` of a config file."""
    import importlib

    if section not in SECTIONS:
        raise ConfigError(f"unknown section {section!r}; valid sections are: {', '.join(SECTIONS)}")
    module, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def validate_file(path: str | Path) -> dict[str, Any]:
    """Load and validate every section of a g2l config file; unknown sections are errors."""
    raw = load_yaml(path)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; valid sections are: "
                          f"{', '.join(SECTIONS)}")
    return {name: load_section(section_class(name), path, section=name) for name in raw}
