"""Peer drivers: vLLM's ``AsyncLLM`` with one ``generate`` task per clip under a semaphore.

This is how cosmos-curator 2.x (cosmos-curate's successor) and Ray Data LLM drive vLLM: every
clip is an asyncio task that holds one slot of an ``asyncio.Semaphore(N)`` while its request
runs, and (two stages) issues its stage-2 request from the same task when stage 1 ends. The
engine gets the same settings as vlmcap's; the ``tuned`` variant additionally renders with 4
threads, which vLLM allows only with the multimodal processor cache off.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from vlmcap import _vllm_compat
from vlmcap.bench._stats import Meter, ModeResult, count_tokens


TUNED = {"renderer_num_workers": 4, "mm_processor_cache_gb": 0.0}
"""Engine settings of the tuned peer on top of the shared ones."""

Refine = Callable[[Any, Mapping[str, Any]], dict[str, Any]]
"""(stage-1 output, stage-1 inputs) -> stage-2 inputs."""


def build_async_llm(kwargs: Mapping[str, Any]) -> Any:
    """A ``vllm.v1.engine.async_llm.AsyncLLM`` from ``LLM(...)``-style keyword arguments."""
    return _vllm_compat.build_async_llm(kwargs)


async def _final(stream: AsyncIterator[Any]) -> Any:
    last = None
    async for out in stream:
        last = out
    return last


async def drive(  # noqa: PLR0913 - the peer driver's knobs
    engine: Any,
    inputs: Sequence[Mapping[str, Any]],
    params: Any,
    limit: int,
    *,
    tag: str,
    refine: Refine | None = None,
) -> list[Any]:
    """Caption ``inputs``: one task per clip, at most ``limit`` at a time; finished outputs."""
    slots = asyncio.Semaphore(limit)

    async def one(i: int, inp: Mapping[str, Any]) -> list[Any]:
        async with slots:
            first = await _final(engine.generate(dict(inp), params, f"{tag}-{i}"))
            if refine is None:
                return [first]
            second = await _final(engine.generate(refine(first, inp), params, f"{tag}-{i}-s2"))
            return [first, second]

    per_clip = await asyncio.gather(*(one(i, x) for i, x in enumerate(inputs)))
    return [out for outs in per_clip for out in outs]


async def _reset(engine: Any) -> None:
    for name in ("reset_prefix_cache", "reset_mm_cache"):
        fn = getattr(engine, name, None)
        if fn is not None:
            await fn()


async def _timed(  # noqa: PLR0913 - one timed peer run
    engine: Any,
    inputs: Sequence[Mapping[str, Any]],
    params: Any,
    limit: int,
    tag: str,
    refine: Refine | None,
) -> ModeResult:
    t0 = time.perf_counter()
    outs = await drive(engine, inputs, params, limit, tag=tag, refine=refine)
    wall = time.perf_counter() - t0
    p, o = count_tokens(outs)
    return ModeResult(len(inputs), wall, p, o, 0, {"semaphore": limit}, outs)


def run_phase(  # noqa: PLR0913 - one engine's worth of peer runs
    kwargs: Mapping[str, Any],
    runs: Iterable[tuple[str, int, bool]],
    make_inputs: Callable[[int], list[dict[str, Any]]],
    params: Any,
    refine: Refine,
    vision_end_id: int | None,
    report: Callable[[str, ModeResult], None],
) -> float:
    """Run peer modes on one ``AsyncLLM`` built from ``kwargs``; its start time in seconds.

    Warms the engine up, runs each ``(name, N, two_stage)`` of ``runs`` on fresh clips
    (``make_inputs(k)``; caches reset between runs), reports each measured result and shuts
    the engine down.

    ``runs`` is consumed lazily: an entry may depend on results reported before it.
    """

    async def phase() -> float:
        t0 = time.perf_counter()
        engine = build_async_llm(kwargs)
        start_s = time.perf_counter() - t0
        try:
            await drive(engine, make_inputs(-1), params, 8, tag="warm")
            for k, (name, limit, two_stage) in enumerate(runs):
                await _reset(engine)
                inputs = make_inputs(k)
                meter = Meter()
                res = await _timed(
                    engine, inputs, params, limit, name, refine if two_stage else None
                )
                del inputs
                report(name, meter.finish(res, vision_end_id))
        finally:
            engine.shutdown()
        return start_s

    return asyncio.run(phase())
