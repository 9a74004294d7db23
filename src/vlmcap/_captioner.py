"""The seed's public functions and the engine owner, as layers over :func:`vlmcap._driver.drive`.

``vllm_model``, ``auto_processor``, ``sampling_params``, ``make_model_inputs`` and
``vllm_caption`` keep cosmos-curate's names and positional signatures; ``caption_results``
is the typed variant of ``vllm_caption`` (one :class:`CaptionResult` per input), and
:class:`Captioner` owns an engine across calls and rebuilds it when it dies.
"""

import logging
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import attrs
import torch

from vlmcap import _scheduler as sched
from vlmcap._boundary import boundary
from vlmcap._contract import (
    PluginContractError,
    Video,
    attach_video_metadata,
    check_llm_input,
    check_refined_request,
    vocab_size_of,
)
from vlmcap._driver import Engine, Hooks, Policy, as_engine, drive
from vlmcap._errors import ConfigError, FrameContractError, MetadataError
from vlmcap._frames import Frames, check_frames
from vlmcap._plugin import (
    PluginClass,
    SupportsLoRA,
    call_make_llm_input,
    call_model,
    call_processor,
    frame_dtypes,
    plugin_label,
)
from vlmcap._prompts import check_prompt, get_stage2_prompt
from vlmcap._records import CaptionResult, VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._registry import get_plugin
from vlmcap._vllm_compat import (
    EngineAdapter,
    Finished,
    engine_start_shielded,
    make_sampling_params,
    shutdown_llm,
)


log = logging.getLogger("vlmcap")


def vllm_model(config: VllmConfig) -> Any:
    """Build the engine of ``config.model_variant``'s plugin.

    The engine's processes are kept out of Ctrl-C (:func:`engine_start_shielded`): an interrupt
    reaches the caller only, which stops the engine without a traceback from each process.
    """
    with engine_start_shielded():
        return call_model(get_plugin(config.model_variant), config)


def auto_processor(config: VllmConfig) -> Any:
    """Load the processor of ``config.model_variant``'s plugin."""
    return call_processor(get_plugin(config.model_variant), config)


def sampling_params(config: VllmConfig) -> Any:
    """``SamplingParams`` from ``config.sampling`` and ``config.max_output_tokens``."""
    return make_sampling_params(config)


