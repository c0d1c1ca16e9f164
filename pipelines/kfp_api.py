"""Small helpers over kfp.Client shared by submit and schedules: pipeline versions and experiments by name."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kfp

DESCRIPTION = "g2l: distil a pathology foundation model into a cancer-specific student (tiling -> promotion)"


def name_filter(name: str) -> str:
    """A KFP list filter selecting objects whose display name equals `name`."""
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def package_sha256(package: str | Path) -> str:
    """sha256 of a compiled pipeline file: the identity of a pipeline version."""
    return hashlib.sha256(Path(package).read_bytes()).hexdigest()


def package_images(package: str | Path) -> list[str]:
    """The container images a compiled pipeline runs (a digest after infra/build-image.sh)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = next(yaml.load_all(Path(package).read_text(), Loader=loader))
    return sorted({e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()})


def _description(package: str | Path, marker: str) -> str:
    """The version's description: what it is, its package hash and the image it runs (its lineage)."""
    return f"{DESCRIPTION} {marker} image: {', '.join(package_images(package))}"


@dataclass(frozen=True)
class PipelineVersion:
    """Where a compiled package lives on the server, and what it took to put it there."""

    pipeline_id: str
    version_id: str
    version_name: str
    action: str  # "existing", "uploaded pipeline", "uploaded version", or "would upload ..." in a dry run


@dataclass(frozen=True)
class Auth:
    """How to authenticate to the KFP API, as kfp.Client supports it (kfp/client/client.py, SDK 2.17):

    - `token`: a bearer token (`existing_token`), e.g. `kubectl create token` or an OIDC id token;
    - `iap_client_id`: the OAuth client id of an IAP-protected endpoint (`client_id`, GKE + IAP);
    - `cookie`: a session cookie of the cluster's auth proxy (`cookies`, e.g. `authservice_session=...`
      or `oauth2_proxy_kubeflow=...` for Kubeflow behind Dex/oauth2-proxy).
    """

    token: str = ""
    iap_client_id: str = ""
    cookie: str = ""


def client(host: str | None, namespace: str = "", auth: Auth | None = None) -> kfp.Client:
    """A kfp client for `host` (the API endpoint, e.g. http://localhost:8080 after a port-forward)."""
    auth = auth or Auth()
    with warnings.catch_warnings():  # the client warns on every construction that it needs KFP >= 2.0
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(
            host=host,
            namespace=namespace or "kubeflow",
            existing_token=auth.token or None,
            client_id=auth.iap_client_id or None,
            cookies=auth.cookie or None,
        )


def _versions(api: kfp.Client, pipeline_id: str) -> list[Any]:
    out: list[Any] = []
    token = ""
    while True:
        page = api.list_pipeline_versions(pipeline_id=pipeline_id, page_token=token, page_size=100)
        out.extend(page.pipeline_versions or [])
        token = page.next_page_token or ""
        if not token:
            return out


def _pipeline_id(api: kfp.Client, name: str, namespace: str) -> str | None:
    """The id of the pipeline called `name`, shared or in `namespace` (multi-user namespaced pipelines)."""
    page = api.list_pipelines(filter=name_filter(name), namespace=namespace or None, page_size=10)
    for pipe in page.pipelines or []:
        if pipe.display_name == name:
            return str(pipe.pipeline_id)
    return None


def ensure_pipeline_version(
    api: kfp.Client, package: str | Path, pipeline_name: str, *, dry_run: bool = False, namespace: str = ""
) -> PipelineVersion:
    """Find the version holding exactly this package (by content hash), or upload it; idempotent.

    With a namespace (multi-user Kubeflow) the pipeline is looked up and uploaded in that namespace.
    """
    digest = package_sha256(package)[:12]
    version_name = f"{pipeline_name}-{digest}"
    marker = f"[package sha256:{digest}]"
    pipeline_id = _pipeline_id(api, pipeline_name, namespace)
    if pipeline_id is None:
        if dry_run:
            return PipelineVersion(
                "", f"<new {version_name}>", version_name, f"would upload pipeline {pipeline_name}"
            )
        # The first upload creates the pipeline and its first version, which takes the pipeline's
        # description: the marker in it lets the next call recognise that version.
        created = api.upload_pipeline(
            str(package),
            pipeline_name=pipeline_name,
            description=_description(package, marker),
            namespace=namespace or None,
        )
        first = _versions(api, created.pipeline_id)
        return PipelineVersion(
            created.pipeline_id, first[0].pipeline_version_id, version_name, "uploaded pipeline"
        )
    for version in _versions(api, pipeline_id):
        if version.display_name == version_name or marker in (version.description or ""):
            return PipelineVersion(pipeline_id, version.pipeline_version_id, version_name, "existing")
    if dry_run:
        return PipelineVersion(
            pipeline_id, f"<new {version_name}>", version_name, f"would upload version {version_name}"
        )
    version = api.upload_pipeline_version(
        str(package),
        pipeline_version_name=version_name,
        pipeline_id=pipeline_id,
        description=_description(package, marker),
    )
    return PipelineVersion(pipeline_id, version.pipeline_version_id, version_name, "uploaded version")


def find_experiment(api: kfp.Client, name: str, namespace: str = "") -> str:
    """The id of the experiment called `name`, or '' when there is none."""
    page = api.list_experiments(filter=name_filter(name), namespace=namespace or None, page_size=10)
    for exp in page.experiments or []:
        if exp.display_name == name:
            return exp.experiment_id
    return ""


def ensure_experiment(api: kfp.Client, name: str, namespace: str = "") -> str:
    """The id of the experiment called `name`, created when missing."""
    found = find_experiment(api, name, namespace)
    if found:
        return found
    return api.create_experiment(name=name, namespace=namespace or None).experiment_id
