"""What the run checks when it starts, before any GPU step: resource counts, benchmarks, credentials."""

import os
import subprocess
from pathlib import Path

import pytest

from g2l import storage
from g2l.config import ConfigError
from g2l.pipeline.io import check_benchmarks, check_run_resources, configure_git_credentials

GOOD = dict(
    tile_gpus="0", embed_gpus="1", distill_gpus="8", distill_nodes=1, embed_cpu="10", distill_cpu="73"
)


def test_resource_parameters_pass_when_whole_numbers():
    check_run_resources(**GOOD)
    check_run_resources(**{**GOOD, "embed_gpus": "0", "distill_cpu": "7500m"})  # CPU embedding, millicores


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("distill_gpus", "0", "distill_gpus='0' must be a whole number >= 1"),
        ("embed_gpus", "1.5", "embed_gpus='1.5' must be a whole number >= 0"),
        ("tile_gpus", "two", "tile_gpus='two'"),
        ("distill_cpu", "lots", "distill_cpu='lots' must be a CPU quantity"),
        ("distill_nodes", 0, "distill_nodes must be >= 1"),
    ],
)
def test_bad_resource_parameters_stop_the_run_naming_the_parameter(name, value, why):
    with pytest.raises(ConfigError, match=why.replace("(", r"\(").replace(".", r"\.")):
        check_run_resources(**{**GOOD, name: value})


def _definition(tmp_path, name: str, root: str, generate: bool = False) -> str:
    path = tmp_path / f"{name}.yaml"
    extra = "generate: {n_sites: 2}\n" if generate else ""
    path.write_text(f"name: {name}\nroot: {root}\ntable: {{csv: tiles.csv}}\n{extra}")
    return str(path)


def test_benchmarks_are_required_and_their_data_must_be_reachable(tmp_path, gcs_bucket, monkeypatch):
    with pytest.raises(ConfigError, match="no benchmarks"):
        check_benchmarks("")
    storage.put_text(f"gs://{gcs_bucket}/benchmarks/bracs/tiles.csv", "path,label\n")
    monkeypatch.setenv("G2L_DATA", f"gs://{gcs_bucket}/benchmarks")
    on_gcs = _definition(tmp_path, "bracs", "${G2L_DATA:-data}/bracs")
    generated = _definition(tmp_path, "synthetic", str(tmp_path / "not-yet"), generate=True)
    assert check_benchmarks(f"{on_gcs},{generated}")[0] == f"gs://{gcs_bucket}/benchmarks/bracs"
    missing = _definition(tmp_path, "tils", "${G2L_DATA}/tils")
    with pytest.raises(
        ConfigError, match=rf"tils\.yaml: data root gs://{gcs_bucket}/benchmarks/tils not found"
    ):
        check_benchmarks(f"{on_gcs},{missing}")
    with pytest.raises(ConfigError, match="definition not readable"):
        check_benchmarks(str(tmp_path / "nope.yaml"))


def test_a_gcs_benchmark_is_staged_for_evaluation(tmp_path, gcs_bucket, monkeypatch):
    from g2l.pipeline.staging import stage_benchmark

    storage.put_text(f"gs://{gcs_bucket}/benchmarks/bracs/tiles.csv", "path,label\na.png,N\n")
    monkeypatch.setenv("G2L_DATA", f"gs://{gcs_bucket}/benchmarks")
    monkeypatch.setenv("G2L_WORK_DIR", str(tmp_path / "work"))
    local = stage_benchmark(_definition(tmp_path, "bracs", "${G2L_DATA}/bracs"))
    staged = (tmp_path / "work" / "benchmarks" / "bracs" / "tiles.csv").read_text()
    assert (
        staged == "path,label\na.png,N\n"
        and f"root: {tmp_path / 'work' / 'benchmarks' / 'bracs'}" in local.read_text()
    )


def test_git_credentials_from_the_secret_reach_git_without_touching_disk(tmp_path):
    env = {"GIT_USERNAME": "x-access-token", "GIT_PASSWORD": "s3cret", "HOME": str(tmp_path)}
    assert configure_git_credentials(env) is True
    # git itself answers the credential request from the helper the variables configure.
    proc = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=github.com\n\n",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "username=x-access-token" in proc.stdout and "password=s3cret" in proc.stdout
    assert not list(tmp_path.iterdir())  # nothing written under HOME
    assert configure_git_credentials({}) is False


def test_weights_mirrored_on_gcs_are_staged_once_per_pod(tmp_path, gcs_bucket, monkeypatch):
    """A gs:// mirror of gated weights: every pod reads the bucket, none goes to the hub."""
    from g2l.pipeline.steps import _embed_config

    storage.put_bytes(f"gs://{gcs_bucket}/weights/h-optimus-0/model.safetensors", b"weights")
    monkeypatch.setenv("G2L_CACHE_DIR", str(tmp_path / "cache" / "staging"))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"embed: {{teacher: tiny-vit-teacher, weights: gs://{gcs_bucket}/weights/h-optimus-0}}\n"
    )
    local = Path(_embed_config(str(config), "").weights)
    assert (
        local.is_relative_to(tmp_path / "cache") and (local / "model.safetensors").read_bytes() == b"weights"
    )
    assert _embed_config(str(config), "").weights == str(local)  # the same place on a second call


def test_a_retry_after_bad_input_fails_at_once_and_a_preemption_is_retried(tmp_path, monkeypatch):
    """KFP retries every failed attempt; a step whose input was rejected must not redo its work."""
    from g2l.pipeline.retry import RETRY_ENV, BadInputOnRetry
    from g2l.pipeline.steps import embed_rank

    monkeypatch.setenv("G2L_RUN_ID", "run-7")
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed: {teacher: tiny-vit-teacher, views: 0}\n")  # rejected by EmbedConfig
    root = str(tmp_path / "root")
    monkeypatch.setenv(RETRY_ENV, "0")
    with pytest.raises(ConfigError, match="views"):
        embed_rank(config_uri=str(bad), artifact_root=root, teacher="", rank=1, world_size=2, cancer="t")
    monkeypatch.setenv(RETRY_ENV, "1")
    with pytest.raises(BadInputOnRetry, match=r"not retrying embed-1: an earlier attempt rejected .*views"):
        embed_rank(
            config_uri=str(tmp_path / "no-such-file.yaml"),
            artifact_root=root,
            teacher="",
            rank=1,
            world_size=2,
            cancer="t",
        )
    # Another rank, or a step that was preempted (no record), runs again on its retry.
    with pytest.raises(ConfigError, match="views"):
        embed_rank(config_uri=str(bad), artifact_root=root, teacher="", rank=0, world_size=2, cancer="t")
