"""Which slide and step the tiler is on: on the progress bar, in the log when a step is slow, on Ctrl-C.

Tiling one slide can take minutes (a multi-GB download, a huge tissue image); a bar that only counts slides
then looks hung. Each slide reports its steps here; a watcher thread puts the newest on the bar and, where
no live bar is drawn (logs of a pod, a pipe), prints a line when one step has lasted `slow_s` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

#: A step that lasts this long is named in the log (and again every `REPEAT_S` while it lasts).
SLOW_STEP_S = 5.0
REPEAT_S = 30.0


class StepTracker:
    """The current step of each slide in flight, thread-safe; `on_step` is what slides call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, tuple[str, float]] = {}  # slide_id -> (step, started)

    def on_step(self, slide_id: str, step: str | None) -> None:
        """Slide `slide_id` starts `step` (None: the slide is finished)."""
        with self._lock:
            if step is None:
                self._steps.pop(slide_id, None)
            else:
                self._steps[slide_id] = (step, time.monotonic())

    def current(self) -> list[tuple[str, str, float]]:
        """(slide_id, step, seconds in it) of every slide in flight, oldest step first."""
        now = time.monotonic()
        with self._lock:
            items = [(sid, step, now - since) for sid, (step, since) in self._steps.items()]
        return sorted(items, key=lambda item: -item[2])

    def step_of(self, slide_id: str) -> str | None:
        """The step `slide_id` is in, or None."""
        with self._lock:
            entry = self._steps.get(slide_id)
        return entry[0] if entry else None


class StepWatcher:
    """A daemon thread that shows the slowest step on the bar and logs steps slower than `slow_s`."""

    def __init__(
        self,
        tracker: StepTracker,
        show: Callable[[str], None],
        log: Callable[[str], None] | None,
        *,
        slow_s: float = SLOW_STEP_S,
        interval_s: float = 0.5,
    ) -> None:
        self._tracker = tracker
        self._show = show
        self._log = log
        self._slow_s = slow_s
        self._interval_s = interval_s
        self._logged: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="g2l-steps", daemon=True)

    def __enter__(self) -> StepWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick()

    def tick(self) -> None:
        """Update the bar and log slow steps once (called by the thread; callable directly)."""
        current = self._tracker.current()
        if current:
            sid, step, seconds = current[0]
            self._show(f"slides: {sid} {step}" + (f" ({seconds:.0f} s)" if seconds >= self._slow_s else ""))
        for sid, step, seconds in current:
            if self._log is None or seconds < self._slow_s:
                continue
            last = self._logged.get((sid, step))
            if last is None or seconds - last >= REPEAT_S:
                self._logged[(sid, step)] = seconds
                self._log(f"slide {sid}: {step} for {seconds:.0f} s")


def in_background(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Run `fn` on a daemon thread: Ctrl-C never waits for it (a download can take minutes)."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=run, name="g2l-prepare", daemon=True).start()
    return future
