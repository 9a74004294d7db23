"""Deterministic tiny checkpoints that a real vLLM engine loads on CPU and GPU.

No model hub is reachable from CI, so the end-to-end tests run on checkpoints that vlmcap builds
itself: the real architecture (config class, processor, chat template), shrunk to a few MB, with
random weights and a byte-level BPE tokenizer trained on a small embedded corpus. The language
head is shaped so that greedy decoding emits visible words instead of whitespace: the rows of
every token that decodes to no letter (special tokens, whitespace, punctuation) are zeroed and
the rest are scaled up, so the argmax always lands on a word piece.
"""

import hashlib
from collections.abc import Callable
from pathlib import Path

from vlmcap._errors import UnknownVariantError
from vlmcap.testing._tiny_base import BUILD_VERSION, build_atomically, default_root
from vlmcap.testing._tiny_chat import build_llava, build_llava_onevision
from vlmcap.testing._tiny_nemotron import build_nemotron_vl
from vlmcap.testing._tiny_phi4 import build_phi4
from vlmcap.testing._tiny_qwen import (
    build_cosmos3,
    build_qwen2_5_vl,
    build_qwen3_5,
    build_qwen3_vl,
)
from vlmcap.testing._tiny_qwen3_moe import build_qwen3_vl_moe


_BUILDERS: dict[str, Callable[[Path, int], None]] = {
    "qwen": build_qwen2_5_vl,
    "cosmos_r1": build_qwen2_5_vl,  # Cosmos-Reason1-7B is a Qwen2.5-VL fine-tune
    "cosmos_r2": build_qwen3_vl,  # Cosmos-Reason2-8B is a Qwen3-VL fine-tune
    "qwen3_vl": build_qwen3_vl,  # dense stand-in for the pinned Qwen3-VL MoE (same processor)
    "qwen3_vl_moe": build_qwen3_vl_moe,  # the pinned architecture: Qwen3-VL with tiny experts
    "qwen3_5": build_qwen3_5,  # hybrid: Qwen3-VL's vision, Gated DeltaNet + attention layers
    "cosmos3": build_cosmos3,  # Cosmos 3's unified layout around a Qwen3-VL reasoner
    "nemotron_vl": build_nemotron_vl,
    "phi4": build_phi4,  # Phi-4-multimodal with local remote code and a vision LoRA
    "chat": build_llava_onevision,  # any chat-template VLM: LLaVA-OneVision (video)
    "chat_image": build_llava,  # chat on an image-only model: LLaVA-1.5
}


def tiny_variants() -> tuple[str, ...]:
    """Variants for which :func:`tiny_checkpoint` can build a checkpoint."""
    return tuple(sorted(_BUILDERS))


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
    key = hashlib.sha256(f"{variant}:{seed}:{BUILD_VERSION}".encode()).hexdigest()[:12]
    target = Path(dest) if dest is not None else default_root() / f"{variant}-{key}"
    return build_atomically(target, key, lambda tmp: _BUILDERS[variant](tmp, seed))
