"""The in-flight scheduler: a pure state machine over immutable records.

``start`` builds the state from stage-1 requests; ``admit`` returns the submissions that fill the
engine up to ``max_inflight`` (all of them at once, not one per step); ``settle`` folds engine
outcomes in: a finished stage-1 request that asks for refinement becomes a stage-2 job at the
*front* of the queue (its frames are hot, and the window finishes sooner); anything else becomes
the final :class:`CaptionResult` of its input; ``requeue_inflight`` hands what was in flight
back to the queue when the engine is lost (the driver rebuilds it); ``extend`` appends inputs
that arrive while it runs and ``release`` hands finished results out (streams). No I/O, no
engine, no clock: the driver in ``_captioner`` feeds it.

Invariants (checked by Hypothesis in ``tests/test_scheduler_properties.py``):
- every input ends with exactly one result, at its own index;
- each input runs at most two stages;
- never more than ``max_inflight`` jobs in flight (0 = unlimited);
- token counts are the sum over the stages that ran.
"""

from collections.abc import Callable, Mapping, Sequence

import attrs

from vlmcap._records import CaptionResult, TokenCounts, VllmCaptionRequest


@attrs.frozen
class Job:
    """One request for one input, queued or in flight."""

    index: int
    stage: int
    request: VllmCaptionRequest
    retries: int = 0
    """Times this job was resubmitted after a retryable engine error."""


@attrs.frozen
class Submission:
    """An action: submit ``job`` to the engine under ``engine_id``."""

    engine_id: str
    job: Job


@attrs.frozen
class Outcome:
    """What became of one submitted request: a decoded caption, or an error."""

    engine_id: str
    caption: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    retryable: bool = False
    """The engine failed the request in a way a resubmission fixes (vLLM's multimodal cache
    drift ends a request with reason ``"error"`` and asks for a resend)."""


MAX_REQUEST_RETRIES = 2
"""Resubmissions of one job after retryable errors before its error is final."""


@attrs.frozen
class SchedulerState:
    """Everything the scheduler knows. Replace it, never mutate it."""

    total: int
    max_inflight: int
    barrier: bool
    queue: tuple[Job, ...]
    inflight: Mapping[str, Job]
    counts: Mapping[int, TokenCounts]
    results: Mapping[int, CaptionResult]
    serial: int = 0
    strays: int = 0
    """Outcomes for engine ids that were not in flight (ignored, counted)."""
    released: int = 0
    """Results handed out by :func:`release` (no longer held here)."""


Refine = Callable[[VllmCaptionRequest], VllmCaptionRequest]


def start(
    requests: Sequence[VllmCaptionRequest], *, max_inflight: int = 0, barrier: bool = False
) -> SchedulerState:
    """The initial state: one stage-1 job per request, in input order.

    Args:
        requests: stage-1 requests; ``stage2_prompt`` set on those to refine.
        max_inflight: most jobs in the engine at once; 0 means unlimited.
        barrier: static batching: admit a new batch only when nothing is in flight.
    """
    if max_inflight < 0:
        msg = f"max_inflight_requests={max_inflight} must be >= 0"
        raise ValueError(msg)
    return SchedulerState(
        total=len(requests),
        max_inflight=max_inflight,
        barrier=barrier,
        queue=tuple(Job(i, 1, r) for i, r in enumerate(requests)),
        inflight={},
        counts={},
        results={},
    )


def extend(state: SchedulerState, requests: Sequence[VllmCaptionRequest]) -> SchedulerState:
    """Append stage-1 jobs for more inputs (a stream); they get the next indices, in order.

    New inputs queue behind everything already queued (refinements and retries go to the
    front as usual), so earlier inputs finish first.
    """
    if not requests:
        return state
    jobs = tuple(Job(state.total + i, 1, r) for i, r in enumerate(requests))
    return attrs.evolve(state, total=state.total + len(requests), queue=(*state.queue, *jobs))


def is_done(state: SchedulerState) -> bool:
    """True once every input has its result."""
    return len(state.results) + state.released == state.total


def release(state: SchedulerState) -> tuple[SchedulerState, dict[int, CaptionResult]]:
    """Hand out the results held so far and forget them (and their token counts).

    A long stream stays small this way: the state holds only unfinished inputs.
    """
    if not state.results:
        return state, {}
    done = dict(state.results)
    counts = {i: c for i, c in state.counts.items() if i not in done}
    new = attrs.evolve(state, results={}, counts=counts, released=state.released + len(done))
    return new, done


