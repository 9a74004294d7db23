"""A good plugin written structurally (no VllmPlugin base class) with a text prompt.

It renders the chat template to a string (``"prompt"``) instead of token ids, declares the
optional ``metadata=``/``config=`` keyword arguments vlmcap passes, and implements its own
``model_path()`` through :func:`vlmcap.resolve_model_path` (so ``--model-path`` still reaches it).
"""

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoProcessor

from vlmcap import LLM, VideoMetadata, VllmCaptionRequest, VllmConfig, resolve_model_path


DEFAULT_REFINE_PROMPT = "Rewrite this video description so it is precise and vivid: "


def render(processor: Any, text: str) -> str:
    """The chat prompt for one video followed by ``text``."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


class VllmTextPrompt:
    """Qwen-like model, text prompts, video as ``(frames, metadata)`` when metadata is given."""

    @staticmethod
    def model_variant() -> str:
        return "textprompt"

    @classmethod
    def model_path(cls) -> Path:
        return resolve_model_path(cls.model_variant())

    @classmethod
    def processor(cls) -> Any:
        return AutoProcessor.from_pretrained(cls.model_path())

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path()),
            max_model_len=config.max_model_len or 4096,
            limit_mm_per_prompt={"video": 1, "image": 0},
        )

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: torch.Tensor,
        processor: Any,
        *,
        metadata: VideoMetadata | None = None,
        config: VllmConfig | None = None,
    ) -> dict[str, Any]:
        video: Any = frames if metadata is None else (frames, metadata.to_vllm())
        return {"prompt": render(processor, prompt), "multi_modal_data": {"video": video}}

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        if request.caption is None:
            msg = "stage 2 needs the stage-1 caption, but request.caption is None"
            raise ValueError(msg)
        mm = request.inputs["multi_modal_data"]
        if not isinstance(mm, Mapping):
            msg = "request.inputs['multi_modal_data'] is not a dict"
            raise TypeError(msg)
        prefix = DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt": render(processor, prefix + request.caption),
                "multi_modal_data": dict(mm),
            },
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text).strip()
