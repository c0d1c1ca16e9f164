"""Inventory from a gs:// prefix and from a directory: checksums, metadata join, TCGA site/patient."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import google_crc32c
import pandas as pd

from g2l import manifest as mf
from g2l import storage as st

UUID = "8A2E3094-5755-42BC-969D-7F0A2ECA0F39"
FILES = {
    f"brca/A1/TCGA-A1-A0SB-01Z-00-DX1.{UUID}.svs": b"slide one" * 50,
    "brca/A1/TCGA-A1-A0SB-01Z-00-DX2.svs": b"slide two, same patient" * 20,
    "brca/E2/TCGA-E2-A14N-01Z-00-DX1.tif": b"slide three" * 30,
    "brca/E2/TCGA-E2-A14N-01Z-00-DX1.txt": b"not a slide",
    "brca/other/case 7.ndpi": b"a non-TCGA slide" * 10,
}
META = """slide_id,site,label,cancer_type
TCGA-A1-A0SB-01Z-00-DX1.8A2E3094-5755-42BC-969D-7F0A2ECA0F39,,1,
TCGA-E2-A14N-01Z-00-DX1,,0,
case-7,HOSP-X,1,
TCGA-ZZ-9999-01Z-00-DX1,,0,
"""


def _crc(data: bytes) -> str:
    return "crc32c:" + base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_tcga_barcode_parsing():
    bc = mf.parse_tcga_barcode("TCGA-A1-A0SB-01Z-00-DX1")
    assert bc is not None
    assert (bc.site, bc.patient_id, bc.sample_type, bc.slide) == ("A1", "TCGA-A1-A0SB", "01", "DX1")
    named = mf.parse_tcga_barcode(f"tcga-e2-a14n-11a-01-ts1.{UUID}.svs")
    assert named is not None
    assert (named.site, named.patient_id, named.sample_type) == ("E2", "TCGA-E2-A14N", "11")
    assert mf.parse_tcga_barcode("TCGA-A1") is None and mf.parse_tcga_barcode("slide-001") is None
    assert mf.slide_id_from_name(f"TCGA-A1-A0SB-01Z-00-DX1.{UUID}.svs") == "TCGA-A1-A0SB-01Z-00-DX1"
    assert mf.slide_id_from_name("case 7.ndpi") == "case-7"


def _check(inv: pd.DataFrame, prefix: str) -> None:
    rows = {r["slide_id"]: r for r in inv.to_dict("records")}
    assert sorted(rows) == ["TCGA-A1-A0SB-01Z-00-DX1", "TCGA-A1-A0SB-01Z-00-DX2", "TCGA-E2-A14N-01Z-00-DX1",
                            "case-7"]
    one = rows["TCGA-A1-A0SB-01Z-00-DX1"]
    assert one["uri"] == st.join(prefix, "A1", f"TCGA-A1-A0SB-01Z-00-DX1.{UUID}.svs")
    assert one["checksum"] == _crc(FILES[f"brca/A1/TCGA-A1-A0SB-01Z-00-DX1.{UUID}.svs"])
    assert (one["site"], one["patient_id"], str(one["label"]), one["cancer_type"]) == (
        "A1", "TCGA-A1-A0SB", "1", "BRCA")
    two = rows["TCGA-A1-A0SB-01Z-00-DX2"]  # not in the metadata: barcode still gives site and patient
    assert (two["site"], two["patient_id"], two["label"]) == ("A1", "TCGA-A1-A0SB", "")
    assert rows["TCGA-E2-A14N-01Z-00-DX1"]["site"] == "E2"
    assert rows["case-7"]["site"] == "HOSP-X" and rows["case-7"]["patient_id"] == ""  # metadata site wins
    assert int(rows["case-7"]["size_bytes"]) == len(FILES["brca/other/case 7.ndpi"])
    assert mf.validate(inv) == []


def test_inventory_from_a_gs_prefix_via_the_cli(gcs_bucket, tmp_path):
    for name, data in FILES.items():
        st.put_bytes(f"gs://{gcs_bucket}/{name}", data)
    st.put_bytes(f"gs://{gcs_bucket}/elsewhere/TCGA-XX-0000-01Z-00-DX1.svs", b"outside the prefix")
    (tmp_path / "meta.csv").write_text(META)
    out = tmp_path / "inventory.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "g2l", "manifest", "inventory", "--source", f"gs://{gcs_bucket}/brca",
         "--metadata", str(tmp_path / "meta.csv"), "--out", str(out), "--cancer-type", "BRCA"],
        capture_output=True, text=True, env=os.environ, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "out": str(out), "slides": 4, "sites": 3, "warnings": 0}
    assert "TCGA-ZZ-9999-01Z-00-DX1" in proc.stderr  # metadata row with no slide is named
    inv = mf.read_table(out)
    _check(inv, f"gs://{gcs_bucket}/brca")
    # the checksums are the bucket's own
    for row in inv.to_dict("records"):
        assert row["checksum"] == st.stat(row["uri"]).checksum


def test_inventory_from_a_directory_computes_checksums(tmp_path):
    root = tmp_path / "slides"
    for name, data in FILES.items():
        path = root / name.removeprefix("brca/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    meta = pd.read_csv(pd.io.common.StringIO(META), dtype=str, keep_default_na=False)
    inv = mf.build_inventory(root, meta, cancer_type="BRCA")
    _check(inv.df, str(root))
    assert any("TCGA-ZZ-9999" in p for p in inv.problems)


def test_metadata_keyed_on_patient_and_duplicate_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "TCGA-A1-A0SB-01Z-00-DX1.svs").write_bytes(b"x")
    (tmp_path / "b" / "TCGA-A1-A0SB-01Z-00-DX1.svs").write_bytes(b"y")
    (tmp_path / "b" / "TCGA-BH-A0B3-01Z-00-DX1.svs").write_bytes(b"z")
    meta = pd.DataFrame({"patient_id": ["TCGA-A1-A0SB", "TCGA-BH-A0B3"], "er_status": ["pos", "neg"]})
    inv = mf.build_inventory(tmp_path, meta, cancer_type="BRCA")
    assert list(inv.df["er_status"]) == ["pos", "neg"]
    assert list(inv.df["site"]) == ["A1", "BH"]
    assert any("duplicates" in p and "a/TCGA-A1-A0SB" in p for p in inv.problems)
