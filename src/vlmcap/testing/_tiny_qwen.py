"""Tiny Qwen2.5-VL and Qwen3-VL-family checkpoints (Qwen3-VL, Qwen3.5, Cosmos 3)."""

import json
from pathlib import Path
from typing import Any

from vlmcap.testing._tiny_base import (
    CHAT_TEMPLATE,
    QWEN3_5_CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    save_with_word_head,
    train_tokenizer,
)


def build_qwen2_5_vl(dest: Path, seed: int) -> None:
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(dest)
    vocab = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden, heads = 128, 4
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": hidden,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "max_window_layers": 2,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [4, 6, 6],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "out_hidden_size": hidden,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    model = Qwen2_5_VLForConditionalGeneration(config)
    save_with_word_head(model, tokenizer, dest)
    size = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(dest)
    gen = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"]]}
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=2))


QWEN3_5_LINEAR = {
    "layer_types": ["linear_attention", "full_attention"],
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 128,  # vLLM's CPU GDN kernel takes head dimension 128 only
    "linear_value_head_dim": 128,
    "linear_num_key_heads": 1,
    "linear_num_value_heads": 2,
}
"""Qwen3.5's Gated DeltaNet layer, tiny: one linear-attention layer, then a full-attention one."""


def build_qwen3_vl_family(dest: Path, seed: int, family: str) -> None:
    """A tiny Qwen3-VL-family checkpoint: ``qwen3_vl`` (dense), ``qwen3_5`` or ``cosmos3``.

    All three share Qwen3-VL's vision tower (patch 16, a 32-aligned grid after the 2x2 merge, one
    deepstack layer) and processor. Text head_dim 64 with an interleaved mrope section of 8/12/12;
    the head is shaped as for Qwen2.5-VL. ``qwen3_5`` makes the language model hybrid (one Gated
    DeltaNet layer, :data:`QWEN3_5_LINEAR`); ``cosmos3`` writes the Qwen3-VL weights in Cosmos
    3's unified layout (:func:`cosmos3_layout`).
    """
    import torch
    import transformers
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(dest)
    vocab = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden = 128
    text_config: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [8, 12, 12],
            "mrope_interleaved": True,
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision_config: dict[str, Any] = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "in_channels": 3,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": hidden,
        "num_position_embeddings": 256,
        "deepstack_visual_indexes": [1],
    }
    if family == "qwen3_5":
        text_config |= QWEN3_5_LINEAR
        text_config["rope_parameters"] |= {"partial_rotary_factor": 1.0}
        del vision_config["deepstack_visual_indexes"]  # Qwen3.5 has no deepstack
        config_class, model_class = "Qwen3_5Config", "Qwen3_5ForConditionalGeneration"
    else:
        config_class, model_class = "Qwen3VLConfig", "Qwen3VLForConditionalGeneration"
    config = getattr(transformers, config_class)(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = [model_class]
    model = getattr(transformers, model_class)(config)
    save_with_word_head(model, tokenizer, dest)
    if family == "cosmos3":
        cosmos3_layout(dest)
    template = QWEN3_5_CHAT_TEMPLATE if family == "qwen3_5" else CHAT_TEMPLATE
    tokenizer.chat_template = template
    image_size = {"shortest_edge": 64 * 64, "longest_edge": 256 * 256}
    video_size = {"shortest_edge": 64 * 64, "longest_edge": 16 * 256 * 256}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=image_size, patch_size=16, merge_size=2),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(
            size=video_size, patch_size=16, merge_size=2, cap_pixels_per_frame=False
        ),
        chat_template=template,
    )
    processor.save_pretrained(dest)
    gen = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"]]}
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=2))


def build_qwen3_vl(dest: Path, seed: int) -> None:
    build_qwen3_vl_family(dest, seed, "qwen3_vl")


def build_qwen3_5(dest: Path, seed: int) -> None:
    build_qwen3_vl_family(dest, seed, "qwen3_5")


def build_cosmos3(dest: Path, seed: int) -> None:
    build_qwen3_vl_family(dest, seed, "cosmos3")


def cosmos3_layout(dest: Path) -> None:
    """Rewrite a saved Qwen3-VL checkpoint in Cosmos 3's unified layout, as vLLM reads it.

    A Cosmos 3 checkpoint keeps flat keys (``layers.0...``, ``blocks.0...``, ``lm_head...``)
    under ``transformer/`` (language) and ``vision_encoder/`` (vision), with a
    ``cosmos3_omni`` config; vLLM's ``Cosmos3ForConditionalGeneration`` maps them back to its
    Qwen3-VL modules.
    """
    from safetensors.torch import load_file, save_file

    weights = load_file(dest / "model.safetensors")
    (dest / "model.safetensors").unlink()
    parts: dict[str, dict[str, Any]] = {"transformer": {}, "vision_encoder": {}}
    for key, tensor in weights.items():
        if key.startswith("model.visual."):
            parts["vision_encoder"][key.removeprefix("model.visual.")] = tensor
        else:
            parts["transformer"][key.removeprefix("model.language_model.")] = tensor
    for folder, tensors in parts.items():
        (dest / folder).mkdir()
        save_file(tensors, dest / folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((dest / "config.json").read_text())
    config |= {"model_type": "cosmos3_omni", "architectures": ["Cosmos3ForConditionalGeneration"]}
    (dest / "config.json").write_text(json.dumps(config, indent=2))
