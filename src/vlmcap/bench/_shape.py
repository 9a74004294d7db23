"""A Qwen2.5-VL-7B-Instruct-shaped checkpoint folder without weights, for ``load_format="dummy"``.

The config has the real dimensions; the tokenizer is synthetic (word-level, the real vocabulary
size and special-token ids), so prompt lengths and every kernel shape match the real model while
nothing is downloaded.
"""

import json
from pathlib import Path

from vlmcap.testing._tiny_base import CHAT_TEMPLATE


VOCAB = 152064
SPECIAL = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
_WORDS = [
    "you",
    "are",
    "a",
    "helpful",
    "assistant",
    "system",
    "user",
    "elaborate",
    "on",
    "the",
    "visual",
    "and",
    "narrative",
    "elements",
    "of",
    "video",
    "in",
    "detail",
    "describe",
    "this",
    "improve",
    "refine",
    "following",
    "description",
    "focus",
    "highlighting",
    "key",
    "sensory",
    "ensure",
    "is",
    "clear",
    "precise",
    "paints",
    "compelling",
    "picture",
    "scene",
    ".",
    ",",
    ":",
    "\n",
]


def config_dict() -> dict[str, object]:
    """``config.json`` of Qwen2.5-VL-7B-Instruct (real sizes)."""
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": False,
        "image_token_id": SPECIAL["<|image_pad|>"],
        "video_token_id": SPECIAL["<|video_pad|>"],
        "vision_start_token_id": SPECIAL["<|vision_start|>"],
        "vision_end_token_id": SPECIAL["<|vision_end|>"],
        "bos_token_id": SPECIAL["<|endoftext|>"],
        "eos_token_id": SPECIAL["<|im_end|>"],
        "text_config": {
            "model_type": "qwen2_5_vl_text",
            "vocab_size": VOCAB,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "max_window_layers": 28,
            "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "bos_token_id": SPECIAL["<|endoftext|>"],
            "eos_token_id": SPECIAL["<|im_end|>"],
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
        },
        "vision_config": {
            "model_type": "qwen2_5_vl",
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "in_chans": 3,
            "in_channels": 3,
            "out_hidden_size": 3584,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "hidden_act": "silu",
        },
    }


def build(dest: Path) -> Path:
    """Write config, tokenizer, processor and chat template to ``dest`` (no weights)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    dest.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(_WORDS))}
    for i in range(len(vocab), SPECIAL["<|endoftext|>"]):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w100"))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="removed")
    tok.add_special_tokens(list(SPECIAL))  # in id order: 151643, 151644, ...
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="w100",
    )
    fast.add_special_tokens({"additional_special_tokens": list(SPECIAL)[3:]})
    for token, want in SPECIAL.items():
        got = fast.convert_tokens_to_ids(token)
        if got != want:
            msg = f"{token} got id {got}, expected {want}"
            raise RuntimeError(msg)
    fast.chat_template = CHAT_TEMPLATE
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=fast,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(dest)
    (dest / "config.json").write_text(json.dumps(config_dict(), indent=2))
    gen = {"bos_token_id": SPECIAL["<|endoftext|>"], "eos_token_id": [SPECIAL["<|im_end|>"]]}
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=2))
    return dest
