"""What a plugin for vLLM needs beyond its model's own rules: one copy for every plugin.

The first-party plugins are written on it and a third-party plugin may be:

- **Engine arguments**: :func:`engine_kwargs` turns a :class:`~vlmcap.VllmConfig` into
  ``vllm.LLM(...)`` arguments with the rules every plugin follows (defaults below, ``num_gpus``,
  ``max_model_len``, ``gpu_memory_utilization``, ``disable_mmcache``, ``compile_mm_encoder``,
  ``fp8``, and batches of one whole context on vLLM's CPU build); a plugin adds what its model
  needs. :func:`refuse_image_input` is the one refusal of ``use_image_input`` for video-only
  plugins.
- **Media**: :func:`split_video` reads any of vLLM's video forms, :func:`video_with_metadata`
  makes the ``(uint8 frames, metadata dict)`` pair vLLM's video processors take,
  :func:`frames_as_images` makes RGB images for image-only models.
- **Prompts**: :func:`chat_token_ids` renders one chat turn with the processor's template.
- **Stage 2**: :func:`stage1_media` takes the stage-1 caption and the very media object to refine
  over; :func:`refined_request` wraps new inputs in a request with a fresh id;
  :func:`refined_chat_request` is both for a plugin whose stage 2 is "refine prompt + caption,
  over the same video".
- **Decoding**: :func:`first_text` and :func:`without_think` for :meth:`decode`.
"""

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlmcap._errors import PluginError, UnsupportedSettingError
from vlmcap._frames import Frames, check_frames, to_uint8
from vlmcap._prompts import DEFAULT_STAGE2_PROMPT
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._vllm_compat import is_cpu_platform


__all__ = [
    "DEFAULT_FPS",
    "GPU_MEMORY_UTILIZATION",
    "MAX_MODEL_LEN",
    "MAX_NUM_BATCHED_TOKENS",
    "MM_CACHE_GB",
    "chat_token_ids",
    "engine_kwargs",
    "first_text",
    "frames_as_images",
    "refined_chat_request",
    "refined_request",
    "refuse_image_input",
    "split_video",
    "stage1_media",
    "video_with_metadata",
    "without_think",
]

MAX_MODEL_LEN = 32768
"""Context length unless the config sets one (cosmos-curate's for its video models)."""
MAX_NUM_BATCHED_TOKENS = 32768
"""Tokens per engine step on a GPU (at least a whole context: a video prompt is never split)."""
GPU_MEMORY_UTILIZATION = 0.85
MM_CACHE_GB = 4.0
"""vLLM's multimodal processor cache (``disable_mmcache`` sets it to 0)."""
DEFAULT_FPS = 2.0
"""Frame rate of bare frames' metadata when no config gives ``sampling_fps``."""


def refuse_image_input(variant: str, config: VllmConfig) -> None:
    """Raise :class:`UnsupportedSettingError` for ``use_image_input`` (a video-only plugin)."""
    if config.use_image_input:
        raise UnsupportedSettingError(
            f"the {variant} plugin captions video; use_image_input=True is not supported"
        )


def engine_kwargs(  # noqa: PLR0913 - the model's own settings, all optional
    model_path: Path | str,
    config: VllmConfig,
    *,
    limit_mm_per_prompt: Mapping[str, int],
    max_model_len: int | None = MAX_MODEL_LEN,
    gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION,
    whole_context_batches: bool = False,
    **model_kwargs: Any,
) -> dict[str, Any]:
    """``vllm.LLM(...)`` arguments for ``config``: the shared rules, then ``model_kwargs``.

    Args:
        model_path: the checkpoint folder.
        config: every engine setting in it is honoured (refusals are the plugin's).
        limit_mm_per_prompt: the model's items per prompt (0 switches a modality off).
        max_model_len: the context length unless ``config.max_model_len`` sets one; ``None``
            leaves it to the model.
        gpu_memory_utilization: the model's fraction unless the config sets one.
        whole_context_batches: batch exactly one context per step (the CPU rule, everywhere).
        model_kwargs: the model's own arguments (``trust_remote_code``, ``mm_processor_kwargs``,
            ``enable_lora``...), added last.
    """
    length = config.max_model_len or max_model_len
    kwargs: dict[str, Any] = {
        "model": str(model_path),
        "tensor_parallel_size": config.num_gpus,
        "gpu_memory_utilization": config.gpu_memory_utilization or gpu_memory_utilization,
        "limit_mm_per_prompt": dict(limit_mm_per_prompt),
        "mm_processor_cache_gb": 0.0 if config.disable_mmcache else MM_CACHE_GB,
    }
    if length is not None:
        kwargs["max_model_len"] = length
    # One video prompt is never split across steps, so a step holds at least a whole context;
    # on vLLM's CPU build (and where asked) exactly one, to bound its RAM.
    if whole_context_batches or is_cpu_platform():
        if length is not None:
            kwargs["max_num_batched_tokens"] = length
    else:
        kwargs["max_num_batched_tokens"] = max(MAX_NUM_BATCHED_TOKENS, config.max_model_len or 0)
    if config.compile_mm_encoder:  # vLLM compiles the encoder where the model supports it
        kwargs["compilation_config"] = {"compile_mm_encoder": True}
    if config.fp8:
        kwargs["quantization"] = "fp8"
    kwargs.update(model_kwargs)
    return kwargs


