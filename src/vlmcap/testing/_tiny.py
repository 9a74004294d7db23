"""Deterministic tiny checkpoints that a real vLLM engine loads on CPU and GPU.

No model hub is reachable from CI, so the end-to-end tests run on checkpoints that vlmcap builds
itself: the real architecture (config class, processor, chat template), shrunk to a few MB, with
random weights and a byte-level BPE tokenizer trained on a small embedded corpus. The language
head is shaped so that greedy decoding emits visible words instead of whitespace: the rows of
every token that decodes to no letter (special tokens, whitespace, punctuation) are zeroed and
the rest are scaled up, so the argmax always lands on a word piece.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmcap._errors import UnknownVariantError
from vlmcap.testing._tiny_chat import build_llava, build_llava_onevision
from vlmcap.testing._tiny_nemotron import build_nemotron_vl
from vlmcap.testing._tiny_phi4 import build_phi4
from vlmcap.testing._tiny_qwen3_moe import build_qwen3_vl_moe


_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A Qwen2-VL style chat template, written for vlmcap (system turn, vision placeholders).
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3.5's switch: with enable_thinking false, the answer starts after an empty think block.
_QWEN3_5_CHAT_TEMPLATE = _CHAT_TEMPLATE.replace(
    "<|im_start|>assistant\n{% endif %}",
    "<|im_start|>assistant\n{% if enable_thinking is defined and not enable_thinking %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}",
)

_CORPUS = """
A red car drives along a wet road at night while street lights reflect on the asphalt.
A person walks a dog through a green park, and children play on the grass near a fountain.
The camera pans across a busy city street with buses, bicycles and pedestrians crossing.
A small boat sails on a calm blue lake surrounded by tall mountains and pine forests.
Two people sit at a wooden table in a bright kitchen, talking and drinking coffee.
A white square moves from the left edge of the frame toward the right edge on a black background.
A blue circle bounces up and down while a yellow triangle rotates slowly in the center.
The scene shows a robot arm picking up a box from a conveyor belt in a factory.
Heavy rain falls on a quiet village, and water flows down the narrow stone streets.
A cyclist rides quickly down a mountain trail, passing rocks, trees and a small river.
The video begins with a wide shot of a beach at sunset, then waves roll onto the sand.
A chef chops vegetables on a cutting board, then stirs a pot of soup on the stove.
Snow covers the roofs of the houses, and a train passes slowly over an old bridge.
The drone flies above a field of yellow flowers, showing a farmhouse and a red barn.
A woman in a black coat opens an umbrella and walks past shops with glowing windows.
Traffic lights change from red to green, and the cars in the left lane begin to move.
A cat jumps onto the windowsill, looks outside at the birds, and then lies down to sleep.
The shapes change color over time: the square turns green and the circle turns orange.
""".strip()

_TOKENIZER_VOCAB = 512
_BUILD_VERSION = "8"  # bump when the recipe changes; part of the cache key (8: Phi-4 audio)


def _train_tokenizer(dest: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TOKENIZER_VOCAB,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",  # noqa: S106 - a special token, not a password
        pad_token="<|endoftext|>",  # noqa: S106
        unk_token=None,
        additional_special_tokens=list(_SPECIAL_TOKENS[1:]),
    )
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(dest)
    return fast


def _word_token_mask(tokenizer: Any, vocab_size: int) -> "Any":
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    special = set(tokenizer.all_special_ids)
    for token_id in range(vocab_size):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        # Whole words with a leading space read as captions: " red", " street".
        mask[token_id] = len(text) >= 4 and text[0] == " " and text[1:].isalpha()
    return mask


def _save_with_word_head(model: Any, tokenizer: Any, dest: Path) -> None:
    """Shape the language head to emit whole words (see the module docstring); save in bf16."""
    import torch

    with torch.no_grad():
        head = model.lm_head.weight
        head.mul_(8.0)
        head[~_word_token_mask(tokenizer, int(head.shape[0]))] = 0.0
    model.to(torch.bfloat16).save_pretrained(dest)


def _build_qwen2_5_vl(dest: Path, seed: int) -> None:
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(dest)
    vocab = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL_TOKENS}
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
    _save_with_word_head(model, tokenizer, dest)
    size = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=_CHAT_TEMPLATE,
    )
    processor.save_pretrained(dest)
    gen = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"]]}
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=2))


_QWEN3_5_LINEAR = {
    "layer_types": ["linear_attention", "full_attention"],
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 128,  # vLLM's CPU GDN kernel takes head dimension 128 only
    "linear_value_head_dim": 128,
    "linear_num_key_heads": 1,
    "linear_num_value_heads": 2,
}
"""Qwen3.5's Gated DeltaNet layer, tiny: one linear-attention layer, then a full-attention one."""


