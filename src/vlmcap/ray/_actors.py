"""The two kinds of Ray actor of a cluster run: decoders (CPU) and engines (one per GPU).

A :class:`DecodeWorker` probes, decodes and preprocesses one file at a time (the main job's
``file_items`` and :func:`vlmcap.make_model_inputs`) and streams it out as :class:`Batch`
objects. An :class:`EngineWorker` holds one :class:`vlmcap.Captioner` for its whole life and
turns a batch into rows. Neither writes anything: the driver owns the output.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from vlmcap._captioner import Captioner
from vlmcap._records import CaptionResult, VllmConfig
from vlmcap.video._results import ResumeIndex, WindowCaption
from vlmcap.video._windows import WindowPlan, WindowSettings
from vlmcap.video.items import ReadyRow, WindowItem, budget_or_keep, file_items, window_inputs


log = logging.getLogger("vlmcap")


EngineFactory = Callable[[VllmConfig], Any]
"""Builds an engine from the config (default :func:`vlmcap.vllm_model`); must pickle."""


@attrs.frozen
class Work:
    """One preprocessed window waiting for an engine."""

    source: str
    plan: WindowPlan
    num_windows: int
    frames: int
    inputs: Mapping[str, Any] = attrs.field(eq=False, repr=False)

    def row(self, result: CaptionResult, fingerprint: str) -> WindowCaption:
        """The window's row for ``result``."""
        return WindowCaption.from_result(
            self.source, self.plan, self.num_windows, self.frames, result, fingerprint
        )


@attrs.frozen
class Batch:
    """Items of one file in window order: rows already known (errors, resumed) and work."""

    source: str
    items: tuple[WindowCaption | Work, ...]

    @property
    def windows(self) -> int:
        """Items that need an engine."""
        return sum(isinstance(i, Work) for i in self.items)


@attrs.frozen
class DecodeOptions:
    """What a decoder needs to turn a file into batches (the job's settings, once)."""

    config: VllmConfig
    prompt: str
    settings: WindowSettings
    fingerprint: str
    max_pixels: int | None
    max_side: int
    batch_windows: int


class DecodeWorker:
    """A CPU actor: decodes and preprocesses files into batches (a streaming generator)."""

    def __init__(self, options: DecodeOptions) -> None:
        from vlmcap._captioner import auto_processor

        self.options = options
        self.processor: Any = auto_processor(options.config)

    def _work(self, window: WindowItem) -> WindowCaption | Work:
        o = self.options
        window = budget_or_keep(window, o.config, self.processor)  # frames: those the model gets
        frames = int(window.decoded.frames.shape[0])
        made = window_inputs(window, o.config, self.processor, o.prompt)
        if isinstance(made, CaptionResult):
            return WindowCaption.from_result(
                window.source,
                window.decoded.plan,
                window.num_windows,
                frames,
                made,
                o.fingerprint,
            )
        return Work(window.source, window.decoded.plan, window.num_windows, frames, made)

    def file(
        self, path: str, stored: Sequence[WindowCaption], done: Sequence[WindowCaption] = ()
    ) -> Iterator[Batch]:
        """Yield the file's batches: at most ``batch_windows`` windows each, in window order.

        ``stored`` are the file's rows from earlier runs (same fingerprint): passed through,
        never decoded again. ``done`` are rows this run has delivered already (an earlier pass
        over the file stopped early): neither decoded nor yielded again.
        """
        o = self.options
        index = ResumeIndex.build([*done, *stored], o.fingerprint)
        skip = {row.window_index for row in done}
        items: list[WindowCaption | Work] = []
        windows = 0
        for item in file_items(
            Path(path),
            index,
            o.settings,
            max_pixels=o.max_pixels,
            max_side=o.max_side,
            fingerprint=o.fingerprint,
        ):
            if isinstance(item, ReadyRow) and item.row.window_index not in skip:
                items.append(item.row)
            elif isinstance(item, WindowItem):
                work = self._work(item)
                items.append(work)
                windows += isinstance(work, Work)
            if windows >= o.batch_windows or len(items) >= 8 * o.batch_windows:
                yield Batch(path, tuple(items))
                items, windows = [], 0
        if items:
            yield Batch(path, tuple(items))

    def where(self) -> tuple[str, int]:
        """The actor's node id and process id (placement checks, fault-injection tests)."""
        return _where()