@boundary
def make_model_inputs(
    videos: Sequence[Frames],
    config: VllmConfig,
    processor: Any,
    prompt: str,
    *,
    metadata: Sequence[VideoMetadata | None] | None = None,
) -> list[dict[str, Any]]:
    """One vLLM input per video, built by the plugin in its own form, with video metadata attached.

    Args:
        videos: ``(frames, 3, height, width)`` tensors, uint8 in [0, 255] or float in [0, 1].
            The plugin receives uint8 or float32 (:data:`vlmcap.SENT_FRAME_DTYPES`; other float
            dtypes are converted unless the plugin declares ``frame_dtypes``).
        config: selects the plugin.
        processor: from :func:`auto_processor`.
        prompt: the caption prompt.
        metadata: per video; ``None`` (or a ``None`` entry) means uniform frames at
            ``config.sampling_fps``. A guide-form plugin that declares ``metadata=`` gets the
            :class:`VideoMetadata`; a current-form plugin gets cosmos-curate's dict (``fps`` is
            the rate of the frames as sampled).

    Raises:
        FrameContractError: a video breaks the frame contract (named ``videos[i]``).
        MetadataError: metadata that does not match its video.
        PromptError: an empty or oversized prompt.
        PluginContractError: the plugin returned no dict (``[C-INPUT-001]``). Other broken
            rules of its output become that input's error when it is captioned.
    """
    check_prompt(prompt)
    if not _is_sequence(videos):
        got = f"a {type(videos).__name__}"
        raise FrameContractError("videos", "a sequence of frame tensors", got)
    if metadata is not None and not _is_sequence(metadata):
        raise MetadataError(f"metadata: expected a sequence, got a {type(metadata).__name__}")
    if metadata is not None and len(metadata) != len(videos):
        raise ConfigError(f"{len(metadata)=} != {len(videos)=}, must be the same length")
    plugin = get_plugin(config.model_variant)
    accepted = frame_dtypes(plugin)
    out = []
    for i, frames in enumerate(videos):
        check_frames(frames, f"videos[{i}]")
        md = metadata[i] if metadata is not None else None
        if md is not None and not isinstance(md, VideoMetadata):
            raise MetadataError(f"metadata[{i}]: expected VideoMetadata or None, got {md!r:.80}")
        height, width = int(frames.shape[2]), int(frames.shape[3])
        if md is None:
            md = VideoMetadata.uniform(
                int(frames.shape[0]), config.sampling_fps, width=width, height=height
            )
        elif md.width is None or md.height is None:
            md = attrs.evolve(md, width=width, height=height)
        md.check_matches(int(frames.shape[0]), f"metadata[{i}]")
        sent = frames if frames.dtype in accepted else frames.to(torch.float32)
        inputs = call_make_llm_input(plugin, prompt, sent, processor, metadata=md, config=config)
        if not isinstance(inputs, Mapping):
            raise PluginContractError(
                "C-INPUT-001",
                f"{plugin_label(plugin)}.make_llm_input returned a {type(inputs).__name__} for "
                f"videos[{i}]; return a dict with prompt_token_ids (or prompt) and "
                "multi_modal_data",
            )
        out.append(attach_video_metadata(inputs, md))
    return out


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _video_metadata(inputs: Mapping[str, Any], fallback_fps: float) -> VideoMetadata | None:
    """The metadata carried by an input's video, or uniform metadata for bare frames."""
    mm = inputs.get("multi_modal_data")
    video = Video.parse(mm["video"]) if isinstance(mm, Mapping) and "video" in mm else None
    if video is None:
        return None
    if video.metadata is not None:
        return VideoMetadata.from_mapping(video.metadata)
    n = video.num_frames
    return VideoMetadata.uniform(n, fallback_fps) if n else None


def _plugin_lora(plugin: PluginClass, config: VllmConfig) -> Any:
    """The LoRA adapter a plugin needs on every request (:class:`SupportsLoRA`), if any."""
    declared: object = plugin  # a class object: its class methods make up the protocol
    return declared.lora_request(config) if isinstance(declared, SupportsLoRA) else None


def _decode(plugin: PluginClass, fin: Finished) -> sched.Outcome:
    """The plugin's caption of a finished request, or that request's error."""
    if fin.error is not None:
        return sched.Outcome(fin.engine_id, None, None, 0, 0, error=fin.error)
    if fin.finish_reason == "error" and not fin.output_tokens:  # vLLM: resend (cache drift)
        err = "engine finished the request with reason 'error'"
        return sched.Outcome(fin.engine_id, None, "error", error=err, retryable=True)
    caption: object = None
    error = None
    if fin.finish_reason in ("abort", "error"):
        error = f"engine finished the request with reason {fin.finish_reason!r}"
    else:
        try:
            caption = cast("object", plugin.decode(fin.output))  # a broken plugin may not give str
        except Exception as exc:  # noqa: BLE001 - a plugin fault stays with its input
            error = f"decode failed: {type(exc).__name__}: {exc}"
        else:
            if not isinstance(caption, str):
                error = f"decode returned {type(caption).__name__}, not str"
    counts = (fin.finish_reason, fin.prompt_tokens, fin.output_tokens)
    if error is not None:
        return sched.Outcome(fin.engine_id, None, *counts, error=error)
    return sched.Outcome(fin.engine_id, str(caption), *counts)


def _retire(engine: Engine, llm: Any) -> None:
    """Best effort: stop a lost engine's render threads and processes before replacing it."""
    try:
        engine.close()
    except Exception:
        log.exception("closing the lost engine failed")
    shutdown_llm(llm)


