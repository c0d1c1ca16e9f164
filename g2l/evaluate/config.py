"""The `evaluate:` config section: seeds, probe grid, kNN and robustness settings, reference models."""

from __future__ import annotations

import dataclasses

from g2l.config import require


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """Settings of `g2l evaluate` (the `evaluate:` section of a run config)."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    probe_c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    probe_val_fraction: float = 0.2
    probe_max_iter: int = 2000
    knn_k: int = 20
    robustness_ks: tuple[int, ...] = (3, 5, 10, 20)
    teacher_model: str = "teacher"
    champion_model: str = "champion"
    batch_size: int = 64
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU (part of the embedding store key)
    input_mpp: float = 0.5  # um/px every benchmark is brought to: the models' training resolution
    num_workers: int = 4
    projection_max_points: int = 1500
    # Bootstrap behind the report's 95% intervals (the gate draws its own, from the policy's settings).
    bootstrap_draws: int = 2000
    bootstrap_seed: int = 0
    # PathoROB's balanced class x site subsets: tiles per cell at least this many to form a subset.
    robustness_min_per_cell: int = 10
    # Further models evaluated beside student, teacher and champion (name -> spec), e.g. the untrained
    # student as the baseline distillation must beat; they appear in the report, not in the gate.
    extra_models: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(
            len(self.seeds) >= 5,
            f"evaluate.seeds must list at least 5 seeds (mean and spread need them), got {list(self.seeds)}",
        )
        require(len(set(self.seeds)) == len(self.seeds), f"evaluate.seeds has duplicates: {list(self.seeds)}")
        require(
            len(self.probe_c_grid) >= 1 and all(c > 0 for c in self.probe_c_grid),
            f"evaluate.probe_c_grid must be positive inverse regularisation strengths, "
            f"got {list(self.probe_c_grid)}",
        )
        require(
            0.05 <= self.probe_val_fraction <= 0.5,
            f"evaluate.probe_val_fraction must be in [0.05, 0.5], got {self.probe_val_fraction}",
        )
        require(
            self.probe_max_iter >= 10, f"evaluate.probe_max_iter must be >= 10, got {self.probe_max_iter}"
        )
        require(self.knn_k >= 1, f"evaluate.knn_k must be >= 1, got {self.knn_k}")
        reserved = {"student", self.teacher_model, self.champion_model}
        clash = sorted(reserved & set(self.extra_models))
        require(
            not clash,
            f"evaluate.extra_models uses reserved name(s) {clash}; rename them (reserved: "
            f"{sorted(reserved)})",
        )
        require(
            len(self.robustness_ks) >= 1 and all(k >= 1 for k in self.robustness_ks),
            f"evaluate.robustness_ks must be positive neighbour counts, got {list(self.robustness_ks)}",
        )
        require(bool(self.teacher_model), "evaluate.teacher_model must name the --model that is the teacher")
        require(self.batch_size >= 1, f"evaluate.batch_size must be >= 1, got {self.batch_size}")
        require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"evaluate.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        require(
            self.precision in ("auto", "fp32", "bf16"),
            f"evaluate.precision must be auto, fp32 or bf16, got {self.precision!r}",
        )
        require(
            0.05 <= self.input_mpp <= 10,
            f"evaluate.input_mpp must be in [0.05, 10] um/px, got {self.input_mpp}",
        )
        require(self.num_workers >= 0, f"evaluate.num_workers must be >= 0, got {self.num_workers}")
        require(
            self.bootstrap_draws >= 200,
            f"evaluate.bootstrap_draws must be >= 200 (2000 for 95% intervals), got {self.bootstrap_draws}",
        )
        require(
            self.robustness_min_per_cell >= 2,
            f"evaluate.robustness_min_per_cell must be >= 2, got {self.robustness_min_per_cell}",
        )
        require(
            self.projection_max_points >= 10,
            f"evaluate.projection_max_points must be >= 10, got {self.projection_max_points}",
        )
