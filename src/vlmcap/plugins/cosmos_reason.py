"""NVIDIA Cosmos-Reason1 (Qwen2.5-VL) and Cosmos-Reason2 (Qwen3-VL), as cosmos-curate runs them.

Both are reasoning models: a system message asks for ``<think>...</think>`` then
``<answer>...</answer>``, the prompt is the chat template's **text** (``tokenize=False``), and
:meth:`VllmCosmosReason1VL.decode` keeps only the answer. The stage-2 prompt is rebuilt with
the same system message over the very same video object.

Video goes in as ``(uint8 frames, metadata)``. Cosmos-Reason1 resizes like the ``qwen`` plugin
(client-side to the 28-aligned grid unless ``preprocess=True``); Cosmos-Reason2 always resizes
model-side, like ``qwen3_vl`` (see :mod:`vlmcap.plugins.qwen3_vl`).
"""

import re
from typing import Any

from vlmcap._errors import PluginError
from vlmcap._frames import Frames
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap.plugins import kit
from vlmcap.plugins.qwen import VllmQwen7B, client_video
from vlmcap.plugins.qwen3_vl import qwen3_engine_kwargs


SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the question in the following format: "
    "<think>\nyour reasoning\n</think>\n\n<answer>\nyour answer\n</answer>."
)
"""cosmos-curate's exact system message for Cosmos-Reason."""

DEFAULT_REFINE_PROMPT = (
    "Improve and refine following video description.\n"
    "    Focus on highlighting the key visual and sensory elements.\n"
    "    Ensure the description is clear, precise, and paints a compelling\n"
    "    picture of the scene.\n"
)
"""cosmos-curate's Cosmos-Reason refine prefix (its internal indentation kept); the stage-1
caption is appended to it."""

_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL | re.IGNORECASE)


def extract_answer(text: str) -> str:
    """The stripped ``<answer>`` section of ``text``, or ``text`` stripped when it has none."""
    match = _ANSWER.search(text)
    return match.group(1).strip() if match else text.strip()


def chat_prompt(processor: Any, prompt: str, *, system: str = SYSTEM_PROMPT) -> str:
    """The chat template's text for a system message and a user turn (video, then ``prompt``).

    Raises:
        PluginError: the processor has no ``apply_chat_template``.
    """
    if not callable(getattr(processor, "apply_chat_template", None)):
        raise PluginError(f"{type(processor).__name__} has no apply_chat_template")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if isinstance(text, list):  # some processors return one string per conversation
        text = text[0]
    return str(text)


class VllmCosmosReason1VL(VllmQwen7B):
    """nvidia/Cosmos-Reason1-7B (Qwen2.5-VL architecture).

    Engine arguments and frame handling are the ``qwen`` plugin's (fp8, tensor parallelism,
    ``disable_mmcache``, ``max_model_len`` and ``preprocess`` honoured); prompt, refinement and
    decoding are Cosmos-Reason's.
    """

    @staticmethod
    def model_variant() -> str:
        """``"cosmos_r1"``."""
        return "cosmos_r1"

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: Frames,
        processor: Any,
        *,
        metadata: VideoMetadata | None = None,
        config: VllmConfig | None = None,
    ) -> dict[str, Any]:
        """The chat-template text (system message + ``prompt``) and ``(uint8 frames, metadata)``."""
        return {
            "prompt": chat_prompt(processor, prompt),
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
        """Refine prefix + stage-1 caption, with the system message, over the same video object."""
        caption, video = kit.stage1_media(request)
        prefix = DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        prompt = chat_prompt(processor, prefix + caption)
        return kit.refined_request({"prompt": prompt, "multi_modal_data": {"video": video}})

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The ``<answer>`` section of the first completion, or its whole text (stripped)."""
        return extract_answer(str(vllm_output.outputs[0].text))


class VllmCosmosReason2VL(VllmCosmosReason1VL):
    """nvidia/Cosmos-Reason2-8B (Qwen3-VL architecture).

    Everything but the variant, the engine arguments and the frame handling is Cosmos-Reason1's.
    Resizing always happens model-side (as cosmos-curate forces for ``cosmos_r2``), so
    ``preprocess`` is accepted with either value and changes nothing.
    """

    @staticmethod
    def model_variant() -> str:
        """``"cosmos_r2"``."""
        return "cosmos_r2"

    @classmethod
    def engine_kwargs(cls, config: VllmConfig) -> dict[str, Any]:
        """The ``LLM(...)`` arguments for ``config`` (Qwen3-VL's; ``use_image_input`` refused)."""
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
        """The chat-template text (system message + ``prompt``) and ``(uint8 frames, metadata)``."""
        return {
            "prompt": chat_prompt(processor, prompt),
            "multi_modal_data": {
                "video": kit.video_with_metadata(frames, metadata=metadata, config=config)
            },
        }