def _build_qwen3_vl_family(dest: Path, seed: int, family: str) -> None:
    """A tiny Qwen3-VL-family checkpoint: ``qwen3_vl`` (dense), ``qwen3_5`` or ``cosmos3``.

    All three share Qwen3-VL's vision tower (patch 16, a 32-aligned grid after the 2x2 merge, one
    deepstack layer) and processor. Text head_dim 64 with an interleaved mrope section of 8/12/12;
    the head is shaped as for Qwen2.5-VL. ``qwen3_5`` makes the language model hybrid (one Gated
    DeltaNet layer, :data:`_QWEN3_5_LINEAR`); ``cosmos3`` writes the Qwen3-VL weights in Cosmos
    3's unified layout (:func:`_cosmos3_layout`).
    """
    import torch
    import transformers
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(dest)
    vocab = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL_TOKENS}
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
        text_config |= _QWEN3_5_LINEAR
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
    _save_with_word_head(model, tokenizer, dest)
    if family == "cosmos3":
        _cosmos3_layout(dest)
    template = _QWEN3_5_CHAT_TEMPLATE if family == "qwen3_5" else _CHAT_TEMPLATE
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


def _build_qwen3_vl(dest: Path, seed: int) -> None:
    _build_qwen3_vl_family(dest, seed, "qwen3_vl")


def _build_qwen3_5(dest: Path, seed: int) -> None:
    _build_qwen3_vl_family(dest, seed, "qwen3_5")


def _build_cosmos3(dest: Path, seed: int) -> None:
    _build_qwen3_vl_family(dest, seed, "cosmos3")


def _cosmos3_layout(dest: Path) -> None:
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


_BUILDERS: dict[str, Callable[[Path, int], None]] = {
    "qwen": _build_qwen2_5_vl,
    "cosmos_r1": _build_qwen2_5_vl,  # Cosmos-Reason1-7B is a Qwen2.5-VL fine-tune
    "cosmos_r2": _build_qwen3_vl,  # Cosmos-Reason2-8B is a Qwen3-VL fine-tune
    "qwen3_vl": _build_qwen3_vl,  # dense stand-in for the pinned Qwen3-VL MoE (same processor)
    "qwen3_vl_moe": build_qwen3_vl_moe,  # the pinned architecture: Qwen3-VL with tiny experts
    "qwen3_5": _build_qwen3_5,  # hybrid: Qwen3-VL's vision, Gated DeltaNet + attention layers
    "cosmos3": _build_cosmos3,  # Cosmos 3's unified layout around a Qwen3-VL reasoner
    "nemotron_vl": build_nemotron_vl,
    "phi4": build_phi4,  # Phi-4-multimodal with local remote code and a vision LoRA
    "chat": build_llava_onevision,  # any chat-template VLM: LLaVA-OneVision (video)
    "chat_image": build_llava,  # chat on an image-only model: LLaVA-1.5
}


def tiny_variants() -> tuple[str, ...]:
    """Variants for which :func:`tiny_checkpoint` can build a checkpoint."""
    return tuple(sorted(_BUILDERS))


def _default_root() -> Path:
    env = os.environ.get("VLMCAP_TINY_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlmcap" / "tiny"


def tiny_checkpoint(
    variant: str = "qwen", dest: Path | str | None = None, *, seed: int = 0
) -> Path:
    """Build (or reuse) a deterministic tiny checkpoint for ``variant`` and return its folder.

    Args:
        variant: a plugin variant with a tiny recipe (see :func:`tiny_variants`).
        dest: target folder. ``None`` uses a cache folder (``$VLMCAP_TINY_DIR`` or
            ``~/.cache/vlmcap/tiny``) keyed by variant, seed and recipe version.
        seed: seed of the random weights.

    Returns:
        The folder, holding ``config.json``, safetensors weights, tokenizer, processor and chat
        template. A folder that already holds a complete build of the same key is reused.

    Raises:
        UnknownVariantError: no tiny recipe for ``variant``.
    """
    if variant not in _BUILDERS:
        raise UnknownVariantError(variant, tiny_variants(), what="tiny checkpoint recipe")
    key = hashlib.sha256(f"{variant}:{seed}:{_BUILD_VERSION}".encode()).hexdigest()[:12]
    target = Path(dest) if dest is not None else _default_root() / f"{variant}-{key}"
    return build_atomically(target, key, lambda tmp: _BUILDERS[variant](tmp, seed))


def build_atomically(target: Path, key: str, build: Callable[[Path], None]) -> Path:
    """``build`` a checkpoint into ``target`` unless it holds a complete build stamped ``key``."""
    stamp = target / ".vlmcap-tiny"
    if stamp.is_file() and stamp.read_text() == key:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp folder and move into place, so a killed build never leaves a
    # half-written checkpoint that looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".vlmcap-tiny").write_text(key)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
