"""Small text-only plugins for fast tests with the fake engine."""

import secrets
from typing import Any

import torch

from vlmcap import VllmCaptionRequest, VllmConfig, VllmPlugin


class EchoPlugin(VllmPlugin):
    """Text prompts; stage 2 prompt = refine prefix + caption; decode = the output text."""

    @staticmethod
    def model_variant() -> str:
        return "echo-test"

    @classmethod
    def processor(cls) -> Any:
        return None

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        raise NotImplementedError

    @staticmethod
    def make_llm_input(prompt: str, frames: Any, processor: Any) -> dict[str, Any]:
        return {"prompt": prompt, "multi_modal_data": {"video": frames}}

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        if request.caption is None:
            raise ValueError("no caption")
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt": (refine_prompt or "refine: ") + request.caption,
                "multi_modal_data": request.inputs["multi_modal_data"],
            },
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text)


ONE_FRAME = torch.zeros((1, 3, 2, 2), dtype=torch.uint8)
"""A valid one-frame video for inputs of fake-engine tests (the driver validates every input)."""
