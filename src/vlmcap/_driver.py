"""The driver: runs the pure scheduler (:mod:`vlmcap._scheduler`) on an engine.

:func:`drive` is the only loop that talks to an engine; everything else that captions (the seed
functions, :func:`~vlmcap.caption_results`, :func:`~vlmcap.caption_stream`,
:class:`~vlmcap.Captioner`, the file job, the Ray engine actor) is a layer over it. An engine is
anything that speaks the :class:`Engine` protocol; the plugin's side of each request comes in
as :class:`Hooks`, the settings as a :class:`Policy`.
"""

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from vlmcap import _scheduler as sched
from vlmcap._errors import EngineStalledError
from vlmcap._records import CaptionResult, VllmCaptionRequest
from vlmcap._vllm_compat import EngineAdapter, Finished, is_engine_dead


log = logging.getLogger("vlmcap")


@runtime_checkable
class Engine(Protocol):
    """**Protocol:** what the driver needs from an engine (``EngineAdapter`` or a test fake).

    An engine that is lost as a whole (its core process gone) raises
    :class:`~vlmcap.EngineDeadError` from ``add`` or ``step``; anything else ``add`` raises
    rejects that one request. Optional capabilities are declared by protocols of their own
    (:class:`AddsInParallel`), never probed attribute by attribute.
    """

    def add(self, engine_id: str, inputs: Mapping[str, Any], params: Any) -> None:
        """Submit a request; raise if it is rejected."""

    def step(self) -> list[Finished]:
        """Advance; return the requests finished in this step."""
        ...

    def abort(self, engine_ids: Sequence[str]) -> None:
        """Drop requests still in flight."""

    def close(self) -> None:
        """Release what the engine holds on the client side (threads, queued work).

        Called when the driver gives a lost engine up; the engine's processes are the owner's.
        """


@runtime_checkable
class AddsInParallel(Engine, Protocol):
    """**Capability:** an engine that prepares a batch of requests in parallel (vLLM's adapter).

    ``add_many`` returns one entry per item: ``None``, or the exception that rejected it (a
    dead engine raises instead); requests may also come back from ``step`` as errors.
    """

    def add_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], params: Any
    ) -> list[Exception | None]:
        """Submit ``items`` (``(engine_id, inputs)``) together."""
        ...


def as_engine(llm: Any, lora_request: Any = None) -> Engine:
    """``llm`` if it speaks :class:`Engine`, else a ``vllm.LLM`` wrapped in vLLM's adapter.

    ``lora_request`` goes with every request the adapter adds (:class:`~vlmcap.SupportsLoRA`).
    """
    if isinstance(llm, Engine):
        return llm
    return EngineAdapter(llm, lora_request=lora_request)


def _submit(
    engine: Engine,
    subs: Sequence[sched.Submission],
    params: Any,
    prepare: Callable[[sched.Job], Mapping[str, Any]],
) -> list[sched.Outcome]:
    """Add each submission to the engine; a rejection becomes that request's error outcome.

    Engines that can (:class:`AddsInParallel`, the vLLM adapter) render the batch in parallel.
    """
    errors: list[Exception | None] = []
    items: list[tuple[str, Mapping[str, Any]]] = []
    for sub in subs:
        try:
            items.append((sub.engine_id, prepare(sub.job)))
            errors.append(None)
        except Exception as exc:  # noqa: BLE001 - one bad request never sinks the batch
            errors.append(exc)
    if isinstance(engine, AddsInParallel):
        added = iter(engine.add_many(items, params))
    else:
        added = iter(_add_each(engine, items, params))
    errors = [e if e is not None else next(added) for e in errors]
    rejected: list[sched.Outcome] = []
    for sub, error in zip(subs, errors, strict=True):
        if error is not None:
            log.warning("request %s rejected: %s", sub.engine_id, error)
            err = f"rejected: {type(error).__name__}: {error}"
            rejected.append(sched.Outcome(sub.engine_id, None, error=err))
    return rejected


