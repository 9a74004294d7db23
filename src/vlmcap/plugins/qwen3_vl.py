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

from vlmcap._frames import Frames
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap.plugins import kit
from vlmcap.plugins.qwen import VllmQwen7B


GRID = 32
"""Qwen3-VL's spatial grid (patch 16 x merge 2); the processor in vLLM aligns frames to it."""


def qwen3_engine_kwargs(model_path: str, config: VllmConfig, *, variant: str) -> dict[str, Any]:
    """``LLM(...)`` arguments for a Qwen3-VL checkpoint; every setting is honoured or refused.

    No ``mm_processor_kwargs``: the processor in vLLM always resizes (module docstring).
    """
    kit.refuse_image_input(variant, config)
    return kit.engine_kwargs(model_path, config, limit_mm_per_prompt={"video": 1, "image": 0})


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
            "prompt_token_ids": kit.chat_token_ids(processor, prompt),
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
        """Refine prompt + stage-1 caption over the very same video object."""
        return kit.refined_chat_request(request, processor, refine_prompt)
