"""A third-party plugin for SmolVLM / Idefics3, built on the image reference plugin.

vLLM takes only images for ``Idefics3ForConditionalGeneration``, so the clip's frames go as up to
:data:`MAX_IMAGES` evenly spaced PIL images under ``"image"``, one ``<image>`` placeholder each in
the model's own chat template (the pattern, and the helpers, of
``contracts/reference_plugins/image_frames.py``).
vlmcap ships no recipe for it: ``tests/test_tiny_like.py`` builds its tiny checkpoint with
:func:`vlmcap.testing.tiny_checkpoint_like` (:func:`build_tiny`) and serves it with
``--model tests._idefics3_plugin:VllmIdefics3 --model-path DIR``.
"""

from pathlib import Path
from typing import Any

import torch
from contracts.reference_plugins.image_frames import VllmImageFrames, render, to_images

from vlmcap import LLM, VllmConfig


MAX_IMAGES = 4

CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}<image>{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""SmolVLM's chat format (``User:<image>...<end_of_utterance>``), written for the tiny model."""

SPECIAL_TOKENS = (
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)
"""The tokens ``Idefics3Processor`` and vLLM's Idefics3 prompt expansion use."""


def spaced(frames: torch.Tensor) -> torch.Tensor:
    """Up to :data:`MAX_IMAGES` evenly spaced frames of ``(T, 3, H, W)``."""
    picked = torch.linspace(0, frames.shape[0] - 1, min(MAX_IMAGES, frames.shape[0])).round()
    return frames[picked.long()]


class VllmIdefics3(VllmImageFrames):
    """Captions a clip with an Idefics3 / SmolVLM checkpoint from a few of its frames.

    The image reference plugin's processor, stage 2 and decode; its own variant, engine limit
    (images only) and frame choice.
    """

    @staticmethod
    def model_variant() -> str:
        return "idefics3"

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path()),
            max_model_len=config.max_model_len or 8192,
            limit_mm_per_prompt={"image": MAX_IMAGES},
        )

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        images = to_images(spaced(frames))
        return {
            "prompt": render(processor, len(images), prompt),
            "multi_modal_data": {"image": images},
        }


def make_processor(tokenizer: Any, config: Any) -> Any:
    """``Idefics3Processor`` for a (tiny) ``Idefics3Config``: tiles of the vision image size."""
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    side = config.vision_config.image_size
    return Idefics3Processor(
        image_processor=Idefics3ImageProcessor(
            size={"longest_edge": 2 * side}, max_image_size={"longest_edge": side}
        ),
        tokenizer=tokenizer,
        image_seq_len=(side // config.vision_config.patch_size) ** 2 // config.scale_factor**2,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny(dest: Path | str) -> Path:
    """A tiny random Idefics3 checkpoint in ``dest`` (reused when already built)."""
    from transformers import Idefics3Config

    from vlmcap.testing import tiny_checkpoint_like

    return tiny_checkpoint_like(
        dest,
        Idefics3Config,
        make_processor,
        special_tokens=SPECIAL_TOKENS,
        chat_template=CHAT_TEMPLATE,
        eos_token="<end_of_utterance>",
        token_ids={"image_token_id": "<image>"},
    )