def _add_each(
    engine: Engine, items: Sequence[tuple[str, Mapping[str, Any]]], params: Any
) -> list[Exception | None]:
    """Add one by one; a rejection is that request's error, a dead engine raises."""
    errors: list[Exception | None] = []
    for engine_id, inputs in items:
        try:
            engine.add(engine_id, inputs, params)
            errors.append(None)
        except Exception as exc:
            if is_engine_dead(exc):
                raise
            errors.append(exc)
    return errors


Rebuild = Callable[[Engine], Engine]
"""Retire a failed engine and return a working replacement (may raise)."""


Feed = Callable[[int, bool], Sequence[VllmCaptionRequest] | None]
"""``feed(room, idle)``: up to ``room`` more stage-1 requests (any may be empty), ``None`` once no
more will ever come. ``idle``: nothing is queued or in flight, so the feed may wait briefly."""


@attrs.frozen
class Hooks:
    """What the driver calls for each request: the plugin's side, and the engine's replacement."""

    prepare: Callable[[sched.Job], Mapping[str, Any]]
    """The engine inputs of a job (stage 1 is checked here; a raise is that input's error)."""
    decode: Callable[[Finished], sched.Outcome]
    """A finished request's outcome (the plugin's ``decode``)."""
    refine: sched.Refine
    """The stage-2 request after a stage-1 caption (the plugin's ``make_refined_llm_request``)."""
    rebuild: Rebuild | None = None
    """Retire a lost engine and return its replacement; ``None``: a lost engine is not replaced."""


@attrs.frozen
class Policy:
    """How the driver runs: sampling, patience with a silent engine, rebuilds, read-ahead."""

    params: Any
    """vLLM ``SamplingParams`` for every request."""
    stall_timeout_s: float
    """An engine that finishes nothing for this long while it has work is lost."""
    max_retries: int = 0
    """Rebuilds per call (with :attr:`Hooks.rebuild`)."""
    lookahead: int = 0
    """Inputs asked of ``feed`` ahead, queued or in flight (0: ``state.max_inflight``, or 256)."""
    clock: Callable[[], float] = time.monotonic
    """Seconds, for the stall timeout (tests pass a fake clock)."""


def drive(
    engine: Engine,
    state: sched.SchedulerState,
    hooks: Hooks,
    policy: Policy,
    feed: Feed | None = None,
) -> Iterator[tuple[int, CaptionResult]]:
    """Run the scheduler on ``engine``; yield ``(index, result)`` as each input's result is final.

    The one driver: :func:`~vlmcap.caption_results`, :func:`~vlmcap.caption_stream`,
    :func:`~vlmcap.vllm_caption`, :class:`~vlmcap.Captioner`, the file job and the Ray engine
    actor all run on it.

    Ends once every input has a result and ``feed`` (if any) is exhausted. Results are released
    from the state as they are yielded, so a long stream holds only unfinished inputs. ``feed``
    is asked for more inputs whenever fewer than :attr:`Policy.lookahead` are queued or in
    flight, so the engine stays full across inputs that arrive over time.

    A request the engine rejects, or whose decode/refine fails, becomes that input's error.
    An engine whose ``add``/``step`` raises an engine-level error (``step`` raising anything, or
    ``add`` raising an ``EngineDeadError``), or that finishes nothing for
    :attr:`Policy.stall_timeout_s` while it has work, is lost: with :attr:`Hooks.rebuild`, up to
    :attr:`Policy.max_retries` times, it is replaced and only the requests in flight are
    resubmitted (:func:`~vlmcap._scheduler.requeue_inflight`); after that, or without a rebuild,
    the remaining inputs end with the cause as their error (a stream's later inputs then run on
    the same engine and fail the same way if it is gone).
    """
    clock = policy.clock
    last_progress = clock()
    retries = 0
    room_for = policy.lookahead or state.max_inflight or 256
    open_feed = feed is not None
    try:
        while open_feed or not sched.is_done(state):
            if feed is not None and open_feed:
                state, open_feed = _top_up(state, feed, room_for)
                if not (state.queue or state.inflight):
                    last_progress = clock()  # waiting for input is not a stall
                    continue
            state, subs = sched.admit(state)
            outcomes, lost = _run_step(engine, state, subs, policy.params, hooks)
            if outcomes:  # with a failure: the rejections seen before it
                state = sched.settle(state, outcomes, hooks.refine)
                last_progress = clock()
            elif lost is None and clock() - last_progress > policy.stall_timeout_s:
                lost = _stalled(engine, state, policy.stall_timeout_s)
            if lost is not None:
                state, engine, retries = _recover(
                    state, engine, lost, hooks.rebuild, retries, policy
                )
                last_progress = clock()
            state, done = sched.release(state)
            yield from done.items()
    except BaseException:  # the consumer stopped early or the feed failed: free the engine
        _abort_quietly(engine, state)
        raise
    if state.strays:
        log.warning("%d engine output(s) for unknown request ids were ignored", state.strays)


