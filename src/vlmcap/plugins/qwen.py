"""Qwen2.5-VL-7B-Instruct, written the way a third-party plugin would be.

Video goes in as ``(uint8 frames, metadata)`` with a token-id prompt from the chat template.
With ``preprocess=False`` (default) vlmcap resizes frames on the client to the processor's
28-aligned grid and the engine skips resizing; with ``preprocess=True`` the processor inside
vLLM resizes. Rescaling and normalisation always happen in the processor, so the bytes shipped to
the engine stay uint8 (4x smaller than float32).
"""

import secrets
from collections.abc import Mapping
from typing import Any

import torch

from vlmcap._errors import PluginError, UnsupportedSettingError
from vlmcap._frames import Frames, check_frames, to_uint8
from vlmcap._plugin import VllmPlugin
from vlmcap._prompts import DEFAULT_STAGE2_PROMPT
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._resize import resize_frames, smart_resize
from vlmcap._vllm_compat import build_llm, is_cpu_platform


MAX_MODEL_LEN = 32768
MAX_NUM_BATCHED_TOKENS = 32768
GPU_MEMORY_UTILIZATION = 0.85
MM_CACHE_GB = 4.0
GRID = 28


def chat_token_ids(
    processor: Any, prompt: str, *, kind: str = "video", system: str | None = None
) -> list[int]:
    """Token ids of a one-turn chat with a vision placeholder followed by ``prompt``."""
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]})
    ids = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_tensors="pt"
    )
    if not isinstance(ids, torch.Tensor):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(t) for t in ids[0].tolist()]


def _pixel_budget(processor: Any) -> tuple[int, int]:
    vp = getattr(processor, "video_processor", None)
    size: Mapping[str, Any] = getattr(vp, "size", None) or {}
    lo = int(size.get("shortest_edge", getattr(vp, "min_pixels", 128 * GRID * GRID)))
    hi = int(size.get("longest_edge", getattr(vp, "max_pixels", 768 * GRID * GRID)))
    return lo, hi


def to_model_frames(frames: Any, processor: Any, *, client_resize: bool) -> torch.Tensor:
    """uint8 frames, resized to the processor's grid when the client does the resizing."""
    video = to_uint8(check_frames(frames, "frames"))
    if client_resize:
        lo, hi = _pixel_budget(processor)
        h, w = smart_resize(
            int(video.shape[2]), int(video.shape[3]), factor=GRID, min_pixels=lo, max_pixels=hi
        )
        video = resize_frames(video, h, w)
    return video


def split_video(video: Any) -> tuple[Any, dict[str, Any] | None]:
    """``(frames, metadata dict)`` from any of vLLM's video forms (bare, tuple, one-item list)."""
    if isinstance(video, list) and len(video) == 1:
        video = video[0]
    if isinstance(video, tuple) and len(video) == 2:
        frames, md = video
        return frames, dict(md)
    return video, None


def client_video(
    frames: Any,
    processor: Any,
    *,
    metadata: VideoMetadata | None,
    config: VllmConfig | None,
) -> Any:
    """The video for vLLM: uint8 frames, with metadata when given or carried by ``frames``.

    Frames are resized on the client to the processor's grid unless ``config.preprocess``.
    """
    raw, md = split_video(frames)
    client_resize = config is None or not config.preprocess
    video = to_model_frames(raw, processor, client_resize=client_resize)
    if metadata is not None:
        md = metadata.to_vllm()
    if md is None:
        return video
    return video, {**md, "width": int(video.shape[3]), "height": int(video.shape[2])}


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


class VllmQwen7B(VllmPlugin):
    """Qwen/Qwen2.5-VL-7B-Instruct."""

    @staticmethod
    def model_variant() -> str:
        """``"qwen"``."""
        return "qwen"

    @classmethod
    def processor(cls) -> Any:
        """The checkpoint's processor."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(cls.model_path())

    @classmethod
    def engine_kwargs(cls, config: VllmConfig) -> dict[str, Any]:
        """The ``LLM(...)`` arguments for ``config``; every setting is honoured or refused."""
        if config.use_image_input:
            raise UnsupportedSettingError(
                "the qwen plugin captions video; use_image_input=True is not supported yet"
            )
        kwargs: dict[str, Any] = {
            "model": str(cls.model_path(config)),
            "tensor_parallel_size": config.num_gpus,
            "max_model_len": config.max_model_len or MAX_MODEL_LEN,
            "max_num_batched_tokens": max(MAX_NUM_BATCHED_TOKENS, config.max_model_len or 0),
            "gpu_memory_utilization": config.gpu_memory_utilization or GPU_MEMORY_UTILIZATION,
            "limit_mm_per_prompt": {"video": 1, "image": 0},
            "mm_processor_cache_gb": 0.0 if config.disable_mmcache else MM_CACHE_GB,
            "mm_processor_kwargs": {} if config.preprocess else {"do_resize": False},
        }
        if config.fp8:
            kwargs["quantization"] = "fp8"
        if is_cpu_platform():
            kwargs["max_num_batched_tokens"] = kwargs["max_model_len"]
        return kwargs

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        """A ``vllm.LLM`` for the checkpoint."""
        return build_llm(**cls.engine_kwargs(config))

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: Frames,
        processor: Any,
        *,
        metadata: VideoMetadata | None = None,
        config: VllmConfig | None = None,
    ) -> dict[str, Any]:
        """Token ids for ``prompt`` plus the video as ``(uint8 frames, metadata)``."""
        return {
            "prompt_token_ids": chat_token_ids(processor, prompt),
            "multi_modal_data": {
                "video": client_video(frames, processor, metadata=metadata, config=config)
            },
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Refine prompt + stage-1 caption over the very same video object."""
        caption, video = stage1_media(request)
        prefix = DEFAULT_STAGE2_PROMPT if refine_prompt is None else refine_prompt
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt_token_ids": chat_token_ids(processor, prefix + caption),
                "multi_modal_data": {"video": video},
            },
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The first completion's text, stripped."""
        return str(vllm_output.outputs[0].text).strip()
