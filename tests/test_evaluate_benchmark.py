"""Benchmark definitions: shipped YAMLs parse, folder layouts and tables load, splits are by group."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from g2l.config import ConfigError
from g2l.evaluate.benchmark import load_benchmark, load_definition
from g2l.evaluate.linear_probe import linear_probe
from g2l.synth.benchmark import SyntheticBenchmarkSpec, write_synthetic_benchmark

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs" / "benchmarks").glob("*.yaml"))


def test_every_shipped_benchmark_definition_parses():
    names = {p.stem for p in SHIPPED}
    assert {"synthetic", "bracs", "bach", "tcga_tils", "panda_gleason", "camelyon16", "idc", "tp53"} <= names
    for path in SHIPPED:
        d = load_definition(path)
        assert d.name == path.stem
        text = path.read_text()
        assert text.startswith("#") and "root" in text  # each file documents where the data goes


def test_missing_data_names_the_root_and_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"bracs.*(not a directory|layout)"):
        load_benchmark(REPO / "configs" / "benchmarks" / "bracs.yaml", root=str(tmp_path / "nothing"))


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_folder_layout_with_derived_group_and_site(tmp_path):
    # TCGA-TILs-like layout: labels and split from folders, patient and centre from the barcode.
    root = tmp_path / "tils"
    files = {
        "images/train/til-positive/TCGA-A1-0001-x.png": 10,
        "images/train/til-negative/TCGA-A1-0002-x.png": 20,
        "images/train/1/TCGA-B2-0003-x.png": 30,
        "images/test/0/TCGA-B2-0004-y.png": 40,
        "images/test/til-positive/TCGA-C3-0005-z.png": 50,
    }
    for rel, v in files.items():
        _png(root / rel, v)
    b = load_benchmark(REPO / "configs" / "benchmarks" / "tcga_tils.yaml", root=str(root))
    t = b.table.set_index("path")
    assert b.classes == ["til-negative", "til-positive"]
    assert (
        t.loc["images/train/1/TCGA-B2-0003-x.png", "label"] == "til-positive"
    )  # label_map 1 -> til-positive
    assert t.loc["images/test/0/TCGA-B2-0004-y.png", "site"] == "B2"
    assert t.loc["images/test/0/TCGA-B2-0004-y.png", "group"] == "TCGA-B2-0004"
    ((train, test),) = b.splits
    assert sorted(b.table["path"][test]) == [
        "images/test/0/TCGA-B2-0004-y.png",
        "images/test/til-positive/TCGA-C3-0005-z.png",
    ]
    idx, tiles = next(b.iter_batches(batch_size=10, num_workers=2))
    # 8 px images at 0.5 um/px are enlarged to one 224 px tile (as eva's ResizeAndCrop does for TILs).
    assert idx.tolist() == list(range(5)) and tiles[0].shape == (1, 224, 224, 3)
    before = b.sha256
    _png(root / "images/train/1/TCGA-B2-0003-x.png", 31)  # one changed pixel value changes the hash
    assert load_benchmark(REPO / "configs" / "benchmarks" / "tcga_tils.yaml", root=str(root)).sha256 != before


def test_folds_and_holdout_never_share_a_group(tmp_path):
    root = tmp_path / "idc"
    for patient in range(7):
        for label in (0, 1):
            for i in range(3):
                _png(root / f"p{patient}/{label}/p{patient}_idx5_x{i}_y0_class{label}.png", patient * 10 + i)
    b = load_benchmark(REPO / "configs" / "benchmarks" / "idc.yaml", root=str(root))
    assert len(b.splits) == 5 and b.classes == ["idc", "non-idc"]
    groups = b.column("group")
    covered = np.zeros(len(b), int)
    for train, test in b.splits:
        assert not set(groups[train]) & set(groups[test])
        covered[test] += 1
    assert (covered == 1).all()  # every tile is tested exactly once over the folds
    assert b.groups_shared_across_split() == 0
    spec = yaml.safe_load((REPO / "configs" / "benchmarks" / "idc.yaml").read_text())
    spec["split"] = {"kind": "holdout", "test_fraction": 0.3, "seed": 1}
    (tmp_path / "h.yaml").write_text(yaml.safe_dump(spec))
    ((train, test),) = load_benchmark(tmp_path / "h.yaml", root=str(root)).splits
    assert not set(groups[train]) & set(groups[test]) and 2 <= len(set(groups[test])) <= 3  # ~30% of 7


class FakeSlide:
    """A slide reader with the g2l.slides interface: 2 levels, 0.25 um/px, pixel value = level-0 x // 100."""

    mpp = 0.25
    level_downsamples = (1.0, 4.0)

    def __init__(self, path):
        self.reads = []

    def read_region(self, location, level, size):
        self.reads.append((location, level, size))
        x0 = location[0]
        return np.full((size[1], size[0], 3), x0 // 100, np.uint8)

    def close(self):
        pass


def test_slide_and_coords_table_reads_tiles_at_the_benchmark_mpp(tmp_path):
    root = tmp_path / "cam"
    (root / "images").mkdir(parents=True)
    (root / "images/tumor_001.tif").write_bytes(b"slide")
    (root / "images/tumor_002.tif").write_bytes(b"slide2")
    (root / "patches.csv").write_text(
        "slide,x,y,label,site,group,split\n"
        "images/tumor_001.tif,1000,0,tumor,radboud,tumor_001,train\n"
        "images/tumor_001.tif,1500,0,normal,radboud,tumor_001,train\n"
        "images/tumor_002.tif,2000,0,normal,radboud,tumor_002,test\n"
    )
    opened = []

    def open_slide(path):
        opened.append(FakeSlide(path))
        return opened[-1]

    b = load_benchmark(REPO / "configs" / "benchmarks" / "camelyon16.yaml", root=str(root))
    _, tiles = next(b.iter_batches(4, num_workers=1, open_slide=open_slide))
    assert [t.shape for t in tiles] == [(1, 224, 224, 3)] * 3
    assert [t[0, 0, 0, 0] for t in tiles] == [10, 15, 20]
    # 224 px at 0.5 um/px = 448 level-0 px at 0.25 um/px: read from level 0 (the 4x level is too coarse).
    assert len(opened) == 2 and opened[0].reads[0] == ((1000, 0), 0, (448, 448))


def test_bad_definitions_are_named(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text(
        yaml.safe_dump({"name": "x", "root": str(tmp_path), "folders": {"pattern": "{split}/*.png"}})
    )
    with pytest.raises(ConfigError, match="label"):
        load_definition(p)
    p.write_text(
        yaml.safe_dump(
            {"name": "x", "root": str(tmp_path), "table": {"csv": "t.csv"}, "split": {"kind": "random"}}
        )
    )
    with pytest.raises(ConfigError, match="split.kind"):
        load_definition(p)


def _pixel_features(b):
    """Colour means/stds and a crude structure signature (gradient energy by orientation) per tile."""
    feats = []
    for _, tiles in b.iter_batches(64, num_workers=2):
        for crops in tiles:
            x = crops[0].astype(np.float32) / 255
            gy, gx = np.gradient(x.mean(axis=2))
            feats.append(
                np.concatenate(
                    [
                        x.mean((0, 1)),
                        x.std((0, 1)),
                        np.percentile(x, [5, 50, 95], (0, 1)).ravel(),
                        [np.abs(gx).mean(), np.abs(gy).mean(), (x.mean(2) > 0.85).mean()],
                    ]
                )
            )
    return np.array(feats)


def test_synthetic_benchmark_makes_label_and_site_both_learnable(tmp_path):
    csv = write_synthetic_benchmark(tmp_path / "syn", SyntheticBenchmarkSpec(tiles_per_group_class=4))
    assert csv.read_text().splitlines()[0] == "path,label,site,group,split"
    assert write_synthetic_benchmark(tmp_path / "syn", SyntheticBenchmarkSpec(tiles_per_group_class=4)) == csv
    spec = yaml.safe_load((REPO / "configs" / "benchmarks" / "synthetic.yaml").read_text())
    spec.update(root=str(tmp_path / "syn"), generate={"tiles_per_group_class": 4})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    b = load_benchmark(tmp_path / "s.yaml")
    assert len(b) == 3 * 4 * 4 * 4 and b.classes == ["gland", "nuclei", "stroma", "tumour"]
    x = _pixel_features(b)
    ((train, test),) = b.splits
    sites = np.searchsorted(sorted(set(b.column("site"))), b.column("site"))
    for target in (b.labels, sites):  # both factors are learnable from pixels, well above chance (1/3)
        res = linear_probe(x[train], target[train], x[test], target[test], seeds=range(5), c_grid=(1.0,))
        assert res.balanced_accuracy_mean > 0.8


def test_k_fold_metrics_pool_out_of_fold_predictions_and_keep_what_the_gate_resamples(tmp_path):
    from g2l.evaluate import design
    from g2l.evaluate.config import EvaluateConfig
    from g2l.evaluate.metrics import benchmark_metrics
    from g2l.evaluate.samples import benchmark_block, statistic

    root = tmp_path / "idc"
    for patient in range(6):
        for label in (0, 1):
            for i in range(4):
                _png(root / f"p{patient}/{label}/p{patient}_{i}_class{label}.png", patient * 10 + i)
    b = load_benchmark(REPO / "configs" / "benchmarks" / "idc.yaml", root=str(root))
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((len(b), 6)) + 2.0 * (2 * b.labels[:, None] - 1)
    cfg = EvaluateConfig(probe_c_grid=(1.0,), robustness_ks=(3, 5), knn_k=5)
    scoring = design.scoring(b, feats)
    kind, ids, _ = design.units(b)
    res = benchmark_metrics(feats, scoring, design.robustness_input(b, 10), cfg, feats, bench_name="idc",
                            n_units=len(ids))
    assert scoring.test_rows().tolist() == list(range(len(b)))  # every tile scored once, out of fold
    assert len(res.per_seed["lp_balanced_accuracy"]) == 5 and len(res.samples["knn_pred"]) == len(b)
    m = res.metrics
    assert m["lp_balanced_accuracy"] > 0.9 and m["knn_balanced_accuracy"] > 0.9
    assert m["cka_teacher"] == pytest.approx(1.0) and abs(m["cka_teacher_random_baseline"]) < 0.3
    # One site: the robustness index has nothing to measure and is undefined (null), not 0.
    assert m["pathorob_ri@k=3"] is None and m["de_jong_ri@k=5"] is None and "pathorob_ri@k=10" not in m
    # The gate rebuilds every resampled metric from the stored samples and gets the same value.
    rows = scoring.test_rows()
    report = {"benchmarks": {"idc": {"classes": b.classes, **benchmark_block(kind, ids, scoring.unit[rows],
                                                                             scoring.y[rows])}},
              "models": {"m": {"samples": {"idc": res.samples}}}}
    for metric in ("lp_balanced_accuracy", "lp_auc", "knn_balanced_accuracy"):
        assert statistic(report, "m", "idc", metric).point() == pytest.approx(m[metric], abs=1e-9)
        lo, hi = res.intervals[metric]
        assert lo <= m[metric] <= hi