def _abort_quietly(engine: Engine, state: sched.SchedulerState) -> None:
    """Abort what is in flight (best effort): nobody will collect it."""
    if not state.inflight:
        return
    try:
        engine.abort(list(state.inflight))
    except Exception:
        log.exception("abort of the unfinished requests failed")


def _top_up(
    state: sched.SchedulerState, feed: Feed, room_for: int
) -> tuple[sched.SchedulerState, bool]:
    """Ask ``feed`` for inputs up to ``room_for`` queued or in flight; False once it is done."""
    pending = len(state.queue) + len(state.inflight)
    new = feed(max(room_for - pending, 0), pending == 0)
    if new is None:
        return state, False
    return sched.extend(state, new), True


def _run_step(
    engine: Engine,
    state: sched.SchedulerState,
    subs: Sequence[sched.Submission],
    params: Any,
    hooks: Hooks,
) -> tuple[list[sched.Outcome], str | None]:
    """Submit ``subs`` and step once: the outcomes, and the cause if the engine was lost."""
    outcomes: list[sched.Outcome] = []
    try:
        outcomes = _submit(engine, subs, params, hooks.prepare)
        if state.inflight.keys() - {o.engine_id for o in outcomes}:
            outcomes += [hooks.decode(f) for f in engine.step()]
    except Exception as exc:
        log.exception("engine failed")
        return outcomes, f"engine failed: {type(exc).__name__}: {exc}"
    return outcomes, None


def _stalled(engine: Engine, state: sched.SchedulerState, stall_timeout_s: float) -> str:
    """Abort what is in flight after a stall; the cause."""
    err = EngineStalledError(f"no request finished in {stall_timeout_s:g} s")
    try:
        engine.abort(list(state.inflight))
    except Exception:
        log.exception("abort after stall failed")
    return f"{type(err).__name__}: {err}"


def _recover(  # noqa: PLR0913 - state of one recovery, passed explicitly
    state: sched.SchedulerState,
    engine: Engine,
    cause: str,
    rebuild: Rebuild | None,
    retries: int,
    policy: Policy,
) -> tuple[sched.SchedulerState, Engine, int]:
    """Replace a lost engine and requeue what was in flight, or end the rest with ``cause``."""
    max_retries = policy.max_retries
    while rebuild is not None and retries < max_retries:
        retries += 1
        log.warning("engine lost (%s); rebuilding it, retry %d of %d", cause, retries, max_retries)
        try:
            new = rebuild(engine)
        except Exception as exc:
            log.exception("engine rebuild failed")
            cause = f"{cause}; rebuild {retries} failed: {type(exc).__name__}: {exc}"
            continue
        return sched.requeue_inflight(state), new, retries
    if rebuild is not None:
        cause += f" (gave up after {retries} engine rebuild(s), max_retries={max_retries})"
    return sched.abandon(state, cause), engine, retries