def _check_model_inputs(model_inputs: object, max_inflight_requests: object) -> None:
    if not isinstance(max_inflight_requests, int) or max_inflight_requests < 0:
        raise ConfigError(f"{max_inflight_requests=} must be >= 0 (an int)")
    if not isinstance(model_inputs, Sequence) or isinstance(model_inputs, str | bytes):
        raise ConfigError(f"model_inputs: expected a sequence, got a {type(model_inputs).__name__}")
    for i, inp in enumerate(model_inputs):
        if not isinstance(inp, Mapping):
            raise ConfigError(
                f"model_inputs[{i}]: expected a mapping (from make_model_inputs), "
                f"got a {type(inp).__name__}"
            )


def _stage2_prompts(
    config: VllmConfig, stage2_prompts: Sequence[str | None] | None, n: int
) -> Sequence[str | None]:
    if stage2_prompts is None:
        prefix = get_stage2_prompt(config.stage2_prompt_text) if config.stage2_caption else None
        return [prefix] * n
    if not _is_sequence(stage2_prompts):
        raise ConfigError(f"stage2_prompts: expected a sequence, got {stage2_prompts!r:.80}")
    if len(stage2_prompts) != n:
        raise ConfigError(f"{len(stage2_prompts)=} != len(model_inputs)={n}, must be same length")
    for i, p in enumerate(stage2_prompts):
        if p is not None:
            check_prompt(p, f"stage2_prompts[{i}]")
    return stage2_prompts


@boundary
def caption_results(  # noqa: PLR0913 - the seed's signature
    model_inputs: Sequence[Mapping[str, Any]],
    llm: Any,
    processor: Any,
    sampling_params: Any,
    config: VllmConfig,
    max_inflight_requests: int = 0,
    *,
    inflight_batching: bool = True,
    stage2_prompts: Sequence[str | None] | None = None,
    on_result: Callable[[int, CaptionResult], None] | None = None,
    rebuild: Callable[[], Any] | None = None,
) -> list[CaptionResult]:
    """Caption ``model_inputs``; one :class:`CaptionResult` per input, in input order.

    Args:
        model_inputs: from :func:`make_model_inputs`.
        llm: from :func:`vllm_model` (or any object with ``add``/``step``/``abort``).
        processor: from :func:`auto_processor`.
        sampling_params: from :func:`sampling_params`.
        config: selects the plugin; ``stall_timeout_s``; ``batch_size`` for the static path;
            ``max_retries`` for ``rebuild``.
        max_inflight_requests: most requests in the engine at once (stage 1 and 2 together);
            0 means unlimited. Ignored on the static path.
        inflight_batching: ``True``: continuous batching, stage-2 requests start as soon as
            their stage-1 caption is done. ``False``: batches of ``config.batch_size``, each
            run to completion before the next.
        stage2_prompts: per input, a refinement prefix or ``None``. ``None`` for the whole
            argument means the config's ``stage2_caption`` decides (default prompt for all).
        on_result: called once per input as its result is final (progress reporting).
        rebuild: makes a new engine (e.g. ``lambda: vllm_model(config)``) when this one dies or
            stalls. vlmcap first shuts the lost engine down (:func:`shutdown_llm`, which frees
            its GPU memory; the caller's ``llm`` is then unusable), calls ``rebuild()``, and
            resubmits only the requests that had not finished; at most ``config.max_retries``
            times per call. The new engine is used for the rest of this call only: keep what
            ``rebuild`` returns for later calls, or use :class:`Captioner`, which does.
            ``None`` (default): no rebuild; a lost engine ends the unfinished inputs with
            errors, as before.
    """
    _check_model_inputs(model_inputs, max_inflight_requests)
    stage2_prompts = _stage2_prompts(config, stage2_prompts, len(model_inputs))
    run = _Run(llm, processor, config, rebuild)
    requests = [run.request(inp, p) for inp, p in zip(model_inputs, stage2_prompts, strict=True)]
    if inflight_batching:
        state = sched.start(requests, max_inflight=max_inflight_requests)
    else:
        state = sched.start(requests, max_inflight=config.batch_size, barrier=True)
    got: dict[int, CaptionResult] = {}
    try:
        for index, result in drive(run.engine, state, run.hooks(), run.policy(sampling_params)):
            got[index] = result
            if on_result is not None:
                on_result(index, result)
    finally:
        run.close()
    return [got[i] for i in range(state.total)]


