"""Sampling: stratified by site in proportion, patients kept together, deterministic per seed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from g2l import manifest as mf
from g2l.config import ConfigError


def _inventory(seed: int = 123) -> pd.DataFrame:
    """1000 slides at sites A1/E2/BH/OL in 50/30/15/5 %, patients with 1-3 slides (TCGA-like ids)."""
    rng = np.random.default_rng(seed)
    rows = []
    for site, n_slides in (("A1", 500), ("E2", 300), ("BH", 150), ("OL", 50)):
        made, p = 0, 0
        while made < n_slides:
            k = min(int(rng.choice([1, 1, 1, 2, 3])), n_slides - made)
            pid = f"TCGA-{site}-{p:04d}"
            for j in range(k):
                rows.append({"slide_id": f"{pid}-01Z-00-DX{j + 1}", "uri": f"gs://b/{pid}-DX{j + 1}.svs",
                             "cancer_type": "BRCA", "site": site, "patient_id": pid})
            made += k
            p += 1
    return pd.DataFrame(rows)


def test_largest_remainder():
    assert mf.largest_remainder({"A": 5, "B": 3, "C": 2}, 7) == {"A": 4, "B": 2, "C": 1}
    assert mf.largest_remainder({"A": 1, "B": 1, "C": 1}, 2) == {"A": 1, "B": 1, "C": 0}
    assert sum(mf.largest_remainder({"x": 7, "y": 13, "z": 1}, 10).values()) == 10


def test_sample_is_stratified_in_proportion_and_keeps_patients_together():
    inv = _inventory()
    result = mf.sample_manifest(inv, mf.SampleConfig(n=200, seed=0))
    df = result.df
    assert len(df) == 200 and df["slide_id"].is_unique
    assert result.quotas == {"A1": 100, "BH": 30, "E2": 60, "OL": 10}
    counts = Counter(df["site"])
    for site, quota in result.quotas.items():
        assert abs(counts[site] - quota) <= 2, (site, counts[site], quota)  # whole patients of <= 3 slides
    chosen = set(df["patient_id"])
    per_patient = Counter(inv["patient_id"])
    assert Counter(df["patient_id"]) == {p: per_patient[p] for p in chosen}  # all or none of each patient
    assert set(df["split"]) == {"train"}
    assert mf.validate(df) == []


def test_sample_is_deterministic_for_a_seed_and_independent_of_row_order():
    inv = _inventory()
    cfg = mf.SampleConfig(n=150, seed=7, val_fraction=0.2)
    a = mf.sample_manifest(inv, cfg).df
    b = mf.sample_manifest(inv.sample(frac=1.0, random_state=1), cfg).df
    assert mf.content_hash(a) == mf.content_hash(b)
    other = mf.sample_manifest(inv, mf.SampleConfig(n=150, seed=8, val_fraction=0.2)).df
    assert set(other["slide_id"]) != set(a["slide_id"])
    # the val fraction changes the split, never which slides are sampled
    no_val = mf.sample_manifest(inv, mf.SampleConfig(n=150, seed=7)).df
    assert list(no_val["slide_id"]) == list(a["slide_id"])


def test_splits_are_assigned_by_patient_and_stratified():
    inv = _inventory()
    df = mf.sample_manifest(inv, mf.SampleConfig(n=300, seed=0, val_fraction=0.2, test_fraction=0.1)).df
    counts = Counter(df["split"])
    assert abs(counts["val"] - 60) <= 3 and abs(counts["test"] - 30) <= 3
    assert df.groupby("patient_id")["split"].nunique().max() == 1
    val_sites = Counter(df[df["split"] == "val"]["site"])
    assert abs(val_sites["A1"] - 30) <= 3 and abs(val_sites["E2"] - 18) <= 3 and val_sites["OL"] >= 1
    assert mf.validate(df) == []


def test_asking_for_more_than_the_inventory_takes_all_and_says_so():
    inv = _inventory().head(40)
    result = mf.sample_manifest(inv, mf.SampleConfig(n=100, seed=0))
    assert len(result.df) == 40 and any("taking all" in p for p in result.problems)


def test_bad_sample_config_names_the_key():
    with pytest.raises(ConfigError, match="val_fraction"):
        mf.SampleConfig(n=10, val_fraction=1.5)
    with pytest.raises(ConfigError, match="sample.n"):
        mf.SampleConfig(n=0)
    with pytest.raises(ConfigError, match="no such column"):
        mf.sample_manifest(_inventory().head(5), mf.SampleConfig(n=2, stratify="scanner"))


def test_cli_sample_writes_the_same_bytes_for_the_same_seed(tmp_path):
    inv_path = tmp_path / "inventory.csv"
    _inventory().to_csv(inv_path, index=False)

    def run(out, seed):
        proc = subprocess.run(
            [sys.executable, "-m", "g2l", "manifest", "sample", "--inventory", str(inv_path), "--n", "100",
             "--stratify", "site", "--seed", str(seed), "--val-fraction", "0.1", "--out", str(out)],
            capture_output=True, text=True, env=os.environ, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    r1 = run(tmp_path / "m1.csv", 0)
    r2 = run(tmp_path / "m2.csv", 0)
    assert (tmp_path / "m1.csv").read_bytes() == (tmp_path / "m2.csv").read_bytes()
    file_hash = hashlib.sha256((tmp_path / "m1.csv").read_bytes()).hexdigest()
    assert r1["content_hash"] == r2["content_hash"] == file_hash
    assert r1["slides"] == 100 and r1["splits"]["val"] == 10
    assert mf.load(tmp_path / "m1.csv").content_hash == r1["content_hash"]


def test_an_empty_inventory_samples_an_empty_manifest_that_validation_rejects():
    inv = _inventory().head(0)
    result = mf.sample_manifest(inv, mf.SampleConfig(n=10))
    assert len(result.df) == 0 and {"slide_id", "uri", "site", "split"} <= set(result.df.columns)
    [error] = mf.validate(result.df)  # an empty manifest would train on nothing (issue 14)
    assert error.row is None and error.message == "the manifest has no rows" and error.fix
