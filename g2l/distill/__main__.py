"""Worker entry point: `torchrun --nproc-per-node N -m g2l.distill --config YAML --shards ... --out ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Train on this torchrun rank; exit 0 after a SIGTERM checkpoint so a restarted pod resumes."""
    parser = argparse.ArgumentParser(prog="python -m g2l.distill", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML (or JSON) file with a distill: section")
    parser.add_argument("--section", default="distill")
    parser.add_argument("--shards", required=True)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--resume", choices=("auto", "never"), default="auto")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--cancer", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    import torch.distributed as dist

    from g2l import storage
    from g2l.config import RunConfig, load_section, load_yaml
    from g2l.distill.config import DistillConfig
    from g2l.distill.launch import train_and_export
    from g2l.distill.runtime import PREEMPTED_EXIT_CODE, Preempted, init_distributed
    from g2l.progress import console

    # A TrainJob passes the run's pinned gs:// config: every node reads the same file, staged locally.
    config_file = str(storage.stage(args.config))
    config = load_section(DistillConfig, config_file, section=args.section).with_max_steps(args.max_steps)
    run = (
        load_section(RunConfig, config_file, section="run")
        if "run" in load_yaml(config_file)
        else RunConfig()
    )
    env = init_distributed()
    try:
        train_and_export(
            config,
            args.shards,
            args.cache,
            Path(args.out),
            env,
            resume=args.resume,
            quiet=args.quiet,
            run_id=args.run_id or run.run_id,
            cancer=args.cancer or run.cancer,
        )
    except Preempted as stop:
        if env.rank == 0:
            console.print(f"[yellow]{stop}[/yellow]")
        return PREEMPTED_EXIT_CODE
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
