"""An unreachable bucket endpoint fails the run within seconds, and Ctrl-C stops it within a second with a
summary, through the CLI as a user runs it (issue 14, item 3).

The dead endpoint is a closed port on 127.0.0.1 (connection refused), given to google-cloud-storage the way
the emulator is (STORAGE_EMULATOR_HOST; google/cloud/storage/_helpers.py `_get_storage_emulator_override`,
3.x). Before: the library's DEFAULT_RETRY retried connection errors for 120 s per call
(google/api_core/retry/retry_base.py `_DEFAULT_DEADLINE`, 2.x), and Ctrl-C waited for the prepare thread.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from g2l.storage import GCSStorage, StorageUnreachableError
from tests.fixtures.tiling import assert_user_error, run_g2l, write_manifest


@pytest.fixture
def dead_endpoint() -> str:
    """http://127.0.0.1:<port> where nothing listens (the port was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def gs_manifest(tmp_path: Path) -> Path:
    """Three slides in a bucket behind the dead endpoint."""
    rows = [{"slide_id": f"s{i}", "uri": f"gs://slides/s{i}.svs"} for i in range(3)]
    return write_manifest(tmp_path / "m.csv", rows)


def _env(endpoint: str) -> dict[str, str]:
    return {**os.environ, "STORAGE_EMULATOR_HOST": endpoint}


def test_a_dead_endpoint_fails_the_run_within_30_s(tmp_path, dead_endpoint, gs_manifest) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    args = ("tile", "--manifest", str(gs_manifest), "--out", str(out), "--quiet")
    proc = run_g2l(*args, env=_env(dead_endpoint))
    elapsed = time.monotonic() - started
    said = assert_user_error(
        proc, 1, f"cannot reach the storage endpoint {dead_endpoint}", "for gs://slides/s0.svs",
        "Connection refused", "finished work is kept",
    )
    # The run's own clock, from the first request to giving up (start-up on a loaded box is not the
    # endpoint's doing); before, each of the 3 slides waited 120 s.
    waited = float(re.search(r"gave up after (\d+) s", said).group(1))  # type: ignore[union-attr]
    assert waited < 30 and elapsed < 90, (waited, elapsed)
    # The endpoint's fault, not the slides': none is failed, and the attempt is not counted against s0.
    meta = json.loads((out / "tiles/s0/meta.json").read_text())
    assert meta["status"] == "pending" and meta["attempts"] == 0
    assert not (out / "tiles/s1").exists() and not (out / "tiles/s2").exists()


def _interrupt_while_staging(tmp_path: Path, endpoint: str, gs_manifest: Path) -> tuple[float, int, str]:
    """Run `g2l tile`, press Ctrl-C once it reports the slow staging step: (seconds to exit, code, said)."""
    cmd = [sys.executable, "-m", "g2l", "tile", "--manifest", str(gs_manifest), "--out", str(tmp_path)]
    proc = subprocess.Popen(
        cmd, env=_env(endpoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    slow_step = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "slide s0: staging gs://slides/s0.svs for" in line:
                slow_step.set()  # progress names the slide and the step once it is slow

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert slow_step.wait(60), "".join(lines)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        stopped = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    return stopped, proc.returncode, " ".join("".join(lines).split())


def test_ctrl_c_stops_within_a_second_with_a_summary(tmp_path, dead_endpoint, gs_manifest) -> None:
    # Measured 0.03-0.25 s on an idle box; before the fix the run waited for the staging thread's retry
    # budget (>= 8 s; 120 s per call earlier). A loaded runner can hold any process off the CPU for a
    # second, so the claim is checked on the best of up to three presses, each of which must behave.
    times = []
    for attempt in range(3):
        stopped, code, said = _interrupt_while_staging(tmp_path / f"o{attempt}", dead_endpoint, gs_manifest)
        assert code == 130, said
        assert "Traceback" not in said
        assert "interrupted: 0 slide(s) done, 0 failed, 3 not finished; stopped in slide s0 (staging" in said
        assert "run the same command again to resume" in said
        assert stopped < 10.0, stopped  # never the old wait, even on the worst press
        times.append(stopped)
        if stopped < 1.0:
            break
    assert min(times) < 1.0, times


def test_storage_gives_up_on_a_dead_endpoint_and_then_fails_at_once(dead_endpoint, monkeypatch) -> None:
    """The client library's own call path, with a 1 s budget: one verdict, then no more waiting."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead_endpoint)
    gcs = GCSStorage(connect_budget_s=1.0)
    started = time.monotonic()
    with pytest.raises(StorageUnreachableError, match="cannot reach the storage endpoint"):
        gcs.stat("gs://slides/a.svs")
    assert 0.9 < time.monotonic() - started < 10
    started = time.monotonic()
    with pytest.raises(StorageUnreachableError):
        gcs.read_bytes("gs://slides/m.csv")
    assert time.monotonic() - started < 1.0  # the endpoint is known to be down: one try, no backoff