@boundary
def caption_stream(  # noqa: PLR0913 - caption_results' arguments
    model_inputs: Iterable[Mapping[str, Any] | None],
    llm: Any,
    processor: Any,
    sampling_params: Any,
    config: VllmConfig,
    max_inflight_requests: int = 256,
    *,
    rebuild: Callable[[], Any] | None = None,
) -> Generator[tuple[int, CaptionResult], None, None]:
    """Caption inputs as they arrive; yield ``(index, result)`` as each one is final.

    The streaming form of :func:`caption_results` for inputs that come over time (a decoder, a
    queue): the engine is topped up to ``max_inflight_requests`` inputs whenever a caption
    finishes, so it never drains between batches. ``index`` counts the inputs from 0 in
    arrival order; results come in completion order. Stage 2 follows ``config.stage2_caption``.

    Args:
        model_inputs: from :func:`make_model_inputs`, one at a time. An item ``None`` means
            "nothing available yet": vlmcap steps the engine and asks again (an iterator fed
            by another thread should yield ``None`` at once rather than wait, so the engine
            keeps running; with nothing to step, vlmcap waits a few milliseconds itself).
        llm: from :func:`vllm_model` (or any object with ``add``/``step``/``abort``).
        processor: from :func:`auto_processor`.
        sampling_params: from :func:`sampling_params`.
        config: selects the plugin; stage 2, ``stall_timeout_s``, ``max_retries``.
        max_inflight_requests: inputs queued or in flight at once (stage 2 included), >= 1.
        rebuild: makes a new engine when this one dies or stalls (as in
            :func:`caption_results`).

    Raises:
        ConfigError: ``max_inflight_requests`` < 1, or an item is not a mapping (when it is
            reached; the inputs before it keep their results).

    Closing the generator early (or an exception) aborts the requests still in the engine.
    """
    if max_inflight_requests < 1:
        raise ConfigError(f"{max_inflight_requests=} must be >= 1 for a stream")
    prefix = get_stage2_prompt(config.stage2_prompt_text) if config.stage2_caption else None
    run = _Run(llm, processor, config, rebuild)
    items = iter(model_inputs)

    def feed(room: int, idle: bool) -> list[VllmCaptionRequest] | None:
        new: list[VllmCaptionRequest] = []
        while len(new) < room:
            item = next(items, _END)
            if item is _END:
                return new or None
            if item is None:
                if idle and not new:
                    time.sleep(_IDLE_WAIT_S)  # nothing to step: don't spin
                break
            if not isinstance(item, Mapping):
                raise ConfigError(
                    f"model_inputs[{run.count}]: expected a mapping (from make_model_inputs), "
                    f"got a {type(item).__name__}"
                )
            new.append(run.request(item, prefix))
        return new

    try:
        state = sched.start([], max_inflight=max_inflight_requests)
        hooks, policy = run.hooks(), run.policy(sampling_params)
        for index, result in drive(run.engine, state, hooks, policy, feed):
            run.forget(index)
            yield index, result
    finally:
        run.close()


_END: Any = object()
_IDLE_WAIT_S = 0.005


