"""Early stopping: on validation loss (patience), or G2L's rule on the training loss's running mean."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from g2l.distill.config import EarlyStoppingConfig


class RunningMeanStop:
    """Compare each step's training loss with the mean of the previous `window` steps' losses.

    A step counts as an exceedance when its loss is greater than that mean (only once `window` losses
    are known). `consecutive`: a step at or below the mean resets the count; `total`: it never resets.
    The run stops when the count exceeds `exceed_limit` ("more than 10 times" in the paper). The state
    is a few hundred floats and goes into every checkpoint, so a resumed run stops where an
    uninterrupted one would.
    """

    def __init__(self, config: EarlyStoppingConfig) -> None:
        self.window, self.limit, self.mode = config.window, config.exceed_limit, config.exceed_count
        self.history: collections.deque[float] = collections.deque(maxlen=config.window)
        self.exceeded = 0
        self.stopped = False

    def update(self, loss: float) -> bool:
        """Record this step's (globally averaged) loss; True when the run should stop now."""
        if len(self.history) == self.window:
            if loss > sum(self.history) / self.window:
                self.exceeded += 1
            elif self.mode == "consecutive":
                self.exceeded = 0
        self.history.append(float(loss))
        self.stopped = self.stopped or self.exceeded > self.limit
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state."""
        return {"history": list(self.history), "exceeded": self.exceeded, "stopped": self.stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.history = collections.deque((float(v) for v in state["history"]), maxlen=self.window)
        self.exceeded, self.stopped = int(state["exceeded"]), bool(state["stopped"])


@dataclasses.dataclass
class EarlyStopping:
    """Validation-loss state (best loss, validations without improvement), checkpointed with the run."""

    best: float = float("inf")
    bad: int = 0
    best_step: int | None = None
    stopped: bool = False

    def observe(self, val_loss: float, step: int, config: EarlyStoppingConfig) -> bool:
        """Record a validation; True when it is the best so far. Sets `stopped` in validation mode."""
        improved = val_loss < self.best - config.min_delta
        if improved:
            self.best, self.bad, self.best_step = val_loss, 0, step
        else:
            self.bad += 1
        self.stopped = config.enabled and config.mode == "validation" and self.bad >= config.patience
        return improved


def train_stop(config: EarlyStoppingConfig) -> RunningMeanStop | None:
    """The training-loss rule when it is the configured one, else None."""
    return RunningMeanStop(config) if config.enabled and config.mode == "train_running_mean" else None
