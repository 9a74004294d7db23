"""What one benchmark mode achieved and cost: rates, vLLM's own cache counters, CPU time.

Shared by the synchronous modes (:mod:`vlmcap.bench._harness`) and the ``AsyncLLM`` peer drivers
(:mod:`vlmcap.bench._peers`). vLLM's counters are read from its Prometheus registry (what
``LLM.get_metrics()`` returns; the engine must be built with ``disable_log_stats=False``) before
and after a mode, and subtracted.
"""

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs


COUNTERS = (
    "vllm:prompt_tokens",
    "vllm:prompt_tokens_cached",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:mm_cache_queries",
    "vllm:mm_cache_hits",
    "vllm:generation_tokens",
    "vllm:num_preemptions",
)
"""vLLM counters recorded per mode (summed over their labels)."""


@attrs.frozen
class ModeResult:
    """What one mode achieved; ``outputs`` (vLLM ``RequestOutput``s) are not serialised."""

    clips: int
    wall_s: float
    prompt_tokens: int
    output_tokens: int
    errors: int
    extra: dict[str, Any] = attrs.field(factory=dict)
    outputs: Sequence[Any] = attrs.field(factory=list, eq=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, with rates."""
        return {
            "clips_per_s": self.clips / self.wall_s,
            "prompt_tokens_per_s": self.prompt_tokens / self.wall_s,
            "output_tokens_per_s": self.output_tokens / self.wall_s,
            "wall_s": self.wall_s,
            "clips": self.clips,
            "errors": self.errors,
            **self.extra,
        }


def count_tokens(outs: Iterable[Any]) -> tuple[int, int]:
    """Prompt and output tokens of finished ``RequestOutput``s."""
    p = o = 0
    for out in outs:
        p += len(out.prompt_token_ids or [])
        o += len(out.outputs[0].token_ids)
    return p, o


def counters(snapshot: Iterable[Any]) -> dict[str, float]:
    """The :data:`COUNTERS` of a vLLM metrics snapshot, each summed over its label sets."""
    out = dict.fromkeys(COUNTERS, 0.0)
    for metric in snapshot:
        value = getattr(metric, "value", None)
        if metric.name in out and isinstance(value, int | float):
            out[metric.name] += float(value)
    return out


def vllm_counters() -> dict[str, float]:
    """VLLM's counters now (zeros when vLLM's metrics are unavailable)."""
    from vlmcap._vllm_compat import metrics_snapshot

    return counters(metrics_snapshot())


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """``after - before`` per counter, keyed without the ``vllm:`` prefix."""
    return {k.removeprefix("vllm:"): after[k] - before[k] for k in before}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (vLLM's engine core)."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - vLLM depends on psutil
        return float("nan")
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # a child that ended meanwhile
            continue
        total += t.user + t.system
    return total


def video_reuse(outputs: Iterable[Any], vision_end_id: int) -> dict[str, float]:
    """How much of each request's video came from vLLM's prefix cache.

    A request's video span ends where ``<|vision_end|>`` sits in its (expanded) prompt; the
    request skipped the vision encoder when ``num_cached_tokens`` reaches that position.
    """
    requests = full = 0
    cached_total = span_max = 0
    for out in outputs:
        ids = list(getattr(out, "prompt_token_ids", None) or [])
        if vision_end_id not in ids:
            continue
        span = ids.index(vision_end_id)
        cached = int(getattr(out, "num_cached_tokens", 0) or 0)
        requests += 1
        cached_total += cached
        full += cached >= span
        span_max = max(span_max, span)
    return {
        "video_requests": requests,
        "video_span_tokens_max": span_max,
        "cached_tokens_per_request": cached_total / requests if requests else 0.0,
        "requests_video_from_prefix_cache": full,
    }


class Meter:
    """Started before a mode runs; :meth:`finish` adds what the mode cost to its result."""

    def __init__(self) -> None:
        """Read vLLM's counters, the CPU time and the clock now."""
        self._counters = vllm_counters()
        self._cpu = cpu_seconds()
        self._t0 = time.perf_counter()

    def finish(self, res: ModeResult, vision_end_id: int | None) -> ModeResult:
        """``res`` with vLLM's counter deltas, CPU cores busy and (video modes) prefix reuse."""
        elapsed = time.perf_counter() - self._t0
        extra = dict(res.extra)
        extra["vllm_counters"] = counter_delta(self._counters, vllm_counters())
        extra["cpu_cores_busy"] = (cpu_seconds() - self._cpu) / elapsed
        if vision_end_id is not None:
            extra.update(video_reuse(res.outputs, vision_end_id))
        return attrs.evolve(res, extra=extra, outputs=[])


def measured(run: Callable[[], ModeResult], vision_end_id: int | None) -> ModeResult:
    """Run one mode and add what it cost (:class:`Meter`)."""
    meter = Meter()
    return meter.finish(run(), vision_end_id)
