"""`g2l pipeline schedule` and `submit` against a local HTTP server speaking the KFP v2beta1 API: idempotent,
by name, preflight first, the namespace and the credentials on every call.

The cluster side of preflight is the fake Kubernetes API holding what infra/ creates (`ready_cluster`).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from g2l.config import ConfigError
from pipelines.compile import DEFAULT_OUT
from pipelines.kfp_api import Auth
from pipelines.preflight import PreflightFailed
from pipelines.schedules import apply_schedules
from pipelines.submit import submit

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def schedules_file(tmp_path) -> Path:
    for name in ("schedules.yaml", "brca.yaml", "prad.yaml"):
        shutil.copy(REPO / "configs" / name, tmp_path / name)
    return tmp_path / "schedules.yaml"


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_schedule_creates_one_recurring_run_per_cancer_and_is_idempotent(
    kfp_api_server, schedules_file, ready_cluster
):
    first = apply_schedules(
        schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, core=ready_cluster.core()
    )
    assert sorted(c.action for c in first) == ["create", "create"]
    runs = {r["display_name"]: r for r in kfp_api_server.state.recurring_runs.values()}
    assert set(runs) == {"g2l-brca-retrain", "g2l-prad-retrain"}
    brca = runs["g2l-brca-retrain"]
    assert brca["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * 1"
    assert brca["mode"] == "ENABLE" and str(brca["max_concurrency"]) == "1" and brca["no_catchup"] is True
    params = brca["runtime_config"]["parameters"]
    assert params["cancer"] == "brca" and params["manifest_uri"] == "manifests/brca.csv"
    assert params["manifest_rev"] == "main" and params["distill_gpus"] == "8"  # STRING resource counts
    assert "pipeline:" in params["config_yaml"]  # the whole config travels inline
    assert {e["display_name"] for e in kfp_api_server.state.experiments.values()} == {"g2l-brca", "g2l-prad"}
    writes_before = len(kfp_api_server.state.writes())

    second = apply_schedules(
        schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, core=ready_cluster.core()
    )
    assert [c.action for c in second] == ["unchanged", "unchanged"]
    assert len(kfp_api_server.state.writes()) == writes_before  # nothing uploaded, created or deleted
    assert len(kfp_api_server.state.recurring_runs) == 2
    assert len(kfp_api_server.state.versions) == 1


def test_changed_cron_replaces_only_that_schedule(kfp_api_server, schedules_file, ready_cluster):
    apply_schedules(schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, core=ready_cluster.core())
    old_ids = {r["display_name"]: rid for rid, r in kfp_api_server.state.recurring_runs.items()}
    _edit(schedules_file, lambda d: d["schedules"][0].update(cron="0 30 3 * * 2"))

    changes = apply_schedules(
        schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, core=ready_cluster.core()
    )
    by_cancer = {c.desired.cancer: c for c in changes}
    assert by_cancer["brca"].action == "update" and "cron" in by_cancer["brca"].differences[0]
    assert by_cancer["prad"].action == "unchanged"
    runs = {r["display_name"]: (rid, r) for rid, r in kfp_api_server.state.recurring_runs.items()}
    assert len(runs) == 2 == len(kfp_api_server.state.recurring_runs)  # replaced, not duplicated
    assert runs["g2l-brca-retrain"][1]["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * 2"
    assert runs["g2l-brca-retrain"][0] != old_ids["g2l-brca-retrain"]
    assert runs["g2l-prad-retrain"][0] == old_ids["g2l-prad-retrain"]


def test_new_pipeline_package_moves_schedules_to_a_new_version(
    kfp_api_server, schedules_file, tmp_path, ready_cluster
):
    apply_schedules(schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, core=ready_cluster.core())
    newer = tmp_path / "newer.yaml"
    newer.write_text(DEFAULT_OUT.read_text() + "\n# changed\n")
    changes = apply_schedules(
        schedules_file, host=kfp_api_server.url, package=newer, core=ready_cluster.core()
    )
    assert [c.action for c in changes] == ["update", "update"]
    assert len(kfp_api_server.state.pipelines) == 1 and len(kfp_api_server.state.versions) == 2
    new_version = [v for v in kfp_api_server.state.versions.values() if v["display_name"] != "g2l"][0]
    for rr in kfp_api_server.state.recurring_runs.values():
        assert rr["pipeline_version_reference"]["pipeline_version_id"] == new_version["pipeline_version_id"]
    assert [
        c.action
        for c in apply_schedules(
            schedules_file, host=kfp_api_server.url, package=newer, core=ready_cluster.core()
        )
    ] == [
        "unchanged",
        "unchanged",
    ]


def test_dry_run_prints_changes_and_writes_nothing(kfp_api_server, schedules_file, ready_cluster):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "g2l",
            "pipeline",
            "schedule",
            "--host",
            kfp_api_server.url,
            "--config",
            str(schedules_file),
            "--package",
            str(DEFAULT_OUT),
            "--dry-run",
        ],
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    out = proc.stdout
    assert (
        "[dry-run] would create g2l-brca-retrain" in out and "[dry-run] would create g2l-prad-retrain" in out
    )
    assert kfp_api_server.state.writes() == []
    assert kfp_api_server.state.recurring_runs == {}


def test_bad_cron_is_an_error_naming_the_schedule(schedules_file):
    _edit(schedules_file, lambda d: d["schedules"][1].update(cron="0 2 * * 4"))
    with pytest.raises(ConfigError, match=r"schedules\[prad\]\.cron .*6 fields"):
        apply_schedules(schedules_file, host="http://127.0.0.1:9", package=DEFAULT_OUT)


def test_submit_uploads_once_and_starts_runs_with_the_config_parameters(
    kfp_api_server, schedules_file, ready_cluster
):
    config = schedules_file.parent / "brca.yaml"
    first = submit(
        config, host=kfp_api_server.url, package=DEFAULT_OUT, experiment="nightly", core=ready_cluster.core()
    )
    second = submit(
        config,
        host=kfp_api_server.url,
        package=DEFAULT_OUT,
        experiment="nightly",
        overrides={"tile_groups": 3},
        core=ready_cluster.core(),
    )
    assert first["upload"] == "uploaded pipeline" and second["upload"] == "existing"
    assert first["image"] == "ghcr.io/g2l-project/g2l:0.1.0"  # the image the run executes, recorded
    version = kfp_api_server.state.versions[first["pipeline_version_id"]]
    assert "image: ghcr.io/g2l-project/g2l:0.1.0" in version["description"]
    assert first["pipeline_version_id"] == second["pipeline_version_id"]
    runs = kfp_api_server.state.runs
    assert set(runs) == {first["run_id"], second["run_id"]}
    assert runs[second["run_id"]]["runtime_config"]["parameters"]["tile_groups"] == 3
    assert runs[first["run_id"]]["service_account"] == "g2l-pipeline"
    assert [e["display_name"] for e in kfp_api_server.state.experiments.values()] == ["nightly"]


def test_schedule_refuses_before_any_write_when_preflight_fails(
    kfp_api_server, schedules_file, ready_cluster
):
    _edit(schedules_file.parent / "prad.yaml", lambda d: d["run"].update(artifact_root="/data/g2l/prad"))
    with pytest.raises(
        PreflightFailed, match=r"FAIL artifact-root: run\.artifact_root '/data/g2l/prad' is pod-local"
    ):
        apply_schedules(
            schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, core=ready_cluster.core()
        )
    assert kfp_api_server.state.writes() == []  # nothing uploaded, no schedule created
    changes = apply_schedules(
        schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, skip_preflight=True
    )
    assert [c.action for c in changes] == ["create", "create"]


def test_submit_refuses_an_old_backend_before_uploading(kfp_api_server, schedules_file, ready_cluster):
    """The backend's version comes from its healthz `tag_name` (kubeflow/pipelines main.go at 2.17.0)."""
    kfp_api_server.state.tag_name = "2.4.0"
    with pytest.raises(
        PreflightFailed, match=r"FAIL kfp-backend: KFP backend 2\.4\.0 is older than 2\.15\.0"
    ):
        submit(
            schedules_file.parent / "brca.yaml",
            host=kfp_api_server.url,
            package=DEFAULT_OUT,
            core=ready_cluster.core(),
        )
    assert kfp_api_server.state.writes() == []


