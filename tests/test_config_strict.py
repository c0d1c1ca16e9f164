import dataclasses

import pytest

from g2l.config import ConfigError, RunConfig, config_hash, from_dict, load_section, require


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner:
    size_px: int = 256
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(self.size_px > 0, f"inner.size_px must be positive, got {self.size_px}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outer:
    name: str = "x"
    inner: Inner = dataclasses.field(default_factory=Inner)
    jitter: tuple[float, float, float, float] = (0.15, 0.15, 0.1, 0.05)
    ks: tuple[int, ...] = (3, 5)


def test_unknown_key_names_the_key_the_file_and_the_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage:\n  name: a\n  inner:\n    size_pxx: 3\n")
    with pytest.raises(ConfigError) as err:
        load_section(Outer, path, section="stage")
    message = str(err.value)
    assert "size_pxx" in message and str(path) in message and "size_px" in message and "scale" in message


def test_nested_values_are_coerced_and_validated():
    cfg = from_dict(Outer, {"inner": {"size_px": 128, "scale": 2}, "jitter": [0.1, 0.2, 0.3, 0.4], "ks": [1]})
    assert cfg.inner == Inner(size_px=128, scale=2.0)
    assert isinstance(cfg.inner.scale, float)
    assert cfg.jitter == (0.1, 0.2, 0.3, 0.4) and cfg.ks == (1,)
    with pytest.raises(ConfigError, match="size_px must be positive"):
        from_dict(Outer, {"inner": {"size_px": 0}})
    with pytest.raises(ConfigError, match="expected 4 values"):
        from_dict(Outer, {"jitter": [0.1]})
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(Outer, {"inner": {"size_px": "big"}})


def test_overrides_win_over_the_file_and_none_overrides_are_ignored(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage:\n  name: from-file\n")
    assert load_section(Outer, path, section="stage", name="cli").name == "cli"
    assert load_section(Outer, path, section="stage", name=None).name == "from-file"


def test_config_hash_changes_with_any_value():
    assert config_hash(Outer()) == config_hash(Outer())
    assert config_hash(Outer()) != config_hash(Outer(inner=Inner(size_px=255)))


def test_run_config_rejects_a_bad_cancer_name():
    with pytest.raises(ConfigError, match="run.cancer"):
        RunConfig(cancer="breast cancer!")


def test_a_key_given_twice_is_refused_naming_the_key_and_both_lines(tmp_path):
    # PyYAML's safe_load keeps the last of two equal keys, so the first setting would vanish silently
    # (yaml/constructor.py SafeConstructor.construct_mapping, PyYAML 6.0); YAML 1.2 says keys are unique.
    path = tmp_path / "c.yaml"
    path.write_text("stage:\n  name: a\n  inner:\n    size_px: 3\n  name: b\n")
    with pytest.raises(ConfigError) as err:
        load_section(Outer, path, section="stage")
    message = str(err.value)
    assert str(path) in message and "'name' is given twice" in message and "lines 2 and 5" in message
    # the same key in two different mappings is fine
    path.write_text("a:\n  name: x\nb:\n  name: y\n")
    assert load_section(Outer, path, section="b").name == "y"
