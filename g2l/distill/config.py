"""Distillation configuration: the `distill:` section of a run's YAML, as frozen dataclasses."""

from __future__ import annotations

import dataclasses

from g2l.config import require

LOSSES = ("logsum", "cosine", "smooth_l1", "mse")
REDUCTIONS = ("sample", "batch")
WD_SCHEDULES = ("constant", "cosine")
STOP_MODES = ("validation", "train_running_mean")
EXCEED_COUNTS = ("consecutive", "total")
TEACHER_MODES = ("cached", "online")
STRATEGIES = ("ddp", "fsdp")
PRECISIONS = ("auto", "bf16", "fp32")
EXPORTS = ("best", "last")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Which distillation loss, on the CLS embedding, plus an optional patch-token term."""

    name: str = "logsum"
    alpha: float = 4.0  # exponent of the G2L log-sum loss
    # logsum only: `sample` = mean over samples of log(sum_d |r|^alpha); `batch` = log of the sum over the
    # whole micro-batch matrix, log(sum_{b,d} |Z_s W_p - Z_t|^alpha), as the G2L paper writes it
    reduction: str = "sample"
    eps: float = 1e-12  # guards log(0) when the residual vanishes
    smooth_l1_beta: float = 1.0
    patch_weight: float = 0.0  # > 0 adds the same loss on patch tokens (needs patch tokens from the teacher)

    def __post_init__(self) -> None:
        require(self.name in LOSSES, f"distill.loss.name must be one of {LOSSES}, got {self.name!r}")
        require(self.alpha > 0, f"distill.loss.alpha must be > 0 (G2L uses 4), got {self.alpha}")
        require(self.reduction in REDUCTIONS,
                f"distill.loss.reduction must be one of {REDUCTIONS} (G2L: batch), got {self.reduction!r}")
        require(self.eps > 0, f"distill.loss.eps must be > 0, got {self.eps}")
        require(
            self.smooth_l1_beta > 0, f"distill.loss.smooth_l1_beta must be > 0, got {self.smooth_l1_beta}"
        )
        require(self.patch_weight >= 0, f"distill.loss.patch_weight must be >= 0, got {self.patch_weight}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW and gradient clipping."""

    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip_norm: float = 1.0  # 0 disables clipping

    def __post_init__(self) -> None:
        require(self.lr > 0, f"distill.optim.lr must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, f"distill.optim.weight_decay must be >= 0, got {self.weight_decay}")
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"distill.optim.betas must be two numbers in [0, 1), got {self.betas}",
        )
        require(
            self.grad_clip_norm >= 0, f"distill.optim.grad_clip_norm must be >= 0, got {self.grad_clip_norm}"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Linear warmup then cosine decay of the lr over `max_steps` steps; optionally cosine weight decay."""

    max_steps: int = 10000
    warmup_steps: int = 500
    min_lr_ratio: float = 0.0  # final lr = lr * min_lr_ratio
    # constant: AdamW's weight decay stays optim.weight_decay; cosine: it follows a cosine from
    # optim.weight_decay at step 0 to weight_decay * min_weight_decay_ratio at max_steps (G2L anneals both)
    weight_decay_schedule: str = "constant"
    min_weight_decay_ratio: float = 0.0

    def __post_init__(self) -> None:
        require(self.max_steps >= 1, f"distill.schedule.max_steps must be >= 1, got {self.max_steps}")
        require(
            0 <= self.warmup_steps, f"distill.schedule.warmup_steps must be >= 0, got {self.warmup_steps}"
        )
        require(
            0 <= self.min_lr_ratio <= 1,
            f"distill.schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}",
        )
        require(
            self.weight_decay_schedule in WD_SCHEDULES,
            f"distill.schedule.weight_decay_schedule must be one of {WD_SCHEDULES}, "
            f"got {self.weight_decay_schedule!r}",
        )
        require(
            0 <= self.min_weight_decay_ratio <= 1,
            f"distill.schedule.min_weight_decay_ratio must be in [0, 1], got {self.min_weight_decay_ratio}",
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """How often to checkpoint and how many to keep."""

    every_steps: int = 500
    keep_last: int = 3

    def __post_init__(self) -> None:
        require(self.every_steps >= 1, f"distill.checkpoint.every_steps must be >= 1, got {self.every_steps}")
        require(self.keep_last >= 1, f"distill.checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """Held-out whole slides: which fraction, chosen with which seed, evaluated how often."""

    fraction: float = 0.1
    seed: int = 0
    every_steps: int = 500
    max_tiles: int = 2048  # caps validation cost; the first tiles of the held-out slides in index order

    def __post_init__(self) -> None:
        require(0 <= self.fraction < 1, f"distill.validation.fraction must be in [0, 1), got {self.fraction}")
        require(self.every_steps >= 1, f"distill.validation.every_steps must be >= 1, got {self.every_steps}")
        require(self.max_tiles >= 1, f"distill.validation.max_tiles must be >= 1, got {self.max_tiles}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EarlyStoppingConfig:
    """When to stop before max_steps.

    `validation`: the validation loss has not improved by `min_delta` for `patience` validations.
    `train_running_mean` (G2L): the step's training loss exceeded the mean of the previous `window`
    steps' losses more than `exceed_limit` times, counted `consecutive`ly (a step at or below the mean
    resets the count) or in `total`.
    """

    enabled: bool = True
    mode: str = "validation"
    patience: int = 5
    min_delta: float = 0.0
    window: int = 100
    exceed_limit: int = 10
    exceed_count: str = "consecutive"

    def __post_init__(self) -> None:
        require(self.mode in STOP_MODES,
                f"distill.early_stopping.mode must be one of {STOP_MODES}, got {self.mode!r}")
        require(self.patience >= 1, f"distill.early_stopping.patience must be >= 1, got {self.patience}")
        require(self.min_delta >= 0, f"distill.early_stopping.min_delta must be >= 0, got {self.min_delta}")
        require(self.window >= 1, f"distill.early_stopping.window must be >= 1, got {self.window}")
        require(self.exceed_limit >= 0,
                f"distill.early_stopping.exceed_limit must be >= 0, got {self.exceed_limit}")
        require(self.exceed_count in EXCEED_COUNTS,
                f"distill.early_stopping.exceed_count must be one of {EXCEED_COUNTS}, "
                f"got {self.exceed_count!r}")


STUDENT_HUB = "hub"  # distill.student_weights value: the registered source of the student's weights


def _require_student_weights(student: str, weights: str | None) -> None:
    """A student whose card says pretrained starts from those weights, so the run must say where they are."""
    from g2l.models.zoo import get_spec  # light: the zoo table imports no torch

    spec = get_spec(student)
    if spec is None or not spec.pretrained or weights is not None:
        return
    where = f"{spec.hub_repo} on huggingface.co" if spec.hub_repo else "timm's pretrained tag"
    require(
        False,
        f"distill.student_weights is required for {student!r}: its card publishes pretrained weights the "
        f"student starts from (G2L initialises the student from them). Set it to `{STUDENT_HUB}` (download "
        f"from {where} or use the Hugging Face cache) or to a checkpoint file or directory, e.g. the hub "
        f"snapshot or the original .pth (`g2l models check {student} --weights PATH` checks it)",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig:
    """Everything that decides a distillation run's result (and so its config hash)."""

    student: str = "tiny-vit-student"  # g2l.models name (timm name, hf-hub:..., or a tiny test model)
    # the student's starting weights: a checkpoint file or directory (any published layout), or `hub` for
    # the registered source (hub snapshot / HF cache); None = random init, refused for pretrained students
    student_weights: str | None = None
    teacher: str | None = None  # online mode: teacher name; None = the one recorded in the cache
    teacher_weights: str | None = None
    teacher_mode: str = "cached"  # cached: targets from the embedding cache; online: teacher runs in the step
    strategy: str = "ddp"  # ddp | fsdp (for students that do not fit one device)
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    per_device_batch: int = 32
    global_batch: int = 96  # = per_device_batch * world_size * grad_accum_steps
    seed: int = 0
    shuffle_window_shards: int = 4  # shuffle tiles within windows of this many shards (read locality)
    num_workers: int = 2  # data-loading processes per rank
    log_every_steps: int = 10
    export: str = "best"  # export the best-validation weights or the last ones
    # online mode without a cache: g2l.views.ViewSpec keys (views, seed, crop_px, ...);
    # with a cache, the cache's own view spec is used
    view_spec: dict[str, object] = dataclasses.field(default_factory=dict)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    early_stopping: EarlyStoppingConfig = dataclasses.field(default_factory=EarlyStoppingConfig)

    def __post_init__(self) -> None:
        require(bool(self.student), "distill.student must name a model, e.g. 'vit_large_patch14_reg4_dinov2'")
        _require_student_weights(self.student, self.student_weights)
        require(
            self.teacher_mode in TEACHER_MODES,
            f"distill.teacher_mode must be one of {TEACHER_MODES}, got {self.teacher_mode!r}",
        )
        require(
            self.strategy in STRATEGIES,
            f"distill.strategy must be one of {STRATEGIES}, got {self.strategy!r}",
        )
        require(
            self.precision in PRECISIONS,
            f"distill.precision must be one of {PRECISIONS}, got {self.precision!r}",
        )
        require(
            self.per_device_batch >= 2,
            f"distill.per_device_batch must be >= 2 (the head's BatchNorm needs a batch), "
            f"got {self.per_device_batch}",
        )
        require(
            self.global_batch % self.per_device_batch == 0,
            f"distill.global_batch ({self.global_batch}) must be a multiple of per_device_batch "
            f"({self.per_device_batch}); global = per_device * world_size * grad_accum_steps",
        )
        require(
            self.shuffle_window_shards >= 1,
            f"distill.shuffle_window_shards must be >= 1, got {self.shuffle_window_shards}",
        )
        require(self.num_workers >= 0, f"distill.num_workers must be >= 0, got {self.num_workers}")
        require(
            self.log_every_steps >= 1, f"distill.log_every_steps must be >= 1, got {self.log_every_steps}"
        )
        require(self.export in EXPORTS, f"distill.export must be one of {EXPORTS}, got {self.export!r}")

    def grad_accum_steps(self, world_size: int) -> int:
        """Micro-batches per optimiser step on each rank so that the global batch is reached."""
        per_step = self.per_device_batch * world_size
        require(
            self.global_batch % per_step == 0,
            f"distill.global_batch ({self.global_batch}) must be a multiple of per_device_batch x world "
            f"size ({self.per_device_batch} x {world_size}); change global_batch or --nproc",
        )
        return self.global_batch // per_step

    def with_max_steps(self, max_steps: int | None) -> DistillConfig:
        """The same config with the schedule length overridden (the CLI's --max-steps)."""
        if max_steps is None:
            return self
        warmup = min(self.schedule.warmup_steps, max_steps)
        schedule = dataclasses.replace(self.schedule, max_steps=max_steps, warmup_steps=warmup)
        return dataclasses.replace(self, schedule=schedule)
