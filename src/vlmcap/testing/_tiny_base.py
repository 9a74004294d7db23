"""What every tiny checkpoint recipe shares: the tokenizer, the chat template, the word head.

The recipes (``_tiny_qwen``, ``_tiny_qwen3_moe``, ``_tiny_chat``, ``_tiny_phi4``,
``_tiny_nemotron``, ``_tiny_like``) import from here and from nowhere else in this package but
each other's builders; :mod:`vlmcap.testing._tiny` holds the recipe table. The tokenizer is a
byte-level BPE trained on a small embedded corpus. The language head is shaped so that greedy
decoding emits visible words instead of whitespace: the rows of every token that decodes to no
letter (special tokens, whitespace, punctuation) are zeroed and the rest are scaled up, so the
argmax always lands on a word piece.
"""

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A Qwen2-VL style chat template, written for vlmcap (system turn, vision placeholders).
CHAT_TEMPLATE = (
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
QWEN3_5_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(
    "<|im_start|>assistant\n{% endif %}",
    "<|im_start|>assistant\n{% if enable_thinking is defined and not enable_thinking %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}",
)

CORPUS = """
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

TOKENIZER_VOCAB = 512
BUILD_VERSION = "9"  # bump when a recipe changes; part of the cache key (9: Phi-4 code as files)


def train_tokenizer(dest: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",  # noqa: S106 - a special token, not a password
        pad_token="<|endoftext|>",  # noqa: S106
        unk_token=None,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(dest)
    return fast


def word_token_mask(tokenizer: Any, vocab_size: int) -> "Any":
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


def save_with_word_head(model: Any, tokenizer: Any, dest: Path) -> None:
    """Shape the language head to emit whole words (see the module docstring); save in bf16."""
    import torch

    with torch.no_grad():
        head = model.lm_head.weight
        head.mul_(8.0)
        head[~word_token_mask(tokenizer, int(head.shape[0]))] = 0.0
    model.to(torch.bfloat16).save_pretrained(dest)


def default_root() -> Path:
    """Where tiny checkpoints are cached: ``$VLMCAP_TINY_DIR`` or ``~/.cache/vlmcap/tiny``."""
    env = os.environ.get("VLMCAP_TINY_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlmcap" / "tiny"


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
