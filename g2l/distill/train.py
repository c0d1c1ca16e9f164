"""The distillation training loop: one process per device, DDP/FSDP, accumulation, checkpoints, SIGTERM.

Run by `run_distill` (one process) or under torchrun (`python -m g2l.distill`, one per device). Every
rank builds the same data plan and reads its own share of each global batch; the loop is a pure
function of (config, data, checkpoint), so a run resumed after SIGTERM ends with the weights of an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from g2l.config import ConfigError, config_hash, require, to_dict
from g2l.distill.checkpoint import (
    CheckpointWriter,
    latest_checkpoint,
    load_best,
    load_checkpoint,
    save_best,
    set_rng_state,
    student_weights,
)
from g2l.distill.config import DistillConfig
from g2l.distill.data import (
    CachedTargets,
    DataPlan,
    DistillDataset,
    StepSampler,
    TileIndex,
    TileReader,
    scan_shards,
    split_by_slide,
)
from g2l.distill.losses import build_loss, mean_cosine, patch_loss
from g2l.distill.model import (
    Distiller,
    autocast,
    clip_gradients,
    grad_sync,
    param_groups,
    teacher_forward,
    trainable,
    wrap,
)
from g2l.distill.runtime import DistEnv, Preempted, StopFlag, all_reduce, on_main_thread
from g2l.distill.schedule import build_scheduler, set_weight_decay
from g2l.distill.sources import Sources
from g2l.distill.stopping import EarlyStopping, train_stop


@dataclasses.dataclass
class TrainResult:
    """How a training run ended."""

    status: str  # finished | early_stopped | preempted
    step: int
    val: dict[str, float]
    best_step: int | None


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack a list of samples into one batch of tensors."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class Trainer:
    """One rank's training run; `run()` trains to the end, early stop, or SIGTERM."""

    def __init__(
        self,
        config: DistillConfig,
        shards: str,
        out: str | os.PathLike[str],
        sources: Sources,
        env: DistEnv,
        *,
        resume: str = "auto",
        quiet: bool = False,
        run_id: str = "local",
        cancer: str = "none",
        step_callback: Callable[[int], None] | None = None,
        tiles: TileIndex | None = None,
    ) -> None:
        require(resume in ("auto", "never"), f"--resume must be 'auto' or 'never', got {resume!r}")
        self.config, self.env, self.sources = config, env, sources
        self.out = Path(out)
        self.resume, self.quiet = resume, quiet
        self.run_id, self.cancer = run_id, cancer
        self.step_callback = step_callback
        self.config_hash = config_hash(config)
        self.accum = config.grad_accum_steps(env.world_size)
        self.loss_fn = build_loss(config.loss)
        self.patch = config.loss.patch_weight > 0
        require(
            not (self.patch and config.teacher_mode == "cached"),
            "distill.loss.patch_weight > 0 needs patch tokens, which the embedding cache does not hold; "
            "use teacher_mode: online or set patch_weight: 0",
        )
        self.tiles = tiles if tiles is not None else scan_shards(shards)
        if sources.cache is not None and self.tiles.shards_sha256 is not None:
            cached = sources.cache.index.get("shards_sha256")
            require(
                cached in (None, self.tiles.shards_sha256),
                f"distill: the cache {sources.cache_key} was made from other shards "
                f"(sha256 {str(cached)[:12]}) "
                f"than {shards} ({self.tiles.shards_sha256[:12]}); run `g2l embed` on these shards",
            )
        if sources.cache is not None and len(sources.cache) < len(self.tiles):
            # a tile-budgeted cache (embed.max_tiles_per_slide): train on exactly the tiles it holds
            self.tiles = self.tiles.subset(set(sources.cache.tile_keys()))
        vcfg = config.validation
        self.split = split_by_slide(self.tiles, vcfg.fraction, vcfg.seed, vcfg.max_tiles)
        self.plan = DataPlan(
            train=self.split.train,
            shard_of=self.tiles.shard[self.split.train],
            views=int(sources.view_spec.views),
            global_batch=config.global_batch,
            seed=config.seed,
            window_shards=config.shuffle_window_shards,
        )
        targets = CachedTargets(sources.cache, self.tiles) if config.teacher_mode == "cached" else None
        self.dataset: Any = DistillDataset(TileReader(self.tiles), _make_view(), sources.view_spec, targets)

        # Same seed on every rank: identical head init (FSDP does not broadcast), same as one process.
        torch.manual_seed(config.seed)
        student = sources.student
        student.model.train()
        self.module = Distiller(
            student.model,
            int(student.embed_dim),
            sources.teacher_dim,
            embedding=student.embedding,
            patch_tokens=self.patch,
        )
        self.model = wrap(self.module, config.strategy, env.device, env.world_size)
        opt = config.optim
        self.optimizer = torch.optim.AdamW(
            param_groups(self.module, opt.weight_decay), lr=opt.lr, betas=opt.betas
        )
        self.scheduler = build_scheduler(self.optimizer, config.schedule)
        self.writer = CheckpointWriter(
            self.out, config.checkpoint.keep_last, env.rank, env.world_size, barrier=env.barrier
        )
        self.weight_decay, self.lr = opt.weight_decay, opt.lr  # the last step's (the schedules set them)
        self.step = 0
        self.early = EarlyStopping()
        self.train_stop = train_stop(config.early_stopping)  # G2L's training-loss rule, when configured
        self.val: dict[str, float] = {}
        self.stop = StopFlag()

    # ----------------------------------------------------------------- state
    def _full_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(
            self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )

    def save_checkpoint(self) -> Path:
        """Checkpoint the current step (every rank calls this)."""
        model_sd, optim_sd = self._full_state()
        state = None
        if self.env.rank == 0:
            epoch, consumed = self.plan.position(self.step)
            state = {
                "model": model_sd,
                "optimizer": optim_sd,
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "data_position": {"epoch": epoch, "samples_consumed": consumed},
                "early_stopping": dataclasses.asdict(self.early),
                "train_stop": None if self.train_stop is None else self.train_stop.state_dict(),
                "val": dict(self.val),
            }
        meta = {"config_hash": self.config_hash, "global_batch": self.config.global_batch}
        return self.writer.save(self.step, state, meta)

    def load(self, path: Path) -> None:
        """Restore model, optimiser, scheduler, step, early stopping and RNG from a checkpoint."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        ckpt = load_checkpoint(path, self.env.rank, self.env.world_size)
        if ckpt["meta"].get("config_hash") != self.config_hash:
            raise ConfigError(
                f"{path} was written by a run with another distill config (hash "
                f"{str(ckpt['meta'].get('config_hash'))[:12]} vs {self.config_hash[:12]}); "
                "resume with the same config, or use --resume never / a new --out"
            )
        state = ckpt["state"]
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
            options=StateDictOptions(full_state_dict=True),
        )
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        position = state["data_position"]
        require(
            (position["epoch"], position["samples_consumed"]) == self.plan.position(self.step),
            f"{path}: its data position {position} does not match step {self.step} of this data plan; "
            "the shards or the validation split changed since; use --resume never or a new --out",
        )
        self.early = EarlyStopping(**state["early_stopping"])
        if self.train_stop is not None and state.get("train_stop") is not None:
            self.train_stop.load_state_dict(state["train_stop"])
        self.val = dict(state.get("val", {}))
        set_rng_state(ckpt["rng"])
        if not ckpt["rng_exact"] and self.env.rank == 0:
            from g2l.progress import console

            console.print(
                f"[yellow]resuming with {self.env.world_size} ranks from a checkpoint of "
                f"{ckpt['meta'].get('world_size')}: RNG states come from rank 0[/yellow]"
            )

    # ----------------------------------------------------------------- steps
    def _targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.config.teacher_mode == "cached":
            return batch["target"].to(self.env.device, non_blocking=True), None
        teacher = self.sources.teacher
        assert teacher is not None  # online mode always builds the teacher (resolve_sources)
        x_t = teacher.preprocess(batch["pixels"].to(self.env.device, non_blocking=True))
        with autocast(self.env.device, self.config.precision):
            return teacher_forward(teacher.model, x_t, teacher.embedding, self.patch)

    def batch_loss(
        self, batch: dict[str, torch.Tensor], model: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, projected student embedding, teacher target) of one micro-batch."""
        target, patch_target = self._targets(batch)
        x = self.sources.student.preprocess(batch["pixels"].to(self.env.device, non_blocking=True))
        with autocast(self.env.device, self.config.precision):
            pred, patch_pred = (model or self.model)(x)
        loss = self.loss_fn(pred, target)
        if patch_pred is not None and patch_target is not None:
            loss = loss + self.config.loss.patch_weight * patch_loss(self.loss_fn, patch_pred, patch_target)
        return loss, pred, target

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> float:
        """One optimiser step over this rank's micro-batches; returns the rank's mean loss."""
        self.model.train()
        total = 0.0
        for m, batch in enumerate(micro_batches):
            with grad_sync(self.model, sync=m == len(micro_batches) - 1):
                loss, _, _ = self.batch_loss(batch)
                (loss / len(micro_batches)).backward()
            total += float(loss.detach())
        if self.config.optim.grad_clip_norm > 0:
            clip_gradients(list(trainable(self.model)), self.config.optim.grad_clip_norm)
        self.weight_decay = set_weight_decay(
            self.optimizer, self.step, self.config.schedule, self.config.optim.weight_decay
        )
        self.lr = float(self.optimizer.param_groups[0]["lr"])  # this step's, before the scheduler moves on
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / len(micro_batches)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """val_loss and val_cosine on this rank's share of the held-out tiles, reduced over ranks."""
        items = [(int(i), 0) for i in self.split.val[self.env.rank :: self.env.world_size]]
        sums: list[float] = [0.0, 0.0, 0.0]
        self.model.eval()
        loader = self._loader(
            [
                items[i : i + self.config.per_device_batch]
                for i in range(0, len(items), self.config.per_device_batch)
            ]
        )
        for batch in loader:
            loss, pred, target = self.batch_loss(batch)
            n = len(pred)
            sums[0] += float(loss) * n
            sums[1] += float(mean_cosine(pred, target).sum())
            sums[2] += float(n)
        self.model.train()
        loss_sum, cos_sum, count = all_reduce(sums, self.env)
        if count == 0:
            return {}
        return {"val_loss": loss_sum / count, "val_cosine": cos_sum / count}

    def _loader(self, batch_sampler: Any) -> torch.utils.data.DataLoader:
        workers = self.config.num_workers
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=batch_sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.env.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
            # Its own generator: otherwise each new iterator draws worker seeds from the global torch
            # RNG, so a resumed run (which creates its loader at the resume step) would consume the
            # RNG differently from an uninterrupted one and dropout/drop-path masks would diverge.
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    # ----------------------------------------------------------------- run
    def _prepare_out(self) -> None:
        if self.env.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.resume == "never":
                import shutil

                for name in ("checkpoints", "student", "train_log.jsonl", "status.json"):
                    target = self.out / name
                    shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(
                        missing_ok=True
                    )
        self.env.barrier()

    def _trim_log(self) -> None:
        """Drop log lines past the resumed step (written after the checkpoint by the interrupted run)."""
        log = self.out / "train_log.jsonl"
        if self.env.rank != 0 or not log.exists():
            return
        keep = [
            line for line in log.read_text().splitlines() if line and json.loads(line)["step"] <= self.step
        ]
        tmp = log.with_name(f".{log.name}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in keep))
        os.replace(tmp, log)

    def _log(self, record: dict[str, Any]) -> None:
        if self.env.rank == 0:
            with open(self.out / "train_log.jsonl", "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")

    def _after_validation(self, metrics: dict[str, float]) -> bool:
        """Track the best model; True when early stopping says stop."""
        self.val = metrics
        if not metrics:
            return False
        if self.early.observe(metrics["val_loss"], self.step, self.config.early_stopping):
            self._save_best(metrics)
        return self.early.stopped

    def _save_best(self, metrics: dict[str, float]) -> None:
        # only an export of the best weights needs them (a 1.2 GB write per improvement for a ViT-L)
        if self.config.export == "best":
            weights = student_weights(self.model)
            if self.env.rank == 0:
                save_best(self.out, self.step, metrics, weights)

    def student_state(self, which: str) -> tuple[dict[str, torch.Tensor], int]:
        """The student's weights to export: the best validated ones or the last; and their step."""
        best = load_best(self.out) if which == "best" else None
        return best if best is not None else (student_weights(self.model), self.step)

    def run(self) -> TrainResult:
        """Train until max_steps, early stopping or SIGTERM (checkpoint, then raise Preempted)."""
        from g2l.metrics import StageMetrics
        from g2l.progress import progress

        self._prepare_out()
        path = latest_checkpoint(self.out) if self.resume == "auto" else None
        if path is not None:
            self.load(path)
        self._trim_log()
        max_steps = self.config.schedule.max_steps
        previous = signal.signal(signal.SIGTERM, self.stop) if on_main_thread() else None
        rank0 = self.env.rank == 0
        metrics = (
            StageMetrics("distill", run_id=self.run_id, cancer=self.cancer, root=str(self.out))
            if rank0
            else None
        )
        status = "finished"
        try:
            with progress(self.quiet or not rank0) as progress_bar:
                bar: Any = progress_bar
                task = bar.add_task("distill", total=max_steps)
                bar.update(task, completed=self.step)
                if self.step == 0 and path is None and len(self.split.val):
                    metrics_0 = self.validate()  # the "before" figure, and the baseline for early stopping
                    self._after_validation(metrics_0)
                    self._log({"step": 0, **metrics_0})
                # an early-stopped run resumed (e.g. after a crash before export) trains no further
                stopped = self.early.stopped or (self.train_stop is not None and self.train_stop.stopped)
                status = "early_stopped" if stopped else self._loop(max_steps, bar, task, metrics)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if metrics is not None:
                metrics.__exit__(None, None, None)
        return TrainResult(status=status, step=self.step, val=dict(self.val), best_step=self.early.best_step)

    def _loop(self, max_steps: int, bar: Any, task: Any, metrics: Any) -> str:
        cfg = self.config
        micro = cfg.per_device_batch
        sampler = StepSampler(self.plan, self.step, max_steps, self.env.rank, self.env.world_size, micro)
        batches = iter(self._loader(sampler))
        last_saved = self.step
        if metrics is not None:
            g_loss = metrics.gauge("distill_loss", "Training loss of the last logged step")
            g_step = metrics.gauge("distill_step_seconds", "Wall time of the last optimiser step")
            g_tps = metrics.gauge("distill_tiles_per_second", "Global training tiles per second")
            g_mem = metrics.gauge("distill_gpu_memory_bytes", "Peak GPU memory allocated on rank 0")
            g_cos = metrics.gauge("distill_val_cosine", "Validation cosine (projected student vs teacher)")
            c_steps = metrics.counter("distill_steps_total", "Optimiser steps taken")
            c_tiles = metrics.counter("distill_tiles_total", "Training tiles seen (global)")
        status = "finished"
        while self.step < max_steps:
            t0 = time.perf_counter()
            loss = self.train_step([next(batches) for _ in range(self.accum)])
            self.step += 1
            dt = time.perf_counter() - t0
            tiles_per_s = cfg.global_batch / dt
            record: dict[str, Any] = {}
            stop_early = False
            if self.train_stop is not None:  # every rank sees the same global loss, so all stop together
                (summed,) = all_reduce([loss], self.env)
                stop_early = self.train_stop.update(summed / self.env.world_size)
            if self.step % cfg.log_every_steps == 0 or self.step == max_steps or stop_early:
                (mean_loss,) = all_reduce([loss], self.env)
                record = {
                    "step": self.step,
                    "loss": mean_loss / self.env.world_size,
                    "lr": self.lr,  # the lr and weight decay this step used
                    "weight_decay": self.weight_decay,
                    "tiles_per_s": tiles_per_s,
                    "step_s": dt,
                    "epoch": self.plan.position(self.step - 1)[0],
                }
            if len(self.split.val) and (
                self.step % cfg.validation.every_steps == 0 or self.step == max_steps or stop_early
            ):
                val = self.validate()
                record = {**(record or {"step": self.step}), **val}
                stop_early = self._after_validation(val) or stop_early
            if record:
                self._log(record)
            if metrics is not None:
                c_steps.inc()
                c_tiles.inc(cfg.global_batch)
                g_step.set(dt)
                g_tps.set(tiles_per_s)
                if "loss" in record:
                    g_loss.set(record["loss"])
                if "val_cosine" in record:
                    g_cos.set(record["val_cosine"])
                if self.env.device.type == "cuda":
                    g_mem.set(torch.cuda.max_memory_allocated(self.env.device))
                if record:  # every log step: the dashboard follows training while it runs
                    metrics.push_progress()
            bar.advance(task, rate=f"{tiles_per_s:.0f} tiles/s")
            if self.step_callback is not None:
                self.step_callback(self.step)
            (stop_flag,) = all_reduce(
                [1.0 if self.stop.set else 0.0],
                self.env,
                op=dist.ReduceOp.MAX if self.env.world_size > 1 else None,
            )
            if stop_flag > 0:
                path = self.save_checkpoint()
                raise Preempted(self.step, path)
            if stop_early:
                status = "early_stopped"
                break
            if self.step % cfg.checkpoint.every_steps == 0:
                self.save_checkpoint()
                last_saved = self.step
        if last_saved != self.step or latest_checkpoint(self.out) is None:
            self.save_checkpoint()
        return status


def _make_view() -> Callable[..., np.ndarray]:
    from g2l.views import make_view

    return make_view


def describe_config(config: DistillConfig) -> dict[str, Any]:
    """The resolved config as saved beside the outputs."""
    return to_dict(config)