class _Run:
    """What one caption call shares: the plugin, per-input metadata, the (replaceable) engine."""

    def __init__(
        self, llm: Any, processor: Any, config: VllmConfig, rebuild: Callable[[], Any] | None
    ) -> None:
        self.plugin = get_plugin(config.model_variant)
        self.processor = processor
        self.vocab_size = vocab_size_of(processor)
        self.config = config
        self.metadata: dict[int, VideoMetadata | None] = {}
        self.count = 0
        """Inputs so far."""
        self.current = llm
        self.lora = _plugin_lora(self.plugin, config)
        self.engine = as_engine(llm, self.lora)
        self._rebuild = rebuild

    def request(self, inputs: Mapping[str, Any], stage2: str | None) -> VllmCaptionRequest:
        """The stage-1 request of the next input."""
        i = self.count
        self.count += 1
        self.metadata[i] = _video_metadata(inputs, self.config.sampling_fps)
        return VllmCaptionRequest(request_id=f"vlmcap-{i}", inputs=inputs, stage2_prompt=stage2)

    def forget(self, index: int) -> None:
        """Drop what was kept for a finished input (streams)."""
        self.metadata.pop(index, None)

    def prepare(self, job: sched.Job) -> Mapping[str, Any]:
        """The request's inputs with metadata; stage 1 is validated here, stage 2 in refine.

        A broken rule raises with its ID, which becomes that input's error.
        """
        inputs = job.request.inputs
        if job.stage == 1:
            inputs = check_llm_input(inputs, self.vocab_size)
        md = self.metadata[job.index]
        return inputs if md is None else attach_video_metadata(inputs, md)

    def refine(self, request: VllmCaptionRequest) -> VllmCaptionRequest:
        """The plugin's stage-2 request, validated (C-REFINE-001/002/003/009)."""
        refined: object = self.plugin.make_refined_llm_request(
            request, self.processor, request.stage2_prompt
        )
        return check_refined_request(request, refined, self.vocab_size)

    def decode(self, fin: Finished) -> sched.Outcome:
        return _decode(self.plugin, fin)

    def hooks(self) -> Hooks:
        """The call's :class:`Hooks` (a rebuild only when the caller gave a factory)."""
        rebuild = self.replace if self._rebuild is not None else None
        return Hooks(self.prepare, self.decode, self.refine, rebuild)

    def policy(self, params: Any) -> Policy:
        """The call's :class:`Policy`, from the config."""
        return Policy(params, self.config.stall_timeout_s, self.config.max_retries)

    def replace(self, lost: Engine) -> Engine:
        if self._rebuild is None:  # pragma: no cover - drive only calls this with a rebuild
            raise ConfigError("no rebuild factory")
        _retire(lost, self.current)
        self.current = self._rebuild()
        self.engine = as_engine(self.current, self.lora)
        return self.engine

    def close(self) -> None:
        """Stop an engine adapter made here for a rebuilt engine."""
        if self.engine is not self.current and isinstance(self.engine, EngineAdapter):
            self.engine.close()


