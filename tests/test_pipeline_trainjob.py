"""Multi-node distillation from the pipeline: the TrainJob is created through the Kubernetes API, watched
until it finishes, adopted when a retried pod finds it, and its failure fails the step.

The kubernetes client talks HTTP to a small local server that plays the API server's custom-objects
endpoints and moves the job through its conditions.
"""

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from g2l.pipeline.trainjobs import RUNTIME, TrainJobFailed, distill, run_job

PATH = re.compile(
    r"/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?"
)


class FakeCustomObjects:
    """Stored objects; each GET moves a job one step along `script` (its conditions over time)."""

    def __init__(self, script: list[list[dict]]):
        self.script = script
        self.objects: dict[str, dict] = {}
        self.gets: dict[str, int] = {}
        self.creates = 0


def _server(fake: FakeCustomObjects) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def _send(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            m = PATH.fullmatch(self.path.split("?")[0])
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = f"{m['ns']}/{m['plural']}/{body['metadata']['name']}"
            fake.creates += 1
            if key in fake.objects:
                return self._send(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
            fake.objects[key] = body
            return self._send(201, body)

        def do_GET(self):  # noqa: N802
            m = PATH.fullmatch(self.path.split("?")[0])
            key = f"{m['ns']}/{m['plural']}/{m['name']}"
            if key not in fake.objects:
                return self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})
            step = min(fake.gets.get(key, 0), len(fake.script) - 1)
            fake.gets[key] = fake.gets.get(key, 0) + 1
            return self._send(200, {**fake.objects[key], "status": {"conditions": fake.script[step]}})

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def _cond(kind: str, reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


@pytest.fixture
def k8s() -> Iterator[tuple[FakeCustomObjects, client.CustomObjectsApi]]:
    fake = FakeCustomObjects(
        [
            [],
            [_cond("Created", "JobSetCreated")],
            [_cond("Created", "JobSetCreated"), _cond("Complete", "JobSetCompleted")],
        ]
    )
    server = _server(fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake, client.CustomObjectsApi(client.ApiClient(cfg))
    finally:
        server.shutdown()
        server.server_close()


def _trainjob(name: str = "g2l-brca-abc") -> dict:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": "g2l"},
        "spec": {"runtimeRef": {"name": RUNTIME}},
    }


def test_job_is_created_and_awaited_with_its_status_streamed(k8s):
    fake, api = k8s
    lines: list[str] = []
    final = run_job(_trainjob(), api=api, poll_s=0, log=lines.append)
    assert fake.objects["g2l/trainjobs/g2l-brca-abc"]["spec"]["runtimeRef"]["name"] == RUNTIME
    assert final["status"]["conditions"][-1]["type"] == "Complete"
    assert lines[0] == "TrainJob g2l/g2l-brca-abc created"
    assert any("Created=True JobSetCreated" in line for line in lines)
    assert lines[-1].startswith("TrainJob g2l-brca-abc: Complete=True JobSetCompleted")
    assert sum("Created=True" in line for line in lines) == 1  # each transition once, not every poll


def test_a_retried_step_adopts_the_existing_job(k8s):
    fake, api = k8s
    run_job(_trainjob(), api=api, poll_s=0, log=lambda _: None)
    lines: list[str] = []
    run_job(_trainjob(), api=api, poll_s=0, log=lines.append)
    assert fake.creates == 2 and len(fake.objects) == 1
    assert "already exists" in lines[0]


def test_a_failed_job_fails_the_step_with_its_reason(k8s):
    fake, api = k8s
    fake.script = [[_cond("Failed", "BackoffLimitExceeded", "node-1 OOMKilled")]]
    with pytest.raises(TrainJobFailed, match="BackoffLimitExceeded node-1 OOMKilled"):
        run_job(_trainjob(), api=api, poll_s=0, log=lambda _: None)


def test_multi_node_distill_submits_a_trainjob_running_g2l_distill(k8s, tmp_path, monkeypatch):
    fake, api = k8s
    monkeypatch.setenv("G2L_NAMESPACE", "g2l")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"distill": {"student": "tiny-vit-student"}}))
    root = tmp_path / "artifacts"
    cache = str(root / "embeddings" / "key123")
    student = distill(
        shards=str(root / "shards"),
        cache=cache,
        config_uri=str(config),
        artifact_root=str(root),
        student="",
        gpus=4,
        nodes=2,
        max_steps=0,
        image="reg/g2l:1",
        cancer="brca",
        api=api,
        poll_s=0,
    )
    [(key, job)] = fake.objects.items()
    assert key.startswith("g2l/trainjobs/g2l-brca-")
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4 and trainer["image"] == "reg/g2l:1"
    assert job["spec"]["runtimeRef"]["name"] == RUNTIME
    command = trainer["command"]
    assert command[:3] == ["torchrun", "-m", "g2l.distill"]
    out = command[command.index("--out") + 1]
    assert command[command.index("--cache") + 1] == cache and command[command.index("--config") + 1] == str(
        config
    )
    assert student == f"{out}/student" and Path(out).parent == root / "distill"
