"""A pipeline's distillation on a gs:// artifact root records the bucket's locations in the student's
lineage, not the pod's scratch mirror that vanishes with it, so `g2l audit` can re-derive every hash.

GCS is the emulator (tests/fixtures/gcs.py; gcp-storage-emulator speaks the JSON API that
google-cloud-storage 3.x uses, which is the behaviour relied on here: object upload, list, download).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from g2l import storage
from g2l.config import to_dict
from g2l.pipeline.steps import distill_local
from tests.fixtures.distill import DistillData, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_distill_on_a_gcs_root_records_bucket_locations(distill_data: DistillData, gcs_bucket: str,
                                                        tmp_path: Path, monkeypatch) -> None:
    root = f"gs://{gcs_bucket}/g2l/brca"
    storage.sync_dir(distill_data.shards, f"{root}/shards")
    cache_rel = Path(distill_data.cache).relative_to(distill_data.root).as_posix()
    storage.sync_dir(distill_data.cache, f"{root}/{cache_rel}")
    config = tmp_path / "run.yaml"
    cfg = to_dict(tiny_config(schedule={"max_steps": 2}, validation={"every_steps": 2}))
    config.write_text(yaml.safe_dump({"distill": json.loads(json.dumps(cfg))}))
    scratch = tmp_path / "pod-scratch"
    monkeypatch.setenv("G2L_WORK_DIR", str(scratch))

    student = distill_local(cache=f"{root}/{cache_rel}", config_uri=str(config), artifact_root=root,
                            student="", gpus=0, max_steps=2, cancer="brca")

    assert student.startswith(f"{root}/distill/") and student.endswith("/student"), student
    lineage = json.loads(storage.read_text(f"{student}/config.json"))["lineage"]
    assert lineage["shards_index"] == f"{root}/shards/index.json"
    assert lineage["cache_dir"] == f"{root}/{cache_rel}"
    assert str(scratch) not in json.dumps(lineage)
    # the hashes are those of the bucket's bytes
    index_bytes = storage.read_bytes(f"{root}/shards/index.json")
    assert lineage["shards_index_sha256"] == hashlib.sha256(index_bytes).hexdigest()
