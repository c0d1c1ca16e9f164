"""No patient on both sides of any split of any shipped benchmark, on data laid out as each file documents.

The true patient of every tile comes from the layout generator (tests/fixtures/benchmark_layouts.py),
not from the definition's own grouping. Checked for every split, the official validation set, and the
validation split that chooses the probe's C. BACH's split is eva's (kaiko-ai/eva
src/eva/vision/data/datasets/classification/bach.py, `train_index_ranges` / `val_index_ranges`).
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from g2l.evaluate import design
from g2l.evaluate.benchmark import load_benchmark
from g2l.evaluate.linear_probe import validation_split
from tests.fixtures.benchmark_layouts import LAYOUTS

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs" / "benchmarks").glob("*.yaml"))


def _truth_of(bench, truth):
    key = "path" if "path" in bench.table.columns else "slide"
    return np.array([truth[str(v)] for v in bench.table[key]])


def test_every_shipped_benchmark_has_a_layout_and_documents_its_split_source():
    assert {p.stem for p in SHIPPED} == set(LAYOUTS)
    for path in SHIPPED:
        spec = yaml.safe_load(path.read_text())
        assert spec["split"].get("source"), f"{path.name}: split.source must say where the split comes from"
        assert "Split:" in path.read_text() or path.stem == "synthetic", path.name


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_no_patient_on_both_sides_of_any_split(path, tmp_path):
    rng = np.random.default_rng(0)
    truth = LAYOUTS[path.stem](tmp_path / "data", rng)
    bench = load_benchmark(path, root=str(tmp_path / "data"))
    patient = _truth_of(bench, truth)
    assert len(bench.split_list) >= 1
    tested = np.zeros(len(bench), dtype=int)
    for split in bench.split_list:
        train, test = split.train, split.test
        assert not set(patient[train]) & set(patient[test]), path.stem
        tested[test] += 1
        if split.val_mask is not None:  # the official validation set that chooses C
            assert not set(patient[train[split.val_mask]]) & set(patient[train[~split.val_mask]])
        else:  # the probe's own validation split, by patient
            units = bench.column(bench.unit_column())[train]
            for seed in range(3):
                fit, val = validation_split(bench.labels[train], seed, 0.2, units)
                assert not set(patient[train][fit]) & set(patient[train][val]), (path.stem, seed)
    assert tested.max() == 1  # no tile is scored twice
    if bench.definition.split.kind == "folds":
        assert (tested == 1).all()  # k folds: every tile scored once, out of fold


def test_split_specifics_of_the_shipped_benchmarks(tmp_path):
    def load(name):
        truth = LAYOUTS[name](tmp_path / name, np.random.default_rng(1))
        return load_benchmark(
            REPO / "configs" / "benchmarks" / f"{name}.yaml", root=str(tmp_path / name)
        ), truth

    bach, _ = load("bach")
    ((train, test),) = bach.splits
    assert (len(train), len(test)) == (268, 132)  # eva's train / val
    assert bach.resampling_units()[0] == "tile"  # no patient ids: images are the bootstrap's units

    bracs, _ = load("bracs")
    (split,) = bracs.split_list
    assert split.val_mask is not None and split.val_mask.any()  # official val kept apart, not merged
    assert set(bracs.column("split")[split.train[split.val_mask]]) == {"val"}

    tils, truth = load("tcga_tils")
    patient = _truth_of(tils, truth)
    (split,) = tils.split_list
    leaked = "TCGA-A1-T000"
    assert leaked in set(patient[split.test]) and leaked not in set(patient[split.train])
    assert (patient == leaked).sum() == len(split.test[patient[split.test] == leaked]) + 1  # one tile dropped

    tp53, truth = load("tp53")
    sites = tp53.column("site")
    for train, test in tp53.splits:  # site-preserved: a site's tiles are all on one side
        assert not set(sites[train]) & set(sites[test])
    scoring = design.scoring(tp53, np.zeros((len(tp53), 4)))
    slides, _ = tp53.slide_rows()
    assert len(scoring.y) == len(slides) and scoring.test_rows().size == len(slides)  # scored per slide
    assert design.units(tp53)[0] == "group" and len(design.units(tp53)[1]) == 30  # resampled by patient


def test_an_official_split_with_a_patient_on_both_sides_is_refused(tmp_path):
    root = tmp_path / "t"
    from tests.fixtures.benchmark_layouts import _image

    rows = ["path,label,site,group,split"]
    for i, (label, group, split) in enumerate(
        [
            ("a", "s1", "train"),
            ("b", "s1", "test"),
            ("a", "s2", "train"),
            ("b", "s3", "test"),
            ("b", "s4", "train"),
        ]
    ):
        _image(root / f"{i}.png", np.random.default_rng(i))
        rows.append(f"{i}.png,{label},x,{group},{split}")
    (root / "tiles.csv").write_text("\n".join(rows) + "\n")
    spec = {"name": "t", "root": str(root), "table": {"csv": "tiles.csv"}}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(
        ValueError, match=r"1 patient\(s\)/slide\(s\) have tiles in both test.*s1.*shared_groups"
    ):
        load_benchmark(tmp_path / "b.yaml")
    spec["split"] = {"kind": "column", "shared_groups": "exclude"}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(spec))
    ((train, test),) = load_benchmark(tmp_path / "b.yaml").splits
    assert train.tolist() == [2, 4] and test.tolist() == [1, 3]


ROBUSTNESS = {
    "synthetic": (True, "sites"),
    "camelyon16": (True, "sites"),
    "bach": (False, "single site"),
    "bracs": (False, "single site"),
    "idc": (False, "single site"),
    "panda_gleason": (False, "only at radboud"),  # Gleason patterns come from Radboud only
    "tcga_tils": (False, "declares"),  # tissue source site ~ cancer type
    "tp53": (False, "declares"),
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_which_shipped_benchmarks_can_carry_a_robustness_rule(path, tmp_path):
    LAYOUTS[path.stem](tmp_path / "data", np.random.default_rng(0))
    bench = load_benchmark(path, root=str(tmp_path / "data"))
    info = design.robustness_eligibility(bench, min_per_cell=2)
    eligible, why = ROBUSTNESS[path.stem]
    assert info["eligible"] is eligible and why in info["reason"], info
