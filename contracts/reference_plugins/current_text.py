"""A good plugin in cosmos-curate's current form that reads the metadata dict (Nemotron style).

Text prompt from the chat template (``tokenize=False``), frames turned into a uint8 numpy array
``(T, H, W, 3)``, and the video as a ``(frames, metadata)`` tuple whose dict it builds from the
keys cosmos-curate passes (``fps``, ``duration``, ``total_num_frames``, ``frames_indices``,
``video_backend``). ``model_variant`` is a classmethod, as in cosmos-curate's Nemotron plugin.
Written for vlmcap's tests; only its import lines name vlmcap.
"""

from __future__ import annotations  # noqa: TID251 - written as cosmos-curate writes plugins

import secrets
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import AutoProcessor

from vlmcap import LLM, VllmCaptionRequest, VllmPlugin


if TYPE_CHECKING:
    from vlmcap import VllmConfig


DEFAULT_REFINE_PROMPT = "Rewrite this video description so that it is precise: "
METADATA_KEYS = ("fps", "duration", "total_num_frames", "frames_indices", "video_backend")


def _prompt(processor: Any, text: str) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def _to_numpy(frames: torch.Tensor) -> np.ndarray:
    """``(T, 3, H, W)`` uint8 or float [0, 1] frames as uint8 ``(T, H, W, 3)``."""
    video = frames.permute(0, 2, 3, 1).cpu()
    if video.is_floating_point():
        video = (video * 255.0).round().clamp(0, 255)
    return np.ascontiguousarray(video.to(dtype=torch.uint8).numpy())


class VllmCurrentText(VllmPlugin):
    """A chat VLM fed a text prompt and a numpy video with its metadata."""

    @classmethod
    def model_variant(cls) -> str:
        return "current-text"

    @classmethod
    def processor(cls, config: VllmConfig) -> Any:
        return AutoProcessor.from_pretrained(cls.model_path(config), use_fast=False)

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path(config)),
            tensor_parallel_size=config.num_gpus,
            max_model_len=config.max_model_len or 8192,
            gpu_memory_utilization=0.9,
            limit_mm_per_prompt={"video": 1},
            performance_mode=config.performance_mode,
        )

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: torch.Tensor,
        metadata: dict[str, Any],
        processor: Any,
        config: VllmConfig,
    ) -> dict[str, Any]:
        if config.use_image_input:
            msg = "this plugin captions videos only"
            raise ValueError(msg)
        video_md = {key: metadata[key] for key in METADATA_KEYS}
        video_md["frames_indices"] = list(metadata["frames_indices"])
        return {
            "prompt": _prompt(processor, prompt),
            "multi_modal_data": {"video": (_to_numpy(frames), video_md)},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        if request.caption is None:
            msg = "request caption is None: cannot refine"
            raise ValueError(msg)
        video = request.inputs["multi_modal_data"]["video"]
        prefix = DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt": _prompt(processor, prefix + request.caption),
                "multi_modal_data": {"video": video},
            },
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text).strip()
