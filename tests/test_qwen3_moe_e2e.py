"""The tiny Qwen3-VL-MoE checkpoint (the architecture the ``qwen3_vl`` plugin pins).

Fast tests check the recipe without an engine: the pinned architecture with a few tiny experts,
the dense ``qwen3_vl`` recipe's tokenizer/processor/chat template, the experts written in the
published fused *transposed* layout that vLLM's ``qwen3_vl_moe`` loader reads (transformers 5's
own ``save_pretrained`` layout is rejected by vLLM with a size mismatch), and transformers
loading every weight. The ``engine`` test runs stage 1 and stage 2 through the ``qwen3_vl``
plugin on a real vLLM engine serving it (CPU here).
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

import vlmcap
from vlmcap.testing import synthetic_clip, tiny_checkpoint
from vlmcap.testing._tiny_qwen3_moe import EXPERTS_PER_TOKEN, MOE_INTERMEDIATE, NUM_EXPERTS


RECIPE = "qwen3_vl_moe"
SAME_AS_DENSE = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
    "generation_config.json",
)


@pytest.fixture(scope="module")
def moe_dir() -> Path:
    return tiny_checkpoint(RECIPE)


@pytest.fixture(scope="module")
def moe_weights(moe_dir: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(moe_dir / "model.safetensors"), "pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - not a dict


def _config_json(moe_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((moe_dir / "config.json").read_text())
    return config


# --- the recipe, no engine ---------------------------------------------------------------------


def test_recipe_is_registered_and_served_by_the_qwen3_vl_plugin() -> None:
    assert RECIPE in vlmcap.testing.tiny_variants()
    assert vlmcap.get_plugin("qwen3_vl").model_variant() == "qwen3_vl"


def test_config_is_the_pinned_moe_architecture(moe_dir: Path) -> None:
    config = _config_json(moe_dir)
    assert config["architectures"] == ["Qwen3VLMoeForConditionalGeneration"]
    assert config["model_type"] == "qwen3_vl_moe"
    text = config["text_config"]
    assert text["model_type"] == "qwen3_vl_moe_text"
    assert text["num_experts"] == NUM_EXPERTS == 4  # the name older transformers and vLLM read
    assert text["num_experts_per_tok"] == EXPERTS_PER_TOKEN == 2
    assert text["moe_intermediate_size"] == MOE_INTERMEDIATE
    assert (text["decoder_sparse_step"], text["mlp_only_layers"]) == (1, [])
    assert text["norm_topk_prob"] is True
    assert config["vision_config"]["model_type"] == "qwen3_vl_moe_vision"


def test_processor_files_are_the_dense_qwen3_vl_ones(moe_dir: Path) -> None:
    dense = tiny_checkpoint("qwen3_vl")
    for name in SAME_AS_DENSE:
        assert (moe_dir / name).read_bytes() == (dense / name).read_bytes(), name
    processor = vlmcap.auto_processor(
        vlmcap.VllmConfig(model_variant="qwen3_vl", model_path=moe_dir)
    )
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert processor.video_processor.patch_size == 16


def test_experts_are_fused_in_the_published_transposed_layout(
    moe_dir: Path, moe_weights: dict[str, torch.Tensor]
) -> None:
    text = _config_json(moe_dir)["text_config"]
    hidden, layers = text["hidden_size"], text["num_hidden_layers"]
    assert hidden != 2 * MOE_INTERMEDIATE  # else the two layouts look alike
    for n in range(layers):
        mlp = f"model.language_model.layers.{n}.mlp"
        shapes = {k.removeprefix(mlp): tuple(v.shape) for k, v in moe_weights.items()
                  if k.startswith(mlp + ".")}
        assert shapes == {
            ".experts.gate_up_proj": (NUM_EXPERTS, hidden, 2 * MOE_INTERMEDIATE),
            ".experts.down_proj": (NUM_EXPERTS, MOE_INTERMEDIATE, hidden),
            ".gate.weight": (NUM_EXPERTS, hidden),
        }
    assert all(t.dtype == torch.bfloat16 for t in moe_weights.values())
    # Attention, vision tower, embeddings and the word-emitting head are the dense recipe's.
    dense = tiny_checkpoint("qwen3_vl")
    with safe_open(str(dense / "model.safetensors"), "pt") as f:
        for name in ("lm_head.weight", "model.language_model.embed_tokens.weight",
                     "model.language_model.layers.1.self_attn.q_proj.weight",
                     "model.visual.blocks.0.attn.qkv.weight"):
            assert torch.equal(moe_weights[name], f.get_tensor(name)), name


def test_transformers_loads_every_weight(
    moe_dir: Path, moe_weights: dict[str, torch.Tensor]
) -> None:
    from transformers import Qwen3VLMoeForConditionalGeneration

    model, info = Qwen3VLMoeForConditionalGeneration.from_pretrained(
        moe_dir, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    state = model.state_dict()
    assert set(state) == set(moe_weights)
    for name in ("experts.gate_up_proj", "experts.down_proj"):
        key = f"model.language_model.layers.0.mlp.{name}"
        # transformers keeps [E, out, in] in memory; the file holds the transpose.
        assert torch.equal(state[key], moe_weights[key].transpose(1, 2))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[7, 8, 9, 10]])).logits
    assert logits.shape[-1] == _config_json(moe_dir)["text_config"]["vocab_size"]
    assert torch.isfinite(logits.float()).all()


# --- the real engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(moe_dir: Path) -> Iterator[tuple[vlmcap.VllmConfig, Any, Any, Any]]:
    """(config, llm, processor, sampling params) of one engine serving the tiny MoE."""
    from vlmcap._vllm_compat import shutdown_llm

    config = vlmcap.VllmConfig(
        model_variant="qwen3_vl",
        model_path=moe_dir,
        max_output_tokens=12,
        max_model_len=4096,
        sampling=vlmcap.VllmSamplingConfig(temperature=0.0, top_p=1.0, min_tokens=0),
    )
    llm = vlmcap.vllm_model(config)
    try:
        yield config, llm, vlmcap.auto_processor(config), vlmcap.sampling_params(config)
    finally:
        shutdown_llm(llm)


@pytest.mark.engine
def test_stage1_and_stage2_on_the_moe_engine(engine: Any) -> None:
    config, llm, processor, params = engine
    hf_config = llm.llm_engine.model_config.hf_config
    assert hf_config.architectures == ["Qwen3VLMoeForConditionalGeneration"]
    assert hf_config.text_config.num_experts == NUM_EXPERTS

    clips = [synthetic_clip(4, 112, 112 + 32 * i, seed=i) for i in range(3)]
    inputs = vlmcap.make_model_inputs(clips, config, processor, "Describe this video.")
    only1 = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    assert all(r.ok and r.text.strip() and r.stages == 1 for r in only1), only1
    assert all(r.output_tokens == 12 for r in only1), only1  # the head never emits <|im_end|>
    # A wider clip is more video tokens in the prompt.
    assert only1[0].prompt_tokens == only1[1].prompt_tokens < only1[2].prompt_tokens
    assert len({r.text for r in only1}) > 1, "captions should differ per clip"

    stage2: list[str | None] = ["Refine this caption: ", None, "Refine this caption: "]
    res = vlmcap.caption_results(
        inputs, llm, processor, params, config, 0, stage2_prompts=stage2
    )
    assert [r.stages for r in res] == [2, 1, 2], res
    assert all(r.ok and r.text.strip() for r in res), res
    for i in (0, 2):  # stage 2 re-sends the video with the stage-1 caption in the prompt
        assert res[i].prompt_tokens > 2 * only1[i].prompt_tokens
        assert res[i].output_tokens == only1[i].output_tokens + 12
    # Greedy decoding: a clip without stage 2 gets exactly its stage-1 result.
    assert (res[1].text, res[1].prompt_tokens) == (only1[1].text, only1[1].prompt_tokens)