class Captioner:
    """Owns one engine across calls and rebuilds it when it dies (the recovering entry point).

    API choice: recovery needs someone who may shut an engine down and build a new one, and
    who keeps the new one for the next call. ``caption_results(..., rebuild=...)`` does the
    first for one call; this class also owns the engine, so a rebuilt engine is not handed back
    through a side channel and nothing leaks::

        with vlmcap.Captioner(config) as cap:
            results = cap.caption(vlmcap.make_model_inputs(videos, config, cap.processor, p))
            redo = [i for i, r in enumerate(results) if not r.ok]  # resume: retry only these

    Args:
        config: selects the plugin; ``max_retries`` bounds rebuilds per :meth:`caption` call.
        llm: an engine to start with (taken over: :meth:`close` shuts it down); default
            ``build()``.
        processor: default :func:`auto_processor` of ``config``.
        sampling_params: default :func:`sampling_params` of ``config``.
        build: makes an engine; default ``vllm_model(config)`` (the plugin's ``model``).
        owns_engine: ``False`` leaves the given ``llm`` running at :meth:`close` (the caller
            keeps it); an engine built here, first or after a loss, is always shut down.
    """

    @boundary
    def __init__(  # noqa: PLR0913 - the owned engine's parts, all keyword-only
        self,
        config: VllmConfig,
        *,
        llm: Any = None,
        processor: Any = None,
        sampling_params: Any = None,
        build: Callable[[], Any] | None = None,
        owns_engine: bool = True,
    ) -> None:
        self.config = config
        self._build: Callable[[], Any] = build or (lambda: vllm_model(config))
        self._owns = owns_engine or llm is None
        self._llm: Any = llm if llm is not None else self._build()
        self.processor: Any = processor if processor is not None else auto_processor(config)
        self.sampling_params: Any = (
            sampling_params if sampling_params is not None else make_sampling_params(config)
        )
        self.rebuilds = 0
        """Engines built to replace a lost one, over this object's life."""

    @property
    def llm(self) -> Any:
        """The current engine (a new object after a rebuild)."""
        return self._llm

    def _rebuild(self) -> Any:
        self._llm = None  # the old one is shut down; never hand it out again
        self._llm = self._build()
        self._owns = True
        self.rebuilds += 1
        return self._llm

    @boundary
    def caption(
        self,
        model_inputs: Sequence[Mapping[str, Any]],
        max_inflight_requests: int = 0,
        *,
        inflight_batching: bool = True,
        stage2_prompts: Sequence[str | None] | None = None,
        on_result: Callable[[int, CaptionResult], None] | None = None,
    ) -> list[CaptionResult]:
        """:func:`caption_results` on the owned engine, rebuilding it if it dies or stalls."""
        if self._llm is None:
            self._llm = self._build()  # closed, or a rebuild failed last time: try again
        return caption_results(
            model_inputs,
            self._llm,
            self.processor,
            self.sampling_params,
            self.config,
            max_inflight_requests,
            inflight_batching=inflight_batching,
            stage2_prompts=stage2_prompts,
            on_result=on_result,
            rebuild=self._rebuild,
        )

    @boundary
    def stream(
        self, model_inputs: Iterable[Mapping[str, Any] | None], max_inflight_requests: int = 256
    ) -> Generator[tuple[int, CaptionResult], None, None]:
        """:func:`caption_stream` on the owned engine, rebuilding it if it dies or stalls.

        ``config.max_retries`` bounds the rebuilds over the whole stream.
        """
        if self._llm is None:
            self._llm = self._build()
        return caption_stream(
            model_inputs,
            self._llm,
            self.processor,
            self.sampling_params,
            self.config,
            max_inflight_requests,
            rebuild=self._rebuild,
        )

    def close(self) -> None:
        """Shut the engine down (best effort); a later :meth:`caption` builds a new one.

        A caller's engine given with ``owns_engine=False`` is left running.
        """
        llm, self._llm = self._llm, None
        if llm is not None and self._owns:
            shutdown_llm(llm)
        self._owns = True  # whatever is built after this is ours

    def __enter__(self) -> "Captioner":  # noqa: PYI034 - beartype (the test hook) rejects Self here
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@boundary
def vllm_caption(  # noqa: PLR0913 - the seed's signature
    model_inputs: Sequence[Mapping[str, Any]],
    llm: Any,
    processor: Any,
    sampling_params: Any,
    config: VllmConfig,
    max_inflight_requests: int,
    *,
    inflight_batching: bool,
    stage2_prompts: Sequence[str | None] | None = None,
) -> list[str]:
    """The seed's entry point: one caption string per input, ``"Unknown caption"`` for failures.

    See :func:`caption_results` for the arguments and for the typed results with status,
    finish reason, token counts and error messages.
    """
    results = caption_results(
        model_inputs,
        llm,
        processor,
        sampling_params,
        config,
        max_inflight_requests,
        inflight_batching=inflight_batching,
        stage2_prompts=stage2_prompts,
    )
    return [r.as_seed_string() for r in results]
