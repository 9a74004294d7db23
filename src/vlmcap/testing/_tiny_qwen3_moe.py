"""A tiny Qwen3-VL-MoE checkpoint (``tiny_checkpoint("qwen3_vl_moe")``), the pinned architecture.

The ``qwen3_vl`` plugin pins Qwen/Qwen3-VL-30B-A3B-Instruct, a
``Qwen3VLMoeForConditionalGeneration``. This recipe is the dense ``qwen3_vl`` recipe of
:mod:`vlmcap.testing._tiny_qwen` (same tokenizer, processor, chat template, generation config,
vision tower, attention and word-emitting head) with every decoder MLP replaced by a sparse MoE
block of a few tiny experts.

**Expert weight layout.** The published checkpoint stores each layer's experts as two fused,
*transposed* tensors, and that is what vLLM's ``qwen3_vl_moe`` loader reads (its decoder layers
pass ``is_fused_checkpoint_transposed=True``, so the loader transposes the last two dims and
splits gate/up along dim 1)::

    model.language_model.layers.N.mlp.experts.gate_up_proj   [E, hidden, 2 * moe_intermediate]
    model.language_model.layers.N.mlp.experts.down_proj      [E, moe_intermediate, hidden]
    model.language_model.layers.N.mlp.gate.weight            [E, hidden]

Transformers 5 keeps these parameters as ``[E, 2 * moe_intermediate, hidden]`` and
``[E, hidden, moe_intermediate]`` in memory, and its ``save_pretrained`` writes them that way:
the reverse of its load-time ``Transpose(1, 2, check_dims=True)`` only transposes when the shape
differs from the model's own, which it never does on save. vLLM then fails with a size mismatch.
So the weights are written here with ``safetensors`` in the published layout; transformers still
loads them (its converter transposes them back).
"""

import json
from pathlib import Path
from typing import Any

from vlmcap.testing._tiny_qwen import build_qwen3_vl


NUM_EXPERTS = 4
EXPERTS_PER_TOKEN = 2
MOE_INTERMEDIATE = 32  # 2 * 32 != hidden 128: the fused layouts cannot be mistaken for each other

_WEIGHTS = "model.safetensors"
_FUSED_EXPERTS = (".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")


def _strip(sub: dict[str, Any]) -> dict[str, Any]:
    """A dense sub-config as keyword arguments of the MoE one (its own model type dropped)."""
    drop = {"model_type", "architectures", "transformers_version", "dtype", "torch_dtype"}
    return {k: v for k, v in sub.items() if k not in drop}


def moe_config(dense_config: dict[str, Any]) -> Any:
    """The ``Qwen3VLMoeConfig`` of a dense Qwen3-VL ``config.json``: same sizes, MoE MLPs."""
    from transformers import Qwen3VLMoeConfig

    text = _strip(dense_config["text_config"])
    text.update(
        num_experts=NUM_EXPERTS,
        num_experts_per_tok=EXPERTS_PER_TOKEN,
        moe_intermediate_size=MOE_INTERMEDIATE,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        norm_topk_prob=True,  # published config; vLLM reads it, transformers always renormalises
    )
    config = Qwen3VLMoeConfig(
        text_config=text,
        vision_config=_strip(dense_config["vision_config"]),
        image_token_id=dense_config["image_token_id"],
        video_token_id=dense_config["video_token_id"],
        vision_start_token_id=dense_config["vision_start_token_id"],
        vision_end_token_id=dense_config["vision_end_token_id"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen3VLMoeForConditionalGeneration"]
    return config


def to_published_layout(state: dict[str, Any]) -> dict[str, Any]:
    """Transformers-5 state dict -> the published (and vLLM) naming and expert layout."""
    return {
        name: (t.transpose(1, 2) if name.endswith(_FUSED_EXPERTS) else t).contiguous()
        for name, t in state.items()
    }


def build_qwen3_vl_moe(dest: Path, seed: int) -> None:
    """Build the tiny Qwen3-VL-MoE into ``dest`` (see the module docstring)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Qwen3VLMoeForConditionalGeneration


    # The dense recipe writes the tokenizer, processor, chat template and generation config;
    # its config and weights are then replaced by the MoE ones.
    build_qwen3_vl(dest, seed)
    dense_weights = load_file(str(dest / _WEIGHTS))
    config = moe_config(json.loads((dest / "config.json").read_text()))
    torch.manual_seed(seed + 1)
    model = Qwen3VLMoeForConditionalGeneration(config).to(torch.bfloat16)
    state = {name: t.detach() for name, t in model.state_dict().items()}
    # Everything but the MLPs has the dense layout: keep the dense tensors (the shaped head too).
    shared = {
        name: dense_weights[name]
        for name, t in state.items()
        if name in dense_weights and dense_weights[name].shape == t.shape
    }
    if "lm_head.weight" not in shared:
        raise RuntimeError("the dense qwen3_vl recipe no longer matches the MoE naming")
    state.update(shared)
    save_file(to_published_layout(state), str(dest / _WEIGHTS), metadata={"format": "pt"})
    config.dtype = "bfloat16"
    config.save_pretrained(dest)
    # Transformers 5 writes ``num_experts`` as its alias ``num_local_experts``; older releases
    # (and the published config) read ``num_experts``, so write both.
    path = dest / "config.json"
    saved = json.loads(path.read_text())
    saved["text_config"]["num_experts"] = NUM_EXPERTS
    path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
