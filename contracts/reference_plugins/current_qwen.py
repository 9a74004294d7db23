"""A good plugin in cosmos-curate's current form, Qwen2.5-VL style (written for vlmcap's tests).

The current form: ``processor(config)``, ``model_path(config)`` (reading ``copy_weights_to``),
``make_llm_input(prompt, frames, metadata, processor, config)`` with ``metadata`` a plain dict,
token-id prompts from the chat template, the video as ``[(frames, metadata)]``, ``model()``
reading ``config.performance_mode``, and ``limit_mm_per_prompt`` with the ``"images"`` key that
cosmos-curate's Qwen plugins carry (vlmcap reads it as ``"image"`` and warns once).
Only its import lines name vlmcap instead of cosmos-curate and vLLM.
"""

from __future__ import annotations  # noqa: TID251 - written as cosmos-curate writes plugins

import secrets
from typing import TYPE_CHECKING, Any, TypedDict

from transformers import AutoProcessor

from vlmcap import LLM, VllmCaptionRequest, VllmPlugin


if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from vlmcap import VllmConfig


MAX_MODEL_LEN = 8192
LIMIT_MM_PER_PROMPT_VIDEO = {"images": 0, "video": 1}
REFINE_PREFIX = "Improve and refine the following video description: "


class ContentItem(TypedDict, total=False):
    """One item of a user message."""

    type: str
    text: str


class UserMessage(TypedDict):
    """The single user turn."""

    role: str
    content: list[ContentItem]


def _message(prompt: str) -> UserMessage:
    return UserMessage(role="user", content=[{"type": "video"}, {"type": "text", "text": prompt}])


def _token_ids(processor: Any, prompt: str) -> list[int]:
    out = processor.apply_chat_template(
        [_message(prompt)], add_generation_prompt=True, tokenize=True, return_tensors="pt"
    )
    ids = out["input_ids"] if hasattr(out, "keys") else out  # transformers 5: a BatchEncoding
    return [int(i) for i in ids[0].tolist()]


class VllmCurrentQwen(VllmPlugin):
    """Qwen2.5-VL-like model in the current plugin form."""

    @staticmethod
    def model_variant() -> str:
        return "current-qwen"

    @classmethod
    def model_path(cls, config: VllmConfig) -> Path:
        copy = config.copy_weights_to
        if copy is not None and (copy / cls.model_variant()).is_dir():
            return copy / cls.model_variant()
        return super().model_path(config)

    @classmethod
    def processor(cls, config: VllmConfig) -> Any:
        return AutoProcessor.from_pretrained(cls.model_path(config), use_fast=True)

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path(config)),
            quantization="fp8" if config.fp8 else None,
            tensor_parallel_size=config.num_gpus,
            max_model_len=config.max_model_len or MAX_MODEL_LEN,
            limit_mm_per_prompt=LIMIT_MM_PER_PROMPT_VIDEO,
            mm_processor_cache_gb=0.0 if config.disable_mmcache else 4.0,
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
        del config  # video only; an image plugin would branch on config.use_image_input
        return {
            "prompt_token_ids": _token_ids(processor, prompt),
            "multi_modal_data": {"video": [(frames, metadata)]},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        if request.caption is None:
            msg = "Request caption is None; stage 2 refines the stage-1 caption"
            raise ValueError(msg)
        if "multi_modal_data" not in request.inputs:
            msg = "Message does not contain multi_modal_data"
            raise ValueError(msg)
        prefix = REFINE_PREFIX if refine_prompt is None else refine_prompt
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt_token_ids": _token_ids(processor, prefix + request.caption),
                "multi_modal_data": {"video": request.inputs["multi_modal_data"]["video"]},
            },
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text)