def test_multi_user_calls_carry_the_namespace_and_the_token(kfp_api_server, schedules_file, ready_cluster):
    """Multi-user Kubeflow: every list names the profile namespace, experiments are created in it, and the
    bearer token reaches every request (kfp.Client `existing_token`)."""
    kfp_api_server.state.multi_user = True
    kfp_api_server.state.required_token = "t0k3n"
    for cancer in ("brca", "prad"):
        _edit(schedules_file.parent / f"{cancer}.yaml", lambda d: d["pipeline"].update(namespace="team-a"))
    with pytest.raises(Exception, match="401|Unauthorized"):
        apply_schedules(
            schedules_file, host=kfp_api_server.url, package=DEFAULT_OUT, core=ready_cluster.core()
        )
    apply_schedules(
        schedules_file,
        host=kfp_api_server.url,
        package=DEFAULT_OUT,
        core=ready_cluster.core(),
        auth=Auth(token="t0k3n"),
    )
    served = [
        (m, p, q)
        for (m, p, q), h in zip(kfp_api_server.state.queries, kfp_api_server.state.headers, strict=True)
        if h.get("authorization") == "Bearer t0k3n"
    ]
    lists = [
        (p, q)
        for m, p, q in served
        if m == "GET" and p.rsplit("/", 1)[-1] in ("pipelines", "experiments", "recurringruns")
    ]
    assert {p.rsplit("/", 1)[-1] for p, _ in lists} == {"pipelines", "experiments", "recurringruns"}
    assert all(q.get("namespace") == "team-a" for _, q in lists), lists
    assert {e["display_name"] for e in kfp_api_server.state.experiments.values()} == {"g2l-brca", "g2l-prad"}