def admit(state: SchedulerState) -> tuple[SchedulerState, tuple[Submission, ...]]:
    """Move queued jobs in flight, up to the limit; return them as submissions."""
    if state.barrier and state.inflight:
        return state, ()
    room = len(state.queue) if state.max_inflight == 0 else state.max_inflight - len(state.inflight)
    if room <= 0 or not state.queue:
        return state, ()
    taken, rest = state.queue[:room], state.queue[room:]
    subs = tuple(
        Submission(f"vlmcap-{state.serial + k}-{job.index}-s{job.stage}", job)
        for k, job in enumerate(taken)
    )
    inflight = dict(state.inflight)
    inflight.update((s.engine_id, s.job) for s in subs)
    new = attrs.evolve(state, queue=rest, inflight=inflight, serial=state.serial + len(subs))
    return new, subs


def _refine_or_fail(job: Job, outcome: Outcome, caption: str, refine: Refine) -> Job | str:
    done = attrs.evolve(
        job.request,
        caption=caption,
        prompt_tokens=outcome.prompt_tokens,
        output_tokens=outcome.output_tokens,
        finish_reason=outcome.finish_reason,
    )
    try:
        refined: object = refine(done)  # plugins may return anything; checked below
    except Exception as exc:  # noqa: BLE001 - a plugin fault stays with its input
        return f"make_refined_llm_request failed: {type(exc).__name__}: {exc}"
    if not isinstance(refined, VllmCaptionRequest):
        return f"make_refined_llm_request returned {type(refined).__name__}, not VllmCaptionRequest"
    return Job(job.index, 2, refined)


def settle(state: SchedulerState, outcomes: Sequence[Outcome], refine: Refine) -> SchedulerState:
    """Fold engine outcomes into the state.

    Args:
        state: the current state.
        outcomes: finished or failed submissions, any order.
        refine: builds the stage-2 request from a finished stage-1 request (the plugin's
            ``make_refined_llm_request``); an exception fails only that input.
    """
    if not outcomes:
        return state
    inflight = dict(state.inflight)
    counts = dict(state.counts)
    results = dict(state.results)
    refined: list[Job] = []
    retried: list[Job] = []
    strays = state.strays
    for out in outcomes:
        job = inflight.pop(out.engine_id, None)
        if job is None:
            strays += 1
            continue
        if out.retryable and job.retries < MAX_REQUEST_RETRIES:
            retried.append(attrs.evolve(job, retries=job.retries + 1))
            continue
        total = counts.get(job.index, TokenCounts()) + TokenCounts(
            out.prompt_tokens, out.output_tokens
        )
        counts[job.index] = total
        if out.error is not None or out.caption is None:
            err = out.error or "no caption"
            results[job.index] = CaptionResult.failure(
                f"stage {job.stage}: {err}", total, job.stage
            ).with_finish_reason(out.finish_reason)
            continue
        wants_refine = job.stage == 1 and job.request.stage2_prompt is not None
        if wants_refine and out.caption.strip():
            step = _refine_or_fail(job, out, out.caption, refine)
            if isinstance(step, Job):
                refined.append(step)
            else:
                results[job.index] = CaptionResult.failure(step, total, job.stage)
            continue
        result = CaptionResult.from_caption(out.caption, out.finish_reason, total, job.stage)
        if wants_refine:  # an empty stage-1 caption cannot be refined
            result = attrs.evolve(result, error=f"stage 1: {result.error}; stage 2 skipped")
        results[job.index] = result
    return attrs.evolve(
        state,
        queue=(*refined, *retried, *state.queue),
        inflight=inflight,
        counts=counts,
        results=results,
        strays=strays,
    )


def abandon(state: SchedulerState, error: str) -> SchedulerState:
    """End every queued and in-flight job with ``error`` (the engine died or stalled)."""
    results = dict(state.results)
    for job in (*state.inflight.values(), *state.queue):
        results[job.index] = CaptionResult.failure(
            f"stage {job.stage}: {error}", state.counts.get(job.index), job.stage
        )
    return attrs.evolve(state, queue=(), inflight={}, results=results)


def requeue_inflight(state: SchedulerState) -> SchedulerState:
    """Put every in-flight job back at the front of the queue (the engine was lost).

    Jobs keep their stage and request: a stage-2 job stays stage 2 with its refined request, so
    a rebuilt engine runs only what had not finished. Results, token counts of finished stages
    and the id serial are kept, so the resubmitted jobs get fresh engine ids and an output that
    still arrives under an old id counts as a stray. Order: admission order, ahead of the queue.
    """
    if not state.inflight:
        return state
    return attrs.evolve(state, queue=(*state.inflight.values(), *state.queue), inflight={})


def ordered_results(state: SchedulerState) -> list[CaptionResult]:
    """The results in input order (requires :func:`is_done`)."""
    if not is_done(state):
        msg = f"{state.total - len(state.results)} input(s) have no result yet"
        raise RuntimeError(msg)
    return [state.results[i] for i in range(state.total)]
