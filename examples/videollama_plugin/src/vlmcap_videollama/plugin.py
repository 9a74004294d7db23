# The seed guide's "Complete Plugin: Hypothetical VideoLLaMA" example (VLLM_INTERFACE_PLUGIN.md),
# copied verbatim except for its import lines: vlmcap replaces the cosmos_curate and vllm imports
# (the same code as vlmcap's contracts/reference_plugins/videollama.py), shipped as a package.
# ruff: noqa: TID251, I001, RET504, W293, E501 - the seed's own style, kept verbatim
# mypy: disable-error-code="no-any-return"
"""VideoLLaMA vLLM plugin example."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, TypedDict

from transformers import AutoProcessor

from vlmcap import VllmPlugin, VllmCaptionRequest, VllmConfig, LLM

if TYPE_CHECKING:
    import torch
    from vllm import RequestOutput

# VideoLLaMA configuration
MAX_MODEL_LEN = 8192
GPU_MEMORY_UTILIZATION = 0.90
LIMIT_MM_PER_PROMPT = {"video": 1}

_DEFAULT_REFINE_PROMPT = "Improve the following video description: "


class VideoLLaMAMessage(TypedDict):
    """Message format for VideoLLaMA."""
    role: str
    content: list[dict[str, str]]


class VllmVideoLLaMA(VllmPlugin):
    """VideoLLaMA vLLM plugin."""

    @staticmethod
    def model_variant() -> str:
        return "videollama"

    @classmethod
    def processor(cls) -> AutoProcessor:
        processor = AutoProcessor.from_pretrained(
            cls.model_path(),
            trust_remote_code=True,
        )
        return processor

    @classmethod
    def model(cls, config: VllmConfig) -> LLM:
        quantization = "fp8" if config.fp8 else None
        
        return LLM(
            model=str(cls.model_path()),
            quantization=quantization,
            tensor_parallel_size=config.num_gpus,
            max_model_len=MAX_MODEL_LEN,
            gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
            limit_mm_per_prompt=LIMIT_MM_PER_PROMPT,
            trust_remote_code=True,
        )

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: AutoProcessor) -> dict[str, Any]:
        message = VideoLLaMAMessage(
            role="user",
            content=[
                {"type": "video"},
                {"type": "text", "text": prompt},
            ],
        )
        
        prompt_ids = processor.apply_chat_template(
            [message],
            add_generation_prompt=True,
            tokenize=True,
            return_tensors="pt",
        )[0].tolist()
        
        return {
            "prompt_token_ids": prompt_ids,
            "multi_modal_data": {"video": frames},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: AutoProcessor,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        _refine_prompt = _DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        
        if request.caption is None:
            msg = "Request caption is None"
            raise ValueError(msg)
        
        final_prompt = _refine_prompt + request.caption
        video_frames = request.inputs["multi_modal_data"]["video"]
        
        message = VideoLLaMAMessage(
            role="user",
            content=[
                {"type": "video"},
                {"type": "text", "text": final_prompt},
            ],
        )
        
        prompt_ids = processor.apply_chat_template(
            [message],
            add_generation_prompt=True,
            tokenize=True,
            return_tensors="pt",
        )[0].tolist()
        
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt_token_ids": prompt_ids,
                "multi_modal_data": {"video": video_frames},
            },
        )

    @staticmethod
    def decode(vllm_output: RequestOutput) -> str:
        text = vllm_output.outputs[0].text
        # Post-processing: strip special tokens
        text = text.strip().replace("</s>", "").replace("<s>", "")
        return text
