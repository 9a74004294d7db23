"""Tiny checkpoints for the ``chat`` plugin: architectures outside the Qwen family.

The ``chat`` plugin serves any vLLM vision-language model whose processor has a chat template, so
its tests run on models that share nothing with the Qwen builders but the tokenizer recipe:

- :func:`build_llava_onevision` (``tiny_checkpoint("chat")``): LLaVA-OneVision (SigLIP vision
  tower, Qwen2 language model, 2x2-pooled video frames, ``<image>``/``<video>`` placeholders,
  its own chat format). vLLM accepts image **and video** for it, so the plugin sends video.
- :func:`build_llava` (``tiny_checkpoint("chat_image")``): LLaVA-1.5 (CLIP vision tower, Llama
  language model, ``USER: <image>`` chat format). vLLM accepts only images for it, so the plugin
  sends the frames as images.

Both reuse the tokenizer recipe and the word-emitting head of :mod:`vlmcap.testing._tiny_base`, plus
two placeholder tokens, and are a few MB with random weights.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmcap.testing._tiny_base import save_with_word_head, train_tokenizer


IMAGE_TOKEN = "<image>"  # noqa: S105 - a placeholder token, not a password
VIDEO_TOKEN = "<video>"  # noqa: S105

# LLaVA-OneVision's chat format (written for vlmcap): images, then videos, then text per turn.
LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'video' %}<video>{% endif %}{% endfor %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'text' %}{{ '\\n' + c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# LLaVA-1.5's chat format: no video type at all.
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

_VISION = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
"""A 32x32 image in 8x8 patches: 16 vision tokens per image (4 per video frame after pooling)."""


def _tokenizer(
    dest: Path, chat_template: str, extra: Sequence[str] = (IMAGE_TOKEN, VIDEO_TOKEN)
) -> tuple[Any, dict[str, int]]:
    """The shared tiny tokenizer plus the special tokens ``extra``, with ``chat_template``."""
    tokenizer = train_tokenizer(dest)
    new = [t for t in extra if t not in tokenizer.get_vocab()]
    tokenizer.add_special_tokens({"extra_special_tokens": new}, replace_extra_special_tokens=False)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(dest)
    names = ("<|endoftext|>", "<|im_end|>", *extra)
    return tokenizer, {t: int(tokenizer.convert_tokens_to_ids(t)) for t in names}


def _text_config(vocab: int, ids: dict[str, int]) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }


def vision_tower_hub_layout(weights: Path) -> None:
    """Rename ``vision_tower.*`` weights to ``vision_tower.vision_model.*``, as on the Hub.

    transformers 5 holds CLIP and SigLIP towers without their ``vision_model`` level and saves
    them so; published LLaVA checkpoints, and so vLLM's loaders, have it.
    """
    from safetensors.torch import load_file, save_file

    prefix, hub = "vision_tower.", "vision_tower.vision_model."
    tensors = load_file(weights)
    renamed = {
        hub + k.removeprefix(prefix) if k.startswith(prefix) and not k.startswith(hub) else k: v
        for k, v in tensors.items()
    }
    save_file(renamed, weights, metadata={"format": "pt"})


def _finish(model: Any, tokenizer: Any, processor: Any, ids: dict[str, int], dest: Path) -> None:
    save_with_word_head(model, tokenizer, dest)
    vision_tower_hub_layout(dest / "model.safetensors")
    processor.save_pretrained(dest)
    gen = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"]]}
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=2))


def build_llava_onevision(dest: Path, seed: int) -> None:
    """A tiny LLaVA-OneVision (image and video; SigLIP + Qwen2), for ``tiny_checkpoint("chat")``."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer, ids = _tokenizer(dest, LLAVA_ONEVISION_TEMPLATE)
    side = _VISION["image_size"]
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    config = LlavaOnevisionConfig(
        text_config={**_text_config(len(tokenizer), ids), "model_type": "qwen2"},
        vision_config={**_VISION, "model_type": "siglip_vision_model", "vision_use_head": False},
        image_token_index=ids[IMAGE_TOKEN],
        video_token_index=ids[VIDEO_TOKEN],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    model = LlavaOnevisionForConditionalGeneration(config)
    size = {"height": side, "width": side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=pinpoints),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(side // _VISION["patch_size"]) ** 2,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_TEMPLATE,
    )
    _finish(model, tokenizer, processor, ids, dest)


def build_llava(dest: Path, seed: int) -> None:
    """A tiny LLaVA-1.5 (images only; CLIP + Llama), for ``tiny_checkpoint("chat_image")``."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    tokenizer, ids = _tokenizer(dest, LLAVA_TEMPLATE)
    side = _VISION["image_size"]
    config = LlavaConfig(
        text_config={**_text_config(len(tokenizer), ids), "model_type": "llama"},
        vision_config={**_VISION, "model_type": "clip_vision_model", "projection_dim": 64},
        image_token_index=ids[IMAGE_TOKEN],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        ),
        tokenizer=tokenizer,
        patch_size=_VISION["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token
        chat_template=LLAVA_TEMPLATE,
    )
    _finish(model, tokenizer, processor, ids, dest)
