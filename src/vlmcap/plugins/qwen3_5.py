"""Qwen3.5 / Qwen3.6 instruct models (pinned: Qwen/Qwen3.5-27B-FP8, as cosmos-curate pins it).

Qwen3.5 is Qwen3-VL's vision tower and processor in front of a hybrid language model (Gated
DeltaNet linear-attention layers between full-attention layers): vLLM serves it as
``Qwen3_5ForConditionalGeneration``, a subclass of its Qwen3-VL model. So the input is
``qwen3_vl``'s: ``(uint8 frames, metadata)`` resized model-side, token ids from the checkpoint's
chat template. Two differences:

- The chat template is rendered with ``enable_thinking=False``: a caption is the answer, not a
  reasoning trace (templates without the switch ignore it).
- :meth:`VllmQwen3_5.decode` drops a ``<think>...</think>`` block should the model emit one.

The pinned checkpoint is pre-quantized FP8; ``VllmConfig.fp8`` adds nothing to it. vLLM's CPU
build runs the architecture (its GDN kernel needs linear-attention head dimension 128, which
real Qwen3.5 checkpoints and vlmcap's tiny one have).
"""

from typing import Any

from vlmcap._frames import Frames
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap.plugins import kit
from vlmcap.plugins.qwen3_vl import VllmQwen3VL


TEMPLATE_KWARGS = {"enable_thinking": False}
"""Chat-template switches: answer directly, no reasoning trace."""


class VllmQwen3_5(VllmQwen3VL):  # noqa: N801 - the model's own name
    """Qwen/Qwen3.5-27B-FP8 (any Qwen3.5/3.6 checkpoint via ``model_path``)."""

    @staticmethod
    def model_variant() -> str:
        """``"qwen3_5"``."""
        return "qwen3_5"

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: Frames,
        processor: Any,
        *,
        metadata: VideoMetadata | None = None,
        config: VllmConfig | None = None,
    ) -> dict[str, Any]:
        """Token ids for ``prompt`` (no thinking) plus the video as ``(uint8 frames, metadata)``."""
        return {
            "prompt_token_ids": kit.chat_token_ids(
                processor, prompt, template_kwargs=TEMPLATE_KWARGS
            ),
            "multi_modal_data": {
                "video": kit.video_with_metadata(frames, metadata=metadata, config=config)
            },
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Refine prompt + stage-1 caption over the very same video object (no thinking)."""
        return kit.refined_chat_request(
            request, processor, refine_prompt, template_kwargs=TEMPLATE_KWARGS
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The first completion's text without a ``<think>`` block, stripped."""
        return kit.without_think(vllm_output)
