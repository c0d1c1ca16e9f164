"""Errors that stop a whole tiling run (as opposed to one slide): bad inputs, clashing settings, Ctrl-C."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TilingInputError(ValueError):
    """The run's inputs cannot be used (an unknown slide id, an output root that cannot be written).

    Raised before any output is touched; the message names the input and the fix.
    """


class SettingsConflictError(TilingInputError):
    """The output root holds finished outputs made with other tiling settings; nothing was changed."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem  # what clashes, where (a caller with other means of fixing it keeps this)
        self.fix = fix
        super().__init__(f"{problem}; nothing was changed. {fix}")


class TilingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the run; carries what was finished so the caller can summarise it."""

    def __init__(self, outcomes: Sequence[Any], total: int, current: str | None, step: str | None) -> None:
        self.outcomes = list(outcomes)
        self.total = total
        self.current = current
        self.step = step
        super().__init__(self.summary())

    def summary(self) -> str:
        """One line: slides finished, failed and not done, and the slide (and step) it stopped in."""
        ok = sum(getattr(o, "status", "") == "ok" for o in self.outcomes)
        failed = sum(getattr(o, "status", "") == "failed" for o in self.outcomes)
        left = self.total - len(self.outcomes)
        where = ""
        if self.current is not None:
            where = f"; stopped in slide {self.current}" + (f" ({self.step})" if self.step else "")
        return (
            f"interrupted: {ok} slide(s) done, {failed} failed, {left} not finished{where}. "
            "Finished slides are kept; run the same command again to resume"
        )
