"""Stages after tiling say what is wrong with the bucket and how to fix it, without a traceback.

The dead endpoint is a closed port on 127.0.0.1 handed to google-cloud-storage the way the emulator is
(STORAGE_EMULATOR_HOST; google/cloud/storage/_helpers.py `_get_storage_emulator_override`, 3.x): the
client then gets "connection refused" on every request, as a run does whose bucket host is unreachable.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.fixtures.tiling import assert_user_error, run_g2l

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dead_env() -> dict[str, str]:
    """The environment of a user whose storage endpoint does not answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}


def test_embed_on_an_unreachable_bucket_names_the_endpoint_and_exits_1(tmp_path, dead_env) -> None:
    proc = run_g2l("embed", "--shards", "gs://tiles/brca/shards", "--out", str(tmp_path / "out"),
                   "--teacher", "tiny-vit-teacher", "--quiet", env=dead_env)
    assert_user_error(proc, 1, "embed failed", "cannot reach the storage endpoint", "gs://tiles/brca/shards")


def test_evaluate_with_an_unreachable_store_exits_2_naming_the_object(tmp_path, dead_env) -> None:
    env = {**dead_env, "G2L_DATA": str(tmp_path / "data")}  # the synthetic benchmark is generated here
    benchmark = REPO / "configs" / "benchmarks" / "synthetic.yaml"
    proc = run_g2l("evaluate", "--model", "s=tiny-vit-student", "--benchmark", str(benchmark),
                   "--out", str(tmp_path / "eval"), "--store", "gs://store/eval", "--quiet", env=env)
    assert_user_error(proc, 2, "cannot reach the storage endpoint", "gs://store/eval/",
                      "finished work is kept")
