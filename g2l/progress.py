"""Rich progress bars for long work, silenced by --quiet or when output is not a terminal log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class _NullProgress:
    """Stands in for rich.Progress when quiet."""

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def advance(self, *args: object, **kwargs: object) -> None:
        return None

    def update(self, *args: object, **kwargs: object) -> None:
        return None


@contextmanager
def progress(quiet: bool = False) -> Iterator[_ProgressWithRate | _NullProgress]:
    """A progress context: `task = p.add_task("tiling", total=n); p.advance(task)`."""
    if quiet:
        yield _NullProgress()
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        yield _ProgressWithRate(bar)


class _ProgressWithRate:
    """Wraps rich.Progress so every task has a `rate` field (e.g. '123 tiles/s')."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar

    def add_task(self, description: str, total: float | None = None, **fields: object) -> int:
        fields.setdefault("rate", "")
        return int(self._bar.add_task(description, total=total, **fields))  # type: ignore[arg-type]

    def advance(self, task: int, amount: float = 1, **fields: object) -> None:
        self._bar.update(task, advance=amount, **fields)  # type: ignore[arg-type]

    def update(self, task: int, **fields: object) -> None:
        self._bar.update(task, **fields)  # type: ignore[arg-type]
