"""Pipeline input plumbing: pinned config and manifest, fan-out groups, and gs:// roots mirrored to disk."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from g2l import manifest, storage
from g2l.config import ConfigError
from g2l.pipeline.config import pipeline_arguments
from g2l.pipeline.io import pin_inputs, rank_items, slide_group_items, split_groups, yaml_sha256
from g2l.pipeline.staging import local_root

CONFIG = "# a comment\nrun:\n  cancer: demo\ntiling:\n  tile_px: 256\n"


@pytest.fixture
def manifest_csv(tmp_path):
    rows = [
        {
            "slide_id": f"s{i}",
            "uri": f"/slides/s{i}.svs",
            "cancer_type": "demo",
            "site": f"S{i % 2}",
            "split": "train",
        }
        for i in range(5)
    ]
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("root_kind", ["local", "gcs"])
def test_inputs_are_pinned_content_addressed_and_keep_their_hashes(
    tmp_path, manifest_csv, root_kind, request
):
    root = (
        str(tmp_path / "root")
        if root_kind == "local"
        else f"gs://{request.getfixturevalue('gcs_bucket')}/g2l"
    )
    pinned = pin_inputs(
        config_yaml=CONFIG,
        manifest_uri=str(manifest_csv),
        manifest_rev="",
        manifest_repo="",
        artifact_root=root,
    )
    assert pinned.config_uri == storage.join(root, "pipeline", f"config-{pinned.config_sha256[:16]}.yaml")
    assert storage.read_text(pinned.config_uri) == CONFIG
    original = manifest.load(str(manifest_csv))
    assert pinned.manifest_sha256 == original.content_hash
    assert manifest.load(pinned.manifest_uri).content_hash == original.content_hash  # the copy is faithful

    # Comments and layout do not change the config's identity; a value does.
    same = pin_inputs(
        config_yaml="run: {cancer: demo}\ntiling: {tile_px: 256}\n",
        manifest_uri=str(manifest_csv),
        manifest_rev="",
        manifest_repo="",
        artifact_root=root,
    )
    assert same.config_sha256 == pinned.config_sha256 == yaml_sha256(CONFIG)
    other = pin_inputs(
        config_yaml=CONFIG.replace("256", "224"),
        manifest_uri=str(manifest_csv),
        manifest_rev="",
        manifest_repo="",
        artifact_root=root,
    )
    assert other.config_sha256 != pinned.config_sha256 and other.config_uri != pinned.config_uri


def test_config_may_be_given_by_uri_and_must_be_a_mapping(tmp_path, manifest_csv):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    by_uri = pin_inputs(
        config_yaml=str(cfg),
        manifest_uri=str(manifest_csv),
        manifest_rev="",
        manifest_repo="",
        artifact_root=str(tmp_path / "r"),
    )
    assert by_uri.config_sha256 == yaml_sha256(CONFIG)
    with pytest.raises(ConfigError, match="config_yaml must be a YAML mapping"):
        pin_inputs(
            config_yaml="- a\n- b\n",
            manifest_uri=str(manifest_csv),
            manifest_rev="",
            manifest_repo="",
            artifact_root=str(tmp_path / "r"),
        )


@pytest.mark.parametrize(("n_items", "n_groups"), [(10, 3), (5, 5), (3, 8), (7, 1)])
def test_groups_are_contiguous_balanced_and_cover_every_item_once(n_items, n_groups):
    items = [f"s{i}" for i in range(n_items)]
    groups = split_groups(items, n_groups)
    assert [x for g in groups for x in g] == items
    assert len(groups) == min(n_items, n_groups) and all(groups)
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_work_items_carry_the_pinned_inputs_that_key_each_task(manifest_csv):
    items = slide_group_items(str(manifest_csv), "m" * 64, "gs://b/config-x.yaml", 2)
    assert [i["slide_ids"] for i in items] == ["s0,s1,s2", "s3,s4"]
    assert all(i["manifest_sha256"] == "m" * 64 and i["config_uri"] == "gs://b/config-x.yaml" for i in items)
    ranks = rank_items("gs://b/shards", "h" * 64, "gs://b/config-x.yaml", 3)
    assert [r["rank"] for r in ranks] == ["0", "1", "2"] and all(
        r["shards_sha256"] == "h" * 64 for r in ranks
    )
    with pytest.raises(ConfigError, match="embed_groups must be >= 1"):
        rank_items("s", "h", "c", 0)


def test_pipeline_arguments_come_from_the_config_sections():
    args = pipeline_arguments("configs/brca.yaml", tile_groups=3)
    assert args["cancer"] == "brca" and args["manifest_uri"] == "manifests/brca.csv"
    # GPU and CPU counts travel as strings: the KFP driver resolves resource placeholders with
    # GetStringValue() (kubeflow/pipelines backend/src/v2/driver/resolve.go at 2.17.0).
    assert args["tile_groups"] == 3 and args["distill_gpus"] == "8" and args["tile_gpus"] == "0"
    assert args["distill_cpu"] == str(8 * (8 + 1) + 1)  # 8 ranks x (8 DataLoader workers + 1) + 1
    assert pipeline_arguments("configs/brca.yaml", embed_gpus=2)["embed_gpus"] == "2"  # --set parses ints
    assert "rules:" in args["gate_policy"]  # the local policy file travels as its text
    with pytest.raises(ConfigError, match="unknown pipeline parameter"):
        pipeline_arguments("configs/brca.yaml", tile_gruops=3)


def test_gcs_root_is_mirrored_locally_and_pushed_back_even_after_a_failure(gcs_bucket, tmp_path, monkeypatch):
    root = f"gs://{gcs_bucket}/g2l"
    storage.put_text(f"{root}/shards/index.json", '{"shards": []}')
    storage.put_text(f"{root}/shards/shard-000000.tar", "tar bytes")
    monkeypatch.setenv("G2L_WORK_DIR", str(tmp_path / "work"))
    with local_root(root, pull=["shards", "distill/run"], push=["distill/run"]) as local:
        assert (tmp_path / "work" / "shards" / "shard-000000.tar").read_text() == "tar bytes"
        (tmp_path / "work" / "distill" / "run" / "checkpoints").mkdir(parents=True)
        (tmp_path / "work" / "distill" / "run" / "checkpoints" / "step-1.pt").write_text("ckpt 1")
    assert local == str(tmp_path / "work")
    assert storage.read_text(f"{root}/distill/run/checkpoints/step-1.pt") == "ckpt 1"

    # A preempted step: what it wrote before dying is uploaded, and the next attempt starts from it.
    with pytest.raises(RuntimeError), local_root(root, pull=["distill/run"], push=["distill/run"]):
        (tmp_path / "work" / "distill" / "run" / "checkpoints" / "step-2.pt").write_text("ckpt 2")
        raise RuntimeError("SIGTERM")
    assert storage.read_text(f"{root}/distill/run/checkpoints/step-2.pt") == "ckpt 2"
    monkeypatch.setenv("G2L_WORK_DIR", str(tmp_path / "fresh"))
    with local_root(root, pull=["distill/run"], push=[]):
        assert (tmp_path / "fresh" / "distill" / "run" / "checkpoints" / "step-2.pt").read_text() == "ckpt 2"


def test_local_root_is_used_in_place(tmp_path):
    with local_root(str(tmp_path), pull=["shards"], push=["x"]) as local:
        assert local == str(tmp_path)


def test_embedding_steps_on_a_gcs_root_fill_one_cache_equal_to_a_local_run(
    gcs_bucket, make_shards, tmp_path, monkeypatch
):
    from g2l.embed.cache import CacheError
    from g2l.pipeline.steps import embed_rank, seal_cache
    from tests.fixtures.shards import dir_bytes

    shards = make_shards("data")  # 10 tiles in three shards
    config = tmp_path / "config.yaml"
    config.write_text(
        "embed: {teacher: tiny-vit-teacher, views: 1, batch_size: 8, num_workers: 0, device: cpu}\n"
    )
    root = f"gs://{gcs_bucket}/g2l"
    storage.sync_dir(shards, f"{root}/shards")
    caches = []
    for rank in (0, 1):  # two pods, each with its own disk
        monkeypatch.setenv("G2L_CACHE_DIR", str(tmp_path / f"pod{rank}"))
        caches.append(
            embed_rank(
                config_uri=str(config), artifact_root=root, teacher="", rank=rank, world_size=2, cancer="t"
            )
        )
    # Each pod staged only its own shards, once: rank 1 owns part 1 of 3.
    assert sorted(p.name for p in (tmp_path / "pod1").rglob("*.tar")) == ["shard-000001.tar"]
    assert len(list((tmp_path / "pod0").rglob("*.tar"))) == 2
    # Sealing is a metadata step: it lists the parts and reads index.json, nothing else.
    monkeypatch.setenv("G2L_CACHE_DIR", str(tmp_path / "seal"))
    cache = seal_cache(rank_caches=caches)
    assert cache.startswith(f"{root}/embeddings/") and storage.exists(f"{cache}/_COMPLETE")
    assert not (tmp_path / "seal").exists()
    with pytest.raises(CacheError, match="2 different caches"):
        seal_cache(rank_caches=[caches[0], caches[0] + "-other"])
    # A rerun of rank 1 finds its part in the bucket: it stages no shard.
    monkeypatch.setenv("G2L_CACHE_DIR", str(tmp_path / "rerun1"))
    embed_rank(config_uri=str(config), artifact_root=root, teacher="", rank=1, world_size=2, cancer="t")
    assert not list((tmp_path / "rerun1").rglob("*.tar"))

    local_root_dir = tmp_path / "local"
    shutil.copytree(shards, local_root_dir / "shards")
    local = [
        embed_rank(
            config_uri=str(config),
            artifact_root=str(local_root_dir),
            teacher="",
            rank=0,
            world_size=1,
            cancer="t",
        )
    ]
    local_cache = seal_cache(rank_caches=local)
    assert local_cache.rsplit("/", 1)[-1] == cache.rsplit("/", 1)[-1]  # same key
    remote = {f.uri[len(cache) + 1 :]: storage.read_bytes(f.uri) for f in storage.list_files(cache)}
    assert remote == dir_bytes(Path(local_cache))


@pytest.mark.parametrize("cancer", ["demo", "brca", "prad"])
def test_shipped_configs_give_runnable_parameters(cancer, tmp_path):
    from g2l.gate import load_policy
    from g2l.registry.policy import load_primary_metric

    args = pipeline_arguments(f"configs/{cancer}.yaml")
    policy = tmp_path / "policy.yaml"
    policy.write_text(args["gate_policy"])
    # The gate and the registry both read the policy, and its primary benchmark is one the run evaluates.
    primary = load_primary_metric(policy)
    assert load_policy(policy).rules and primary.metric
    benchmarks = args["benchmarks"].split(",")
    assert all(Path(b).is_file() for b in benchmarks)
    assert primary.benchmark in {yaml.safe_load(Path(b).read_text())["name"] for b in benchmarks}
    assert args["cancer"] == cancer and args["manifest_uri"].endswith(f"{cancer}.csv")
