"""Many slides in one bounded pipeline: slide N+1 is set up and N-1 finished while N's tiles decode.

Three kinds of work overlap, each on its own threads:
* set-up (`prepare_slide`: stage, open, tissue image and detection, grid, read path checks), one slide at a
  time on a side thread, up to `LOOKAHEAD` slides ahead of the tiles being written;
* tiles: tasks of a few consecutive tiles each (`chunk`) on a pool of `threads` workers, in manifest and
  grid order across slide boundaries, at most `window` tiles in flight (memory stays bounded whatever the
  slide count); a task returns its tiles framed as tar members, so the writer only appends bytes;
* finishing (`finish_slide`: coords, the QC picture, meta.json) on side threads once a slide's tiles.tar
  is in place, at most `MAX_FINISHING` slides at a time.
Set-up and finishing run on daemon threads (g2l.tiling.steps.in_background): Ctrl-C never waits for a
download or an upload.
The calling thread only moves finished tiles, in order, into each slide's tiles.tar. Tile tasks run almost
entirely in C libraries that release the GIL (libjpeg-turbo, OpenCV, pread), so every core decodes.

A slide that an earlier run was interrupted on (a crash or out-of-memory kill while reading it) is tiled
with nothing else in flight, so that a repeat crash counts against it alone.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from g2l.tiling.config import TilingConfig
from g2l.tiling.manifest_io import SlideRow
from g2l.tiling.outputs import OutputRoot
from g2l.tiling.shards import TarWriter, tar_member, tile_key
from g2l.tiling.slide import (
    RUN_LEVEL_ERRORS,
    PreparedSlide,
    SlideOutcome,
    Suspect,
    finish_slide,
    prepare_slide,
    record_failure,
)
from g2l.tiling.steps import in_background

#: Slides prepared ahead of the one whose tiles are being made (each holds an open reader and its masks).
LOOKAHEAD = 2
#: Slides whose tiles are written but whose coords, QC picture and meta.json are still being made.
MAX_FINISHING = 2
#: Progress is reported every this many tiles.
PROGRESS_EVERY = 32
#: Most tiles in one task: a future, a hand-over and a write per task instead of per tile (~20 us each of
#: GIL-holding Python on the writer), while a task stays a few milliseconds long.
TILES_PER_TASK = 8

Observer = Callable[[str, str], None]
StepCallback = Callable[[str, str | None], None]


@dataclasses.dataclass
class _Active:
    """A slide whose tiles are being made and written."""

    prepared: PreparedSlide
    # Its tile tasks not yet written (a written tile's bytes must not stay referenced: memory is bounded by
    # the window, not by the slide's size).
    futures: set[Future[bytes]] = dataclasses.field(default_factory=set)
    error: BaseException | None = None
    tar: TarWriter | None = None
    started: float = 0.0

    @property
    def slide_id(self) -> str:
        return self.prepared.row.slide_id


@dataclasses.dataclass
class _Item:
    """One step for the writer, in order: a slide begins, one of its tiles, it ends, or a plain outcome."""

    kind: str  # "begin" | "tile" | "end" | "outcome" | "drain" | "idle"
    active: _Active | None = None
    count: int = 0  # "tile": how many tiles the task makes
    future: Future[bytes] | None = None  # "tile": their tar members
    outcome: Future[SlideOutcome] | None = None
    waiting: Future[Any] | None = None  # "idle": the set-up the source waits for


def _stored_members(maker: Any, start: int, names: list[str]) -> bytes:
    """Tiles start.. of a slide made from its stored tiles, framed as tar members (runs on a worker)."""
    return b"".join(tar_member(name, maker.tile(start + k)) for k, name in enumerate(names))


def _region_member(maker: Any, region: Any, name: str) -> bytes:
    """One backend read made into a tile and framed as a tar member (runs on a worker)."""
    return tar_member(name, maker.encode_region(region))


def _failed_future(exc: BaseException) -> Future[bytes]:
    future: Future[bytes] = Future()
    future.set_exception(exc)
    return future


def _done_future(value: SlideOutcome) -> Future[SlideOutcome]:
    future: Future[SlideOutcome] = Future()
    future.set_result(value)
    return future


class SlidePipeline:
    """Tiles a manifest's rows in order, overlapping set-up, tiles and finishing of neighbouring slides."""

    def __init__(
        self,
        root: OutputRoot,
        config: TilingConfig,
        *,
        threads: int,
        cache_dir: str | None = None,
        replace: bool = False,
        on_tiles: Callable[[int], None] | None = None,
        on_step: StepCallback | None = None,
        observer: Observer | None = None,
        prepare: Callable[..., PreparedSlide | SlideOutcome | Suspect] = prepare_slide,
    ) -> None:
        self.root, self.config, self.cache_dir, self.replace = root, config, cache_dir, replace
        self._prepare_slide = prepare  # `prepare_slide`; tests pass a wrapper around it
        self.threads = max(1, threads)
        # Enough tiles in flight to keep every worker busy across a slide boundary; bounded by batch_tiles.
        self.window = max(4 * self.threads, config.batch_tiles)
        # Tiles per task: at least two tasks per worker fit in the window, so none waits for the writer.
        self.chunk = max(1, min(TILES_PER_TASK, self.window // (2 * self.threads)))
        self._on_tiles = on_tiles
        self._on_step = on_step
        self._observer = observer
        self._unreported = 0
        self._open: dict[str, None] = {}  # slides set up or being set up and not yet done, in order
        self._lock = threading.Lock()
        self._tiling: list[_Active] = []  # slides whose tiles are in flight (begun, not ended)

    def in_flight(self) -> list[str]:
        """Slides being set up, tiled or finished right now, oldest first (their attempts are in progress)."""
        with self._lock:
            return list(self._open)

    def _event(self, what: str, slide_id: str) -> None:
        with self._lock:
            if what == "prepare":
                self._open[slide_id] = None
            elif what in ("done", "deferred"):
                self._open.pop(slide_id, None)
        if what == "done" and self._on_step is not None:
            self._on_step(slide_id, None)
        if self._observer is not None:
            self._observer(what, slide_id)

    def _prepare(self, row: SlideRow, alone: bool) -> PreparedSlide | SlideOutcome | Suspect:
        self._event("prepare", row.slide_id)
        try:
            result = self._prepare_slide(
                row,
                self.root,
                self.config,
                cache_dir=self.cache_dir,
                replace=self.replace,
                on_step=self._on_step,
                alone=alone,
            )
        except BaseException:
            self._event("failed", row.slide_id)
            raise
        if isinstance(result, Suspect):
            self._event("deferred", row.slide_id)
        elif isinstance(result, SlideOutcome):
            self._event("done", row.slide_id)  # skipped (finished before) or failed at set-up
        else:
            self._event("prepared", row.slide_id)
        return result

    def _finish(self, active: _Active, tiles_sha256: str | None) -> SlideOutcome:
        p = active.prepared
        self._event("finish", active.slide_id)
        try:
            if active.error is not None or tiles_sha256 is None:
                error = active.error or RuntimeError("tiles.tar was not written")
                try:
                    return record_failure(p.row, self.root, p.config_sha256, error, p.started)
                finally:
                    p.close()
            tiles_s = time.monotonic() - active.started
            return finish_slide(p, self.root, self.config, tiles_sha256, tiles_s, on_step=self._on_step)
        finally:
            self._event("done", active.slide_id)

    # ------------------------------------------------------------------------------------ the work

    def _items(self, rows: list[SlideRow], pool: ThreadPoolExecutor) -> Generator[_Item, None, None]:
        """The writer's steps in order; submitting tile tasks (and set-ups) as the writer asks for more."""
        pending_rows = iter(rows)
        ahead: deque[tuple[SlideRow, Future[PreparedSlide | SlideOutcome | Suspect]]] = deque()
        last: Future[PreparedSlide | SlideOutcome | Suspect] | None = None
        paused = False  # no set-up runs beside a suspect slide

        def top_up() -> None:
            # One set-up at a time, each after the previous one finished and was not a suspect.
            nonlocal last
            if paused or len(ahead) >= LOOKAHEAD:
                return
            if last is not None and (not last.done() or isinstance(last.result(), Suspect)):
                return
            row = next(pending_rows, None)
            if row is not None:
                last = in_background(self._prepare, row, False)
                ahead.append((row, last))

        try:
            top_up()
            while ahead:
                row, future = ahead.popleft()
                while not future.done():
                    yield _Item("idle", waiting=future)  # the writer writes what is ready meanwhile
                result = future.result()
                alone = isinstance(result, Suspect)
                if alone:
                    paused = True
                    yield _Item("drain")  # everything before it is written and finished
                    last = in_background(self._prepare, row, True)
                    result = last.result()
                else:
                    top_up()
                if isinstance(result, SlideOutcome):
                    yield _Item("outcome", outcome=_done_future(result))
                elif isinstance(result, PreparedSlide):
                    yield from self._slide_items(result, pool, top_up)
                if alone:
                    yield _Item("drain")  # ... and it is finished before anything after it starts
                    paused = False
                top_up()
        finally:
            # Stopped early (Ctrl-C, an error): close the slides set up ahead and never started.
            for _, waiting in ahead:
                if waiting.done() and waiting.exception() is None:
                    prepared = waiting.result()
                    if isinstance(prepared, PreparedSlide):
                        prepared.close()

    def _slide_items(
        self, prepared: PreparedSlide, pool: ThreadPoolExecutor, top_up: Callable[[], None]
    ) -> Iterator[_Item]:
        active = _Active(prepared)
        self._tiling.append(active)  # from here on the writer (or `_abandon`) owns its reader
        yield _Item("begin", active)
        maker = prepared.maker
        if maker is not None and len(maker):
            xs, ys = prepared.xs.tolist(), prepared.ys.tolist()
            if maker.stored_path:
                for start in range(0, len(maker), self.chunk):
                    if active.error is not None:
                        break
                    end = min(len(maker), start + self.chunk)
                    corners = zip(xs[start:end], ys[start:end], strict=True)
                    names = [f"{tile_key(active.slide_id, x, y)}.jpg" for x, y in corners]
                    future = pool.submit(_stored_members, maker, start, names)
                    active.futures.add(future)
                    yield _Item("tile", active, end - start, future)
                    top_up()
            else:
                regions = maker.regions(self.threads)
                for i in range(len(maker)):
                    if active.error is not None:
                        break
                    try:
                        region = next(regions)
                    except BaseException as exc:  # a read error ends the slide; the writer records it
                        yield _Item("tile", active, 1, _failed_future(exc))
                        break
                    name = f"{tile_key(active.slide_id, xs[i], ys[i])}.jpg"
                    future = pool.submit(_region_member, maker, region, name)
                    active.futures.add(future)
                    yield _Item("tile", active, 1, future)
                    top_up()
                close = getattr(regions, "close", None)
                if close is not None:
                    close()
        yield _Item("end", active)

    def run(self, rows: list[SlideRow]) -> Iterator[SlideOutcome]:
        """Tile `rows` in order; yields each slide's outcome in manifest order as it completes."""
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="g2l-tile")
        # Every object alive now (the imported libraries: pandas, pyarrow, typer ...) is set aside from the
        # cyclic garbage collector for the run: its full collections, triggered by the futures and buffers
        # of thousands of tiles, would otherwise walk them all again and again (~4 % of a run's CPU).
        gc.freeze()
        try:
            outcomes: deque[Future[SlideOutcome]] = deque()
            pending: deque[_Item] = deque()
            in_flight = 0
            source: Generator[_Item, None, None] = self._items(rows, pool)
            exhausted = False
            try:
                while True:
                    while not exhausted and in_flight < self.window:
                        item = next(source, None)
                        if item is None:
                            exhausted = True
                        elif item.kind == "drain":
                            while pending:
                                in_flight -= self._handle(pending.popleft(), outcomes)
                            wait(list(outcomes))
                        elif item.kind == "idle":
                            # The next slide's set-up is not ready: write a ready tile, else wait for it.
                            if pending:
                                in_flight -= self._handle(pending.popleft(), outcomes)
                            else:
                                assert item.waiting is not None
                                wait([item.waiting])
                        else:
                            pending.append(item)
                            in_flight += item.count
                        # Outcomes already complete are handed out in order without waiting.
                        while outcomes and outcomes[0].done():
                            yield outcomes.popleft().result()
                    if not pending:
                        break
                    in_flight -= self._handle(pending.popleft(), outcomes)
                    while outcomes and outcomes[0].done():
                        yield outcomes.popleft().result()
                while outcomes:
                    yield outcomes.popleft().result()
            finally:
                source.close()
                for item in pending:  # interrupted (Ctrl-C, a bug): release what is still open
                    if item.kind == "tile" and item.future is not None:
                        item.future.cancel()
                for active in list(self._tiling):
                    self._abandon(active)
                if self._on_tiles is not None and self._unreported:
                    self._on_tiles(self._unreported)
                    self._unreported = 0
        finally:
            # Queued tile tasks are dropped; running ones take milliseconds. Set-up and finishing threads
            # are daemons and are not waited for.
            pool.shutdown(wait=True, cancel_futures=True)
            gc.unfreeze()

    def _abandon(self, active: _Active) -> None:
        """Drop a slide whose tiles were in flight when the run stopped: no tiles.tar, reader closed."""
        self._tiling.remove(active)
        for future in active.futures:
            future.cancel()
        wait(active.futures)
        if active.tar is not None:
            active.tar.abort()
            active.tar = None
        active.prepared.close()

    def _handle(self, item: _Item, outcomes: deque[Future[SlideOutcome]]) -> int:
        """Carry out one writer step; returns the number of tiles it took off the in-flight count."""
        if item.kind == "outcome":
            assert item.outcome is not None
            outcomes.append(item.outcome)
            return 0
        active = item.active
        assert active is not None
        if item.kind == "begin":
            # Slides being finished hold their readers and pictures: bound how many wait for it.
            while sum(not f.done() for f in outcomes) >= MAX_FINISHING:
                wait([next(f for f in outcomes if not f.done())])
            self._event("tiles", active.slide_id)
            maker = active.prepared.maker
            if self._on_step is not None and maker is not None:
                self._on_step(active.slide_id, f"making {len(maker)} tiles ({maker.read_path})")
            active.started = time.monotonic()
            try:
                active.tar = TarWriter(self.root, f"tiles/{active.slide_id}/tiles.tar")
            except RUN_LEVEL_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. an unwritable root: this slide fails
                active.error = exc
            return 0
        if item.kind == "tile":
            assert item.future is not None
            if active.error is not None:
                item.future.cancel()
                return item.count
            active.futures.discard(item.future)
            try:
                members = item.future.result()
                assert active.tar is not None
                active.tar.add_members(members, item.count)
            except Exception as exc:  # noqa: BLE001 - a tile that cannot be made fails its slide, not the run
                active.error = exc
                for future in active.futures:
                    future.cancel()
            else:
                self._unreported += item.count
                if self._on_tiles is not None and self._unreported >= PROGRESS_EVERY:
                    self._on_tiles(self._unreported)
                    self._unreported = 0
            return item.count
        # "end": the tar becomes tiles.tar, then the slide is finished on the finishing thread.
        sha256: str | None = None
        if active.error is None and active.tar is not None:
            try:
                sha256 = active.tar.commit()
            except RUN_LEVEL_ERRORS:
                active.tar = None
                raise
            except Exception as exc:  # noqa: BLE001
                active.error = exc
        else:
            for future in active.futures:
                future.cancel()
            wait(active.futures)  # no task may still read the slide's file when it is closed
            if active.tar is not None:
                active.tar.abort()
        active.tar = None
        self._tiling.remove(active)  # the finishing thread owns it now
        outcomes.append(in_background(self._finish, active, sha256))
        return 0
