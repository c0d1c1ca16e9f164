"""Model specs: NAME=SPEC parsing, student directories, registry specs, digests that key the cache."""

import json

import numpy as np
import pytest
from safetensors.torch import save_file

from g2l.evaluate.models import (
    ModelSpecError,
    RegistryNotConfiguredError,
    load_model,
    parse_model_args,
    resolve_spec,
)


def test_model_args_parse_and_reject_bad_or_duplicate_names():
    assert parse_model_args(["teacher=tiny-vit-teacher", "s = runs/x/student"]) == {
        "teacher": "tiny-vit-teacher",
        "s": "runs/x/student",
    }
    with pytest.raises(ModelSpecError, match="NAME=SPEC"):
        parse_model_args(["tiny-vit-teacher"])
    with pytest.raises(ModelSpecError, match="twice"):
        parse_model_args(["a=x", "a=y"])


def test_registry_specs_need_a_resolver():
    with pytest.raises(RegistryNotConfiguredError, match="registry not configured"):
        resolve_spec("registry:brca@champion")
    assert resolve_spec("registry:brca@champion", lambda s: "/models/v3") == "/models/v3"
    assert resolve_spec("tiny-vit-student") == "tiny-vit-student"


def test_student_directory_spec_embeds_like_the_same_weights_by_name(tmp_path):
    zoo_model = load_model("s", "tiny-vit-student")
    export = tmp_path / "run" / "student"  # a distillation RUN_DIR holds its export in student/
    export.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in zoo_model.loaded.model.state_dict().items()},
        str(export / "model.safetensors"),
    )
    (export / "config.json").write_text(json.dumps(zoo_model.loaded.config()))
    from_dir = load_model("student", str(export))
    assert from_dir.digest == zoo_model.digest  # same weights + preprocessing: same cache key
    assert load_model("student", str(tmp_path / "run")).digest == zoo_model.digest
    tiles = [np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    np.testing.assert_allclose(
        from_dir.embed_tiles(tiles), zoo_model.embed_tiles(tiles), rtol=1e-5, atol=1e-6
    )
    assert load_model("t", "tiny-vit-teacher").digest != zoo_model.digest


def test_unknown_model_names_the_spec():
    with pytest.raises(ModelSpecError, match="bogus=no-such-model"):
        load_model("bogus", "no-such-model")


def test_tiles_of_mixed_sizes_embed_like_one_by_one():
    m = load_model("t", "tiny-vit-teacher")
    rng = np.random.default_rng(1)
    tiles = [rng.integers(0, 255, (s, s, 3), dtype=np.uint8) for s in (50, 64, 100)]
    batch = m.embed_tiles(tiles)
    single = np.concatenate([m.embed_tiles([t]) for t in tiles])
    assert batch.shape == (3, m.embed_dim)
    np.testing.assert_allclose(batch, single, rtol=1e-4, atol=1e-5)
