"""microsoft/Phi-4-multimodal-instruct: frames as a list of images (cosmos-curate's removed plugin).

vLLM 0.26-0.32 serve this model as ``Phi4MMForCausalLM``, whose config and multimodal processor
are the model repository's remote code (``trust_remote_code``), loaded from the checkpoint
folder. End-to-end tests run on ``vlmcap.testing.tiny_checkpoint("phi4")``, which carries its
own remote-code modules (thin adapters over transformers' native ``phi4_multimodal``
processors), tiny weights and a ``vision-lora/`` adapter.

Phi-4-multimodal has no video input: each frame becomes a PIL image, and the text prompt carries
one ``<|image_1|>`` ... ``<|image_N|>`` placeholder per frame. Its vision works through a LoRA
adapter shipped with the checkpoint (``vision-lora/``): the engine is built with
``enable_lora=True`` and every request is added with :meth:`VllmPhi4.lora_request` (vlmcap's
engine adapter attaches a plugin's ``lora_request(config)`` to every request it adds).

The model's processor always resizes images itself (dynamic HD crops), so ``preprocess`` is
accepted with either value and changes nothing.
"""

from collections.abc import Sequence
from typing import Any

from vlmcap._errors import PluginError
from vlmcap._frames import Frames
from vlmcap._plugin import VllmPlugin
from vlmcap._records import VllmCaptionRequest, VllmConfig
from vlmcap._vllm_compat import build_llm, lora_request
from vlmcap.plugins import kit


MAX_IMAGES = 100
"""Images (frames) per prompt, cosmos-curate's ``limit_mm_per_prompt``."""
MAX_LORA_RANK = 320
"""At least the rank of the checkpoint's vision LoRA (vLLM's Phi-4-multimodal example)."""
VISION_LORA_DIR = "vision-lora"

DEFAULT_REFINE_PROMPT = (
    "Improve and refine following video description. Focus on highlighting the key visual and "
    "sensory elements.\n"
    "Ensure the description is clear, precise, and paints a compelling picture of the scene.\n\n"
)
"""Refine prefix (cosmos-curate's Phi-4 text); the stage-1 caption is appended to it."""


def image_prompt(processor: Any, prompt: str, num_images: int) -> str:
    """Chat-template text of one user turn: ``<|image_1|>...<|image_N|>`` then ``prompt``.

    Raises:
        PluginError: more images than :data:`MAX_IMAGES`, or no chat template.
    """
    if not 1 <= num_images <= MAX_IMAGES:
        raise PluginError(f"phi4 takes 1 to {MAX_IMAGES} frames per prompt, got {num_images}")
    tokenizer = getattr(processor, "tokenizer", processor)
    if not callable(getattr(tokenizer, "apply_chat_template", None)):
        raise PluginError(f"{type(tokenizer).__name__} has no apply_chat_template")
    placeholders = "".join(f"<|image_{i}|>" for i in range(1, num_images + 1))
    message = {"role": "user", "content": placeholders + prompt}
    return str(tokenizer.apply_chat_template([message], tokenize=False, add_generation_prompt=True))


class VllmPhi4(VllmPlugin):
    """microsoft/Phi-4-multimodal-instruct: one image per frame, vision through its LoRA."""

    @staticmethod
    def model_variant() -> str:
        """``"phi4"``."""
        return "phi4"

    @classmethod
    def processor(cls) -> Any:
        """The checkpoint's (remote-code) processor."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(cls.model_path(), trust_remote_code=True)

    @classmethod
    def engine_kwargs(cls, config: VllmConfig) -> dict[str, Any]:
        """The ``LLM(...)`` arguments for ``config``; every setting is honoured.

        ``use_image_input`` needs nothing: frames are sent as images either way.
        """
        return kit.engine_kwargs(
            cls.model_path(config),
            config,
            limit_mm_per_prompt={"image": MAX_IMAGES, "video": 0, "audio": 0},
            trust_remote_code=True,
            enable_lora=True,
            max_lora_rank=MAX_LORA_RANK,
            max_loras=1,
        )

    @classmethod
    def lora_request(cls, config: VllmConfig | None = None) -> Any:
        """The vision adapter every request needs: ``vllm.lora.request.LoRARequest``."""
        path = cls.model_path(config) / VISION_LORA_DIR
        return lora_request("phi4-vision", 1, str(path))

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        """A ``vllm.LLM`` with LoRA enabled (add requests with :meth:`lora_request`)."""
        return build_llm(**cls.engine_kwargs(config))

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: Frames,
        processor: Any,
        *,
        config: VllmConfig | None = None,  # noqa: ARG004 - declared: settings need no change here
    ) -> dict[str, Any]:
        """Text prompt with one ``<|image_i|>`` per frame, and the frames as PIL images."""
        raw, _md = kit.split_video(frames)  # images carry no timing; metadata is not used
        images = kit.frames_as_images(raw)
        return {
            "prompt": image_prompt(processor, prompt, len(images)),
            "multi_modal_data": {"image": images},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Refine prefix + stage-1 caption over the very same image list."""
        caption, images = kit.stage1_media(request, "image")
        if not isinstance(images, Sequence):
            msg = "request inputs' multi_modal_data['image'] is not a list of images"
            raise PluginError(msg)
        prefix = DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        return kit.refined_request(
            {
                "prompt": image_prompt(processor, prefix + caption, len(images)),
                "multi_modal_data": {"image": images},
            }
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The first completion's text, stripped."""
        return kit.first_text(vllm_output)