class _Pending:
    """One batch waiting for its results (filled by the engine thread)."""

    def __init__(self, n: int) -> None:
        self.results: list[CaptionResult | None] = [None] * n
        self.left = n
        self.done = threading.Event()
        if n == 0:
            self.done.set()

    def put(self, slot: int, result: CaptionResult) -> None:
        self.results[slot] = result
        self.left -= 1
        if self.left == 0:
            self.done.set()

    def fail(self, error: str) -> None:
        for slot, res in enumerate(self.results):
            if res is None:
                self.put(slot, CaptionResult.failure(error))


class EngineWorker:
    """A long-lived engine actor: one :class:`vlmcap.Captioner` (rebuilt if its engine dies).

    Run as a threaded actor (``max_concurrency`` > 1): every :meth:`caption` call puts its
    windows into one inbox, and one engine thread streams the inbox through
    :meth:`vlmcap.Captioner.stream`, so the windows of all batches the driver has handed over
    share the engine's continuous batch (up to ``max_inflight`` at once) and the engine never
    drains between batches. Each call returns when its own windows are done.
    """

    def __init__(
        self,
        config: VllmConfig,
        fingerprint: str,
        build: EngineFactory | None,
        max_inflight: int = 256,
    ) -> None:
        self.fingerprint = fingerprint
        self.captioner = Captioner(config, build=None if build is None else (lambda: build(config)))
        self.max_inflight = max_inflight
        self._inbox: queue.Queue[tuple[_Pending, int, Mapping[str, Any]] | None] = queue.Queue()
        self._owners: dict[int, tuple[_Pending, int]] = {}  # stream index -> (batch, slot)
        self._taken = 0
        self._thread = threading.Thread(target=self._loop, name="vlmcap-engine", daemon=True)
        self._thread.start()

    def pid(self) -> int:
        """The actor's process id (for fault-injection tests)."""
        return _where()[1]

    def where(self) -> tuple[str, int]:
        """The actor's node id and process id (placement checks, fault-injection tests)."""
        return _where()

    def _feed(self) -> Iterator[Mapping[str, Any] | None]:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                yield None  # nothing new: the engine keeps stepping
                continue
            if item is None:
                return
            pending, slot, inputs = item
            self._owners[self._taken] = (pending, slot)
            self._taken += 1
            yield inputs

    def _loop(self) -> None:
        """Stream the inbox through the engine until :meth:`close`; restart after a failure."""
        while True:
            self._owners, self._taken = {}, 0
            try:
                for index, result in self.captioner.stream(self._feed(), self.max_inflight):
                    pending, slot = self._owners.pop(index)
                    pending.put(slot, result)
            except Exception as exc:  # every waiting window still gets its row
                log.exception("engine stream failed")
                if self._fail_waiting(f"engine: {type(exc).__name__}: {exc}"):
                    return
                time.sleep(1.0)  # then a fresh stream (and engine) takes what comes next
            else:
                return  # close() ended the inbox

    def _fail_waiting(self, error: str) -> bool:
        """Fail every window taken or queued; True if the inbox was closed meanwhile."""
        for pending, _slot in self._owners.values():
            pending.fail(error)
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            item[0].fail(error)

    def caption(self, batch: Batch) -> list[WindowCaption]:
        """One row per item of ``batch``, in order; an engine failure gives error rows."""
        work = [w for w in batch.items if isinstance(w, Work)]
        pending = _Pending(len(work))
        if work:
            for slot, w in enumerate(work):
                self._inbox.put((pending, slot, w.inputs))
        pending.done.wait()
        done = iter(pending.results)
        return [
            item.row(_result(next(done)), self.fingerprint) if isinstance(item, Work) else item
            for item in batch.items
        ]

    def close(self) -> None:
        """Finish what was handed over, then shut the engine down."""
        self._inbox.put(None)
        self._thread.join()
        self.captioner.close()


def _result(result: CaptionResult | None) -> CaptionResult:
    return result if result is not None else CaptionResult.failure("engine: no result")


def _where() -> tuple[str, int]:
    import os

    import ray

    return ray.get_runtime_context().get_node_id(), os.getpid()
