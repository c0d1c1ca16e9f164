"""Bad manifest rows are all reported with row, column, value and fix; the CLI exits non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from g2l import manifest as mf
from g2l import storage as st

GOOD = """slide_id,uri,cancer_type,site,scanner,patient_id,mpp,checksum,split,label
TCGA-A1-A0SB-01Z-00-DX1,gs://b/a.svs,BRCA,A1,aperio,TCGA-A1-A0SB,0.25,crc32c:bIkWNQ==,train,1
TCGA-A2-A0CM-01Z-00-DX1,/data/b.svs,BRCA,A2,,TCGA-A2-A0CM,,,val,0
"""

BAD = """slide_id,uri,cancer_type,site,patient_id,mpp,checksum,split
s1,gs://b/1.svs,BRCA,A1,p1,0.25,,train
s1,gs://b/2.svs,BRCA,A1,p2,0.5,,train
s.3,,BRCA,A1,p3,0.5,,train
s4,gs://b/4.svs,BRCA,A1,p4,-0.5,,training
s5,gs://b/5.svs,BRCA,,p5,abc,md5:xyz,test
s6,gs://b/6.svs,BRCA,A2,p1,,,val
"""


def _write(tmp_path, text, name="m.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_manifest_has_no_errors_and_loads_typed(tmp_path):
    m = mf.load(_write(tmp_path, GOOD))
    assert mf.validate(m.df) == []
    assert m.df["mpp"].iloc[0] == 0.25 and pd.isna(m.df["mpp"].iloc[1])
    assert m.rev is None and m.source.endswith("m.csv")
    assert len(m.content_hash) == 64


def test_every_bad_row_is_reported_with_row_column_value_and_fix(tmp_path):
    df = mf.read_table(_write(tmp_path, BAD))
    errors = mf.validate(df)
    got = {(e.row, e.column) for e in errors}
    assert got == {
        (3, "slide_id"),   # duplicate of row 2
        (4, "slide_id"),   # a dot in the id
        (4, "uri"),        # missing
        (5, "mpp"),        # negative
        (5, "split"),      # unknown split
        (6, "site"),       # empty
        (6, "mpp"),        # not a number
        (6, "checksum"),   # malformed
        (7, "split"),      # patient p1 is in train on row 2
    }
    by = {(e.row, e.column): e for e in errors}
    assert "first seen on row 2" in by[3, "slide_id"].message
    assert by[5, "mpp"].value == "-0.5" and "positive" in by[5, "mpp"].message and by[5, "mpp"].fix
    assert by[5, "split"].value == "training" and "train, val or test" in by[5, "split"].fix
    assert "patient p1" in by[7, "split"].message
    assert all(e.fix for e in errors)
    assert str(by[4, "uri"]).startswith("row 4, column 'uri'")


def test_missing_required_columns_are_named():
    errors = mf.validate(pd.DataFrame({"slide_id": ["a"], "uri": ["gs://b/a.svs"]}))
    assert {(e.row, e.column) for e in errors} == {(None, "cancer_type"), (None, "site")}


def test_load_raises_with_all_errors(tmp_path):
    with pytest.raises(mf.ManifestError) as info:
        mf.load(_write(tmp_path, BAD))
    assert len(info.value.errors) == 9 and "row 7" in str(info.value)


def test_parquet_manifests_validate_with_parquet_row_numbers(tmp_path):
    df = mf.read_table(_write(tmp_path, BAD))
    df.to_parquet(tmp_path / "m.parquet", index=False)
    with pytest.raises(mf.ManifestError) as info:
        mf.load(tmp_path / "m.parquet")
    assert min(e.row for e in info.value.errors) == 2  # row 1 is the first data row, s1 duplicated on row 2
    good = mf.read_table(_write(tmp_path, GOOD))
    mf.write_table(good, tmp_path / "g.parquet")
    assert mf.load(tmp_path / "g.parquet").content_hash == mf.content_hash(good)


def test_content_hash_is_canonical(tmp_path):
    df = mf.read_table(_write(tmp_path, GOOD))
    h = mf.content_hash(df)
    shuffled_cols = df[list(reversed(df.columns))]
    assert mf.content_hash(shuffled_cols) == h
    assert mf.content_hash(mf.load(tmp_path / "m.csv").df) == h  # typed mpp hashes like the text
    changed = df.copy()
    changed.loc[1, "split"] = "test"
    assert mf.content_hash(changed) != h
    mf.write_table(df, tmp_path / "w.csv")
    import hashlib
    assert hashlib.sha256((tmp_path / "w.csv").read_bytes()).hexdigest() == h


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "g2l", "manifest", *args], capture_output=True, text=True,
                          env=os.environ, timeout=120)


def test_cli_validate_prints_every_error_and_exits_non_zero(tmp_path):
    proc = _cli("validate", str(_write(tmp_path, BAD)))
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("row ")]
    assert len(lines) == 9
    assert any("row 5, column 'mpp', value '-0.5'" in ln and "fix:" in ln for ln in lines)

    ok = _cli("validate", str(_write(tmp_path, GOOD, "good.csv")))
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout.strip().splitlines()[-1])
    assert result["rows"] == 2
    assert result["content_hash"] == mf.content_hash(mf.read_table(tmp_path / "good.csv"))

    missing = _cli("validate", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "nope.csv" in missing.stderr


def test_cli_validate_reads_a_gs_uri(gcs_bucket, tmp_path):
    st.put_text(f"gs://{gcs_bucket}/manifests/bad.csv", BAD)
    proc = _cli("validate", f"gs://{gcs_bucket}/manifests/bad.csv")
    assert proc.returncode == 1
    assert len([ln for ln in proc.stdout.splitlines() if ln.startswith("row ")]) == 9


@pytest.mark.parametrize("cancer", ["brca", "prad", "demo"])
def test_shipped_configs_have_a_valid_manifest_section(cancer):
    from g2l.config import load_section

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_section(mf.ManifestConfig, os.path.join(root, "configs", f"{cancer}.yaml"), section="manifest")
    assert cfg.path == f"manifests/{cancer}.csv"
    if cancer == "demo":  # the demo's manifest is this checkout's working copy
        assert cfg.rev is None
    else:  # cluster-ready (issue 11): read from its repository at a pinned rev
        assert cfg.rev and str(cfg.repo).startswith("https://")


def test_manifest_config_loads_and_checks(tmp_path):
    from g2l.config import ConfigError

    path = _write(tmp_path, GOOD)
    assert mf.ManifestConfig(path=str(path)).load().content_hash == mf.content_hash(mf.read_table(path))
    with pytest.raises(ConfigError, match="manifest.rev"):
        mf.ManifestConfig(path="gs://b/m.csv", rev="v1")


def test_check_files_finds_missing_and_changed_slides(gcs_bucket, tmp_path):
    ok, changed = f"gs://{gcs_bucket}/ok.svs", f"gs://{gcs_bucket}/changed.svs"
    st.put_bytes(ok, b"fine")
    st.put_bytes(changed, b"original")
    original = st.stat(changed).checksum
    st.put_bytes(changed, b"overwritten later")
    local = tmp_path / "local.svs"
    local.write_bytes(b"local slide")
    df = pd.DataFrame({
        "slide_id": ["a", "b", "c", "d", "e"],
        "uri": [ok, f"gs://{gcs_bucket}/missing.svs", changed, str(local), str(tmp_path / "gone.svs")],
        "cancer_type": "BRCA", "site": "A1",
        "checksum": [st.stat(ok).checksum, "", original, "md5:" + "0" * 32, ""],
    })
    errors = mf.check_files(df)
    assert [(e.row, e.column) for e in errors] == [(3, "uri"), (4, "checksum"), (6, "uri")]
    assert errors[0].value == f"gs://{gcs_bucket}/missing.svs" and errors[1].fix
    # local files are hashed only on request (it reads them)
    deep = mf.check_files(df, verify_local_checksums=True)
    assert [(e.row, e.column) for e in deep] == [(3, "uri"), (4, "checksum"), (5, "checksum"), (6, "uri")]

    path = tmp_path / "m.csv"
    mf.write_table(df, path)
    assert _cli("validate", str(path)).returncode == 0
    proc = _cli("validate", str(path), "--check-files")
    assert proc.returncode == 1
    assert [ln.split(",")[0] for ln in proc.stdout.splitlines() if ln.startswith("row ")] == [
        "row 3", "row 4", "row 6"]


def test_bytes_that_are_not_a_table_and_an_empty_manifest_are_manifest_errors(tmp_path):
    junk = tmp_path / "slide.csv"
    junk.write_bytes(b"II*\x00\xda\xff\x00" * 50)
    with pytest.raises(mf.ManifestError, match="not a readable CSV table") as info:
        mf.load(junk)
    assert str(info.value.errors[0]).startswith("file: not a readable CSV table")
    with pytest.raises(mf.ManifestError, match="not a readable Parquet table"):
        mf.load(_write(tmp_path, GOOD, name="m.parquet"))
    with pytest.raises(mf.ManifestError, match="the manifest has no rows"):
        mf.load(_write(tmp_path, "slide_id,uri,cancer_type,site\n", name="empty.csv"))


def test_mpp_source_must_name_a_source_and_manifest_needs_an_mpp(tmp_path):
    text = ("slide_id,uri,cancer_type,site,mpp,mpp_source\n"
            "a,/d/a.svs,BRCA,A1,0.25,manifest\nb,/d/b.svs,BRCA,A1,,metadata\n"
            "c,/d/c.svs,BRCA,A1,,manifest\nd,/d/d.svs,BRCA,A1,0.5,scanner\ne,/d/e.svs,BRCA,A1,0.5,\n")
    errors = mf.validate(mf.read_table(_write(tmp_path, text)))
    assert {(e.row, e.column) for e in errors} == {(4, "mpp_source"), (5, "mpp_source")}
    by = {e.row: e for e in errors}
    assert "has no mpp" in by[4].message and "unknown mpp_source" in by[5].message
