"""The `evaluate:` section: shipped configs load; bad values are rejected with the key named."""

from pathlib import Path

import pytest

from g2l.config import ConfigError, load_section
from g2l.evaluate.config import EvaluateConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "brca", "prad"])
def test_shipped_configs_load(name):
    cfg = load_section(EvaluateConfig, REPO / "configs" / f"{name}.yaml", section="evaluate")
    assert len(cfg.seeds) >= 5 and cfg.knn_k == 20 and cfg.robustness_ks == (3, 5, 10, 20)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"seeds": (0, 1, 2)}, "seeds"),
        ({"probe_c_grid": (0.0,)}, "probe_c_grid"),
        ({"device": "tpu"}, "device"),
        ({"robustness_ks": ()}, "robustness_ks"),
        ({"extra_models": {"teacher": "tiny-vit-student"}}, "extra_models"),
    ],
)
def test_bad_values_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=f"evaluate.{key}"):
        EvaluateConfig(**kw)
