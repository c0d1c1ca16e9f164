"""The embedding store is shared across runs: a second run (other output dir) embeds nothing.

Forwards are counted by wrapping the real model loader (passed to run_evaluate, no monkeypatching).
"""

import copy
from pathlib import Path

import numpy as np
import yaml

from g2l.evaluate import EvaluateConfig, run_evaluate
from g2l.evaluate.models import load_model
from tests.test_evaluate_e2e import FAST, synthetic_yaml

MODELS = {"teacher": "tiny-vit-teacher", "student": "tiny-vit-student"}


_BUILT: dict = {}


class CountingLoader:
    """load_model (each model built once per session), with embed_tiles counting the tiles it is given."""

    def __init__(self):
        self.tiles = 0

    def __call__(self, name, spec, **kwargs):
        if (name, spec) not in _BUILT:
            _BUILT[(name, spec)] = load_model(name, spec, **kwargs)
        model = copy.copy(_BUILT[(name, spec)])
        real = _BUILT[(name, spec)].embed_tiles

        def counting(tiles):
            self.tiles += len(tiles)
            return real(tiles)

        model.embed_tiles = counting
        return model


def test_a_second_run_reuses_the_stored_embeddings(tmp_path):
    bench = synthetic_yaml(tmp_path, tiles=2)
    store = str(tmp_path / "artifacts" / "eval-store")
    config = EvaluateConfig(**FAST, num_workers=0)
    first_loader, second_loader = CountingLoader(), CountingLoader()
    first = run_evaluate(
        config, MODELS, [str(bench)], str(tmp_path / "run1"), quiet=True, store=store, loader=first_loader
    )
    n_tiles = first["benchmarks"]["synthetic"]["n_tiles"]
    assert first_loader.tiles == 2 * n_tiles
    second = run_evaluate(
        config, MODELS, [str(bench)], str(tmp_path / "run2"), quiet=True, store=store, loader=second_loader
    )
    assert second_loader.tiles == 0  # no forward: teacher and student came from the store
    for name in MODELS:
        assert second["models"][name]["benchmarks"] == first["models"][name]["benchmarks"]

    # Relabelling keeps the pixels, hence the stored embeddings; another input mpp does not.
    spec = yaml.safe_load(Path(bench).read_text())
    spec["label_map"] = {"gland": "glandular"}
    relabelled = tmp_path / "relabelled.yaml"
    relabelled.write_text(yaml.safe_dump(spec))
    third = CountingLoader()
    run_evaluate(
        config, MODELS, [str(relabelled)], str(tmp_path / "run3"), quiet=True, store=store, loader=third
    )
    assert third.tiles == 0
    fourth = CountingLoader()
    run_evaluate(
        EvaluateConfig(**FAST, num_workers=0, input_mpp=0.25),
        MODELS,
        [str(bench)],
        str(tmp_path / "run4"),
        quiet=True,
        store=store,
        loader=fourth,
    )
    assert fourth.tiles > 0
    assert (
        len(list(Path(store).glob("*.npy"))) == 4
        and np.isfinite(np.load(sorted(Path(store).glob("*.npy"))[0])).all()
    )
