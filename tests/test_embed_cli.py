import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from g2l.embed import open_cache


def _g2l(*args):
    argv = [sys.executable, "-m", "g2l", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=os.environ)


@pytest.mark.slow
def test_cli_prints_the_cache_directory_last_and_reads_the_config(shards_dir, tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    res = _g2l("embed", "--shards", str(shards_dir), "--out", str(tmp_path / "out"), "--config", str(config),
               "--views", "3", "--num-workers", "0", "--quiet")
    assert res.returncode == 0, res.stderr
    cache_dir = res.stdout.strip().splitlines()[-1]
    cache = open_cache(cache_dir)
    embed = yaml.safe_load(config.read_text())["embed"]
    assert embed["views"] != 3 and cache.views == 3  # --views overrides the YAML's
    assert cache.teacher == embed["teacher"]  # the rest comes from the YAML
    assert (tmp_path / "out" / "metrics" / "embed.prom").read_text().count("g2l_embeddings_total") >= 1


def test_cli_unknown_teacher_lists_known_models(shards_dir, tmp_path, capsys):
    from typer.testing import CliRunner

    from g2l.cli import app

    res = CliRunner().invoke(app, ["embed", "--shards", str(shards_dir), "--out", str(tmp_path / "out"),
                                   "--teacher", "nope", "--quiet"])
    assert res.exit_code == 1
    err = " ".join((res.output + capsys.readouterr().err).split())  # rich wraps long lines
    assert "unknown model 'nope'" in err and "tiny-vit-teacher" in err