def split_video(video: Any) -> tuple[Any, dict[str, Any] | None]:
    """``(frames, metadata dict)`` from any of vLLM's video forms (bare, tuple, one-item list)."""
    if isinstance(video, list) and len(video) == 1:
        video = video[0]
    if isinstance(video, tuple) and len(video) == 2:
        frames, md = video
        return frames, dict(md)
    return video, None


def video_with_metadata(
    frames: Frames,
    *,
    metadata: VideoMetadata | None = None,
    config: VllmConfig | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(uint8 frames at their own size, vLLM metadata dict)``: what vLLM's video processors take.

    Metadata comes from ``metadata``, else from a ``(frames, metadata)`` pair, else uniform at
    ``config.sampling_fps`` (:data:`DEFAULT_FPS` without a config); its width and height are
    the frames'.
    """
    raw, md = split_video(frames)
    video = to_uint8(check_frames(raw, "frames"))
    if metadata is not None:
        md = metadata.to_vllm()
    if md is None:
        fps = config.sampling_fps if config is not None else DEFAULT_FPS
        md = VideoMetadata.uniform(int(video.shape[0]), fps).to_vllm()
    return video, {**md, "width": int(video.shape[3]), "height": int(video.shape[2])}


def frames_as_images(frames: Frames, count: int | None = None) -> list[Image.Image]:
    """``count`` evenly spaced frames (all, if fewer or ``None``) as RGB PIL images."""
    video = to_uint8(check_frames(frames, "frames"))
    n = int(video.shape[0])
    if count is None or n <= count:
        picks: list[int] = list(range(n))
    else:
        picks = torch.linspace(0, n - 1, count).round().long().tolist()
    return [Image.fromarray(video[i].permute(1, 2, 0).contiguous().numpy()) for i in picks]


def chat_token_ids(
    processor: Any,
    prompt: str,
    *,
    kind: str = "video",
    system: str | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> list[int]:
    """Token ids of a one-turn chat with a ``kind`` placeholder followed by ``prompt``.

    ``template_kwargs`` are passed to the chat template (``{"enable_thinking": False}``); those
    the template never names are left out (transformers would hand them to the processor).
    """
    template = str(getattr(processor, "chat_template", None) or "")
    switches = {k: v for k, v in (template_kwargs or {}).items() if k in template}
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]})
    ids = processor.apply_chat_template(
        messages,
        add_generation_prompt=True,
        tokenize=True,
        return_tensors="pt",
        **switches,
    )
    if not isinstance(ids, torch.Tensor):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(t) for t in ids[0].tolist()]


def stage1_media(request: VllmCaptionRequest, key: str = "video") -> tuple[str, Any]:
    """The stage-1 caption and the multimodal item (``multi_modal_data[key]``) to refine over.

    Raises:
        ValueError: the request has no caption (stage 2 needs it).
        PluginError: the request's inputs carry no ``multi_modal_data[key]``.
    """
    if request.caption is None:
        msg = "request caption is None: stage 2 needs the stage-1 caption"
        raise ValueError(msg)
    mm = request.inputs.get("multi_modal_data")
    if not isinstance(mm, Mapping) or key not in mm:
        msg = f"request inputs have no multi_modal_data[{key!r}] to refine over"
        raise PluginError(msg)
    return request.caption, mm[key]


def refined_request(inputs: Mapping[str, Any]) -> VllmCaptionRequest:
    """A stage-2 request for ``inputs``: a fresh id, no caption, no stage-2 prompt.

    The caption and prompt stay unset, so the engine generates a new caption (plugin guide,
    common bug 1).
    """
    return VllmCaptionRequest(request_id=secrets.token_hex(8), inputs=dict(inputs))


def refined_chat_request(
    request: VllmCaptionRequest,
    processor: Any,
    refine_prompt: str | None,
    *,
    default_prompt: str = DEFAULT_STAGE2_PROMPT,
    template_kwargs: Mapping[str, Any] | None = None,
) -> VllmCaptionRequest:
    """Stage 2 as most plugins do it: refine prompt + stage-1 caption over the very same video.

    The prompt (``refine_prompt``, else ``default_prompt``) is rendered by
    :func:`chat_token_ids` with ``template_kwargs``.
    """
    caption, video = stage1_media(request)
    text = (default_prompt if refine_prompt is None else refine_prompt) + caption
    ids = chat_token_ids(processor, text, template_kwargs=template_kwargs)
    return refined_request({"prompt_token_ids": ids, "multi_modal_data": {"video": video}})


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def first_text(vllm_output: Any) -> str:
    """The first completion's text, stripped: :meth:`decode` for most plugins."""
    return str(vllm_output.outputs[0].text).strip()


def without_think(vllm_output: Any) -> str:
    """The first completion's text without a ``<think>...</think>`` block, stripped."""
    return _THINK.sub("", str(vllm_output.outputs[0].text)).strip()
