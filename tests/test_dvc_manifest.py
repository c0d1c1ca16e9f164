"""The manifest DVC stage for real: repro, push/pull to a gs:// remote on the emulator, load at a git rev."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from g2l import manifest as mf
from g2l import storage as st

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the stage's `g2l` command and this checkout's code, whatever the caller's PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT)
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("GIT_AUTHOR_NAME", "g2l-test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@g2l.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "g2l-test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@g2l.invalid")
    return env


def _inventory(n: int = 60) -> pd.DataFrame:
    rows = []
    for i in range(n):
        site = ("A1", "E2", "BH")[i % 3]
        pid = f"TCGA-{site}-{i // 2:04d}"  # two slides per patient
        rows.append({"slide_id": f"{pid}-01Z-00-DX{i % 2 + 1}", "uri": f"gs://slides/{pid}-{i}.svs",
                     "cancer_type": "DEMO", "site": site, "patient_id": pid})
    return pd.DataFrame(rows)


def _git(repo: Path, env: dict[str, str], *args: str) -> str:
    return _run(["git", *args], repo, env).strip()


def _dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], repo, env)


@pytest.mark.slow
def test_dvc_repro_push_pull_to_the_emulator_and_load_at_a_git_rev(tmp_path, gcs_emulator, gcs_bucket):
    env = _env()
    # dvc must reach the emulator through the remote's own config (endpointurl), as it would a real bucket
    env.pop("STORAGE_EMULATOR_HOST", None)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, env, "init", "-q")
    _dvc(repo, env, "init", "-q")
    # the project's own stage file and parameters, and the code the stage depends on
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    (repo / "g2l" / "manifest").mkdir(parents=True)
    for src in (ROOT / "g2l" / "manifest").glob("*.py"):
        shutil.copy(src, repo / "g2l" / "manifest" / src.name)
    (repo / "manifests" / "inventory").mkdir(parents=True)
    _inventory().to_csv(repo / "manifests" / "inventory" / "demo.csv", index=False)
    out = repo / "manifests" / "demo.csv"

    _dvc(repo, env, "repro", "sample@demo")
    n_demo = yaml.safe_load((repo / "params.yaml").read_text())["sample"]["demo"]["n"]
    v1_bytes = out.read_bytes()
    v1 = mf.read_table(out)
    assert len(v1) == n_demo and mf.validate(v1) == []
    assert v1.groupby("patient_id")["split"].nunique().max() == 1

    remote = f"gs://{gcs_bucket}/dvcstore"
    _dvc(repo, env, "remote", "add", "-d", "emulator", remote)
    _dvc(repo, env, "remote", "modify", "emulator", "endpointurl", gcs_emulator.host)
    _dvc(repo, env, "remote", "modify", "emulator", "allow_anonymous_login", "true")
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-qm", "manifest v1")
    rev1 = _git(repo, env, "rev-parse", "HEAD")
    _dvc(repo, env, "push", "sample@demo")
    pushed = st.list_files(remote)
    assert len(pushed) == 1 and pushed[0].md5 == hashlib.md5(v1_bytes).hexdigest()  # content-addressed

    # a new seed is a new manifest version
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sample"]["demo"]["seed"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "sample@demo" in _dvc(repo, env, "status", "sample@demo")
    _dvc(repo, env, "repro", "sample@demo")
    v2_bytes = out.read_bytes()
    assert v2_bytes != v1_bytes
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-qm", "manifest v2")
    _dvc(repo, env, "push", "sample@demo")
    assert len(st.list_files(remote)) == 2

    # a fresh checkout: no cache, no output; pull brings the current version back from the bucket
    shutil.rmtree(repo / ".dvc" / "cache")
    out.unlink()
    _dvc(repo, env, "pull", "sample@demo")
    assert out.read_bytes() == v2_bytes
    shutil.rmtree(repo / ".dvc" / "cache")  # so the old revision must come from the remote

    old = mf.load("manifests/demo.csv", rev=rev1, repo=str(repo))
    assert old.rev == rev1
    assert old.content_hash == hashlib.sha256(v1_bytes).hexdigest() == mf.content_hash(v1)
    assert list(old.df["slide_id"]) == list(v1["slide_id"])
    new = mf.load("manifests/demo.csv", rev="HEAD", repo=str(repo))
    assert new.content_hash == hashlib.sha256(v2_bytes).hexdigest() != old.content_hash
    assert new.rev == _git(repo, env, "rev-parse", "HEAD")
    # the working copy and the revision agree
    assert mf.load(out).content_hash == new.content_hash


def test_load_at_a_rev_of_a_plain_git_repo(tmp_path):
    env = _env()
    repo = tmp_path / "plain"
    repo.mkdir()
    _git(repo, env, "init", "-q")
    df = _inventory(6)
    df["split"] = "train"
    path = repo / "m.csv"
    mf.write_table(df, path)
    _git(repo, env, "add", "m.csv")
    _git(repo, env, "commit", "-qm", "one")
    first = _git(repo, env, "rev-parse", "HEAD")
    mf.write_table(df.head(4), path)
    _git(repo, env, "commit", "-qam", "two")

    m = mf.load("m.csv", rev=first, repo=str(repo))
    assert m.rev == first and len(m.df) == 6 and m.content_hash == mf.content_hash(df)
    assert mf.load("m.csv", rev="HEAD", repo=str(repo)).content_hash == mf.content_hash(df.head(4))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        mf.load("nope.csv", rev=first, repo=str(repo))
