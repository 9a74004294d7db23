"""Qwen3-VL instruct models (pinned: Qwen/Qwen3-VL-30B-A3B-Instruct).

Video goes in as ``(uint8 frames, metadata)`` with a token-id prompt from the chat template, as
for Qwen2.5-VL, with one difference: **the resizing always happens model-side.** Qwen3-VL uses a
32-aligned patch grid (patch 16, 2x2 merge) and samples per-frame timestamps from the metadata;
cosmos-curate forces model-side preprocessing for the whole Qwen3 family for that reason. So
``VllmConfig.preprocess`` is accepted with either value and changes nothing here: frames are
shipped at their own size (as uint8) and the processor inside vLLM resizes, rescales and
normalises them. Metadata is required by vLLM for this architecture; bare frames get uniform
metadata at ``config.sampling_fps`` (2 fps without a config).
"""

from typing import Any

import torch

from vlmcap._errors import UnsupportedSettingError
from vlmcap._frames import Frames, check_frames, to_uint8
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._vllm_compat import is_cpu_platform
from vlmcap.plugins.qwen import (
    GPU_MEMORY_UTILIZATION,
    MAX_MODEL_LEN,
    MAX_NUM_BATCHED_TOKENS,
    MM_CACHE_GB,
    VllmQwen7B,
    chat_token_ids,
    refined_video_request,
    split_video,
)


GRID = 32
"""Qwen3-VL's spatial grid (patch 16 x merge 2); the processor in vLLM aligns frames to it."""

DEFAULT_FPS = 2.0


def qwen3_engine_kwargs(model_path: str, config: VllmConfig, *, variant: str) -> dict[str, Any]:
    """``LLM(...)`` arguments for a Qwen3-VL checkpoint; every setting is honoured or refused.

    No ``mm_processor_kwargs``: the processor in vLLM always resizes (module docstring).
    """
    if config.use_image_input:
        raise UnsupportedSettingError(
            f"the {variant} plugin captions video; use_image_input=True is not supported"
        )
    kwargs: dict[str, Any] = {
        "model": model_path,
        "tensor_parallel_size": config.num_gpus,
        "max_model_len": config.max_model_len or MAX_MODEL_LEN,
        "max_num_batched_tokens": max(MAX_NUM_BATCHED_TOKENS, config.max_model_len or 0),
        "gpu_memory_utilization": config.gpu_memory_utilization or GPU_MEMORY_UTILIZATION,
        "limit_mm_per_prompt": {"video": 1, "image": 0},
        "mm_processor_cache_gb": 0.0 if config.disable_mmcache else MM_CACHE_GB,
    }
    if config.compile_mm_encoder:  # vLLM compiles the encoder where it can (not Qwen3-VL in 0.26)
        kwargs["compilation_config"] = {"compile_mm_encoder": True}
    if config.fp8:
        kwargs["quantization"] = "fp8"
    if is_cpu_platform():
        kwargs["max_num_batched_tokens"] = kwargs["max_model_len"]
    return kwargs


def qwen3_video(
    frames: Frames,
    *,
    metadata: VideoMetadata | None = None,
    config: VllmConfig | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(uint8 frames at their own size, vLLM metadata dict)`` for a Qwen3-VL processor.

    Metadata comes from ``metadata``, else from a ``(frames, metadata)`` pair, else uniform at
    ``config.sampling_fps``; its width and height are the frames'.
    """
    raw, md = split_video(frames)
    video = to_uint8(check_frames(raw, "frames"))
    if metadata is not None:
        md = metadata.to_vllm()
    if md is None:
        fps = config.sampling_fps if config is not None else DEFAULT_FPS
        md = VideoMetadata.uniform(int(video.shape[0]), fps).to_vllm()
    return video, {**md, "width": int(video.shape[3]), "height": int(video.shape[2])}


class VllmQwen3VL(VllmQwen7B):
    """Qwen/Qwen3-VL-30B-A3B-Instruct (any Qwen3-VL instruct checkpoint via ``model_path``).

    Inherits the processor, engine construction and decoding of
    :class:`~vlmcap.plugins.qwen.VllmQwen7B`; differs in the engine arguments, the video
    (model-side resizing, metadata always attached) and the prompt layout: no block alignment
    after the video, because Qwen3-VL's processor expands the video into per-frame timestamp
    text whose length vlmcap does not compute.
    """

    @staticmethod
    def model_variant() -> str:
        """``"qwen3_vl"``."""
        return "qwen3_vl"

    @classmethod
    def engine_kwargs(cls, config: VllmConfig) -> dict[str, Any]:
        """The ``LLM(...)`` arguments for ``config`` (see :func:`qwen3_engine_kwargs`)."""
        return qwen3_engine_kwargs(str(cls.model_path(config)), config, variant=cls.model_variant())

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
            "multi_modal_data": {"video": qwen3_video(frames, metadata=metadata, config=config)},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Refine prompt + stage-1 caption over the very same video object."""
        return refined_video_request(request, processor, refine_prompt, align=False)
