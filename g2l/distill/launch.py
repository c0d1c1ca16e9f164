"""Entry points: `run_distill` (in-process for one process, torchrun for N) and the torchrun worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from g2l.config import config_hash, require, to_dict
from g2l.distill.config import DistillConfig

CONFIG_COPY = "distill_config.yaml"
STATUS_FILE = "status.json"


def distill_args(
    config_path: str,
    shards: str,
    cache: str | None,
    out: str,
    *,
    resume: str = "auto",
    max_steps: int | None = None,
    quiet: bool = False,
    section: str = "distill",
    run_id: str | None = None,
    cancer: str | None = None,
) -> list[str]:
    """Arguments of `python -m g2l.distill` (the same for torchrun here and in a TrainJob)."""
    args = [
        "--config",
        config_path,
        "--section",
        section,
        "--shards",
        shards,
        "--out",
        out,
        "--resume",
        resume,
    ]
    if cache:
        args += ["--cache", cache]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    if run_id:
        args += ["--run-id", run_id]
    if cancer:
        args += ["--cancer", cancer]
    if quiet:
        args.append("--quiet")
    return args


def require_local_out(out: str | os.PathLike[str]) -> None:
    """RUN_DIR must be a filesystem every rank shares: checkpoints are renamed into place there."""
    require(
        not str(out).startswith("gs://"),
        f"--out {out}: the run directory must be a local or mounted path shared by all ranks "
        "(checkpoints are written under a temporary name and renamed); on GKE mount the bucket with "
        "the GCS FUSE CSI driver (`g2l distill --emit ... --gcs-bucket BUCKET`) and pass /gcs/...",
    )


def is_finished(out: str | os.PathLike[str], config: DistillConfig) -> bool:
    """True when OUT already holds a student exported by this very config (rerun = no-op)."""
    cfg_file = Path(out) / "student" / "config.json"
    if not cfg_file.exists():
        return False
    return json.loads(cfg_file.read_text()).get("config_hash") == config_hash(config)


def run_distill(
    config: DistillConfig,
    shards: str,
    cache: str | None,
    out: str,
    nproc: int = 1,
    max_steps: int | None = None,
    resume: str = "auto",
    quiet: bool = False,
    *,
    run_id: str = "local",
    cancer: str = "none",
    step_callback: Callable[[int], None] | None = None,
) -> str:
    """Distil into OUT and return OUT/student; raises train.Preempted after a SIGTERM checkpoint."""
    config = config.with_max_steps(max_steps)
    require_local_out(out)
    out_path = Path(out)
    if resume == "auto" and is_finished(out_path, config):
        return str(out_path / "student")
    if nproc > 1:
        _launch_torchrun(config, shards, cache, out_path, nproc, resume, quiet, run_id, cancer)
    else:
        from g2l.distill.runtime import init_distributed

        train_and_export(
            config,
            shards,
            cache,
            out_path,
            init_distributed(),
            resume=resume,
            quiet=quiet,
            run_id=run_id,
            cancer=cancer,
            step_callback=step_callback,
        )
    return str(out_path / "student")


def train_and_export(
    config: DistillConfig,
    shards: str,
    cache: str | None,
    out: Path,
    env: Any,
    *,
    resume: str = "auto",
    quiet: bool = False,
    run_id: str = "local",
    cancer: str = "none",
    step_callback: Callable[[int], None] | None = None,
) -> Path:
    """Train on this rank, then export the student on rank 0; writes OUT/status.json."""
    from g2l.distill.checkpoint import save_atomic_json
    from g2l.distill.export import save_student, training_lineage
    from g2l.distill.runtime import Preempted
    from g2l.distill.sources import resolve_sources
    from g2l.distill.train import Trainer

    require_local_out(out)
    sources = resolve_sources(config, cache, env.device)
    trainer = Trainer(
        config,
        shards,
        out,
        sources,
        env,
        resume=resume,
        quiet=quiet,
        run_id=run_id,
        cancer=cancer,
        step_callback=step_callback,
    )
    try:
        result = trainer.run()
    except Preempted as stop:
        if env.rank == 0:
            save_atomic_json(
                out / STATUS_FILE,
                {"status": "preempted", "step": stop.step, "checkpoint": str(stop.checkpoint)},
            )
        raise
    state, exported_step = trainer.student_state(config.export)
    student_dir = out / "student"
    if env.rank == 0:
        card = {
            "teacher": {"name": sources.teacher_name, "weights_sha256": sources.teacher_sha256},
            "cache_key": sources.cache_key,
            "manifest_sha256": trainer.tiles.manifest_sha256,
            "shards_sha256": trainer.tiles.shards_sha256,
            "config_hash": trainer.config_hash,
            "distill_config": to_dict(config),
            "steps": result.step,
            "exported_step": exported_step,
            "export": config.export,
            "status": result.status,
            "val": result.val,
            "best_val_loss": trainer.early.best,
            "val_slides": list(trainer.split.val_slides),
            "world_size": env.world_size,
            "lineage": training_lineage(shards, cache, config.teacher_mode),
        }
        save_student(student_dir, state, sources.student, card)
        save_atomic_json(out / STATUS_FILE, {"status": result.status, "step": result.step, "val": result.val})
    env.barrier()
    return student_dir


def _launch_torchrun(
    config: DistillConfig,
    shards: str,
    cache: str | None,
    out: Path,
    nproc: int,
    resume: str,
    quiet: bool,
    run_id: str,
    cancer: str,
) -> None:
    """Run N local workers through torch.distributed.run; SIGTERM is passed on so they checkpoint."""
    from g2l.distill.runtime import Preempted

    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / CONFIG_COPY
    tmp = cfg_file.with_name(f".{cfg_file.name}.tmp")
    # YAML, not JSON: PyYAML reads JSON's 1e-12 as a string (YAML 1.1 floats need a dot)
    plain = json.loads(json.dumps({"distill": to_dict(config)}, default=str))
    tmp.write_text(yaml.safe_dump(plain, sort_keys=True))
    os.replace(tmp, cfg_file)
    (out / STATUS_FILE).unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "-m",
        "g2l.distill",
        *distill_args(
            str(cfg_file), shards, cache, str(out), resume=resume, quiet=quiet, run_id=run_id, cancer=cancer
        ),
    ]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    proc = subprocess.Popen(cmd, env=env)
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    try:
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    status_file = out / STATUS_FILE
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    if status.get("status") == "preempted":
        raise Preempted(int(status["step"]), Path(status["checkpoint"]))
    if rc != 0 or status.get("status") not in ("finished", "early_stopped"):
        raise RuntimeError(f"distill: torchrun with {nproc} processes failed (exit {rc}); see the log above")
