"""The first-party plugins beyond ``qwen``: Cosmos-Reason1/2, Qwen3-VL, Qwen3.5 and Cosmos 3.

Fast tests pin each plugin's own rules (answer extraction, refine prompts, engine arguments,
refused settings); the ``engine`` tests run stage 1 and stage 2 through a real vLLM engine on
each variant's tiny checkpoint (one engine per variant, alive one at a time).
"""

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import vlmcap
from vlmcap.plugins.cosmos3 import VllmCosmos3
from vlmcap.plugins.cosmos_reason import (
    DEFAULT_REFINE_PROMPT,
    SYSTEM_PROMPT,
    VllmCosmosReason1VL,
    VllmCosmosReason2VL,
    extract_answer,
)
from vlmcap.plugins.qwen3_5 import VllmQwen3_5
from vlmcap.plugins.qwen3_vl import VllmQwen3VL
from vlmcap.testing import synthetic_clip, tiny_checkpoint


NEW_VARIANTS = ("cosmos_r1", "qwen3_vl", "cosmos_r2", "qwen3_5", "cosmos3")
COSMOS = (VllmCosmosReason1VL, VllmCosmosReason2VL)
QWEN3_ARCH = ("qwen3_vl", "cosmos_r2", "qwen3_5", "cosmos3")


def _output(text: str) -> Any:
    return SimpleNamespace(outputs=[SimpleNamespace(text=text)])


def _config(variant: str, **kw: Any) -> vlmcap.VllmConfig:
    return vlmcap.VllmConfig(model_variant=variant, model_path=tiny_checkpoint(variant), **kw)


@pytest.fixture(scope="module")
def processors() -> dict[str, Any]:
    """Each new variant's processor, loaded from its tiny checkpoint."""
    return {v: vlmcap.auto_processor(_config(v)) for v in NEW_VARIANTS}


# --- registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "cls"),
    [("cosmos_r1", VllmCosmosReason1VL), ("cosmos_r2", VllmCosmosReason2VL),
     ("qwen3_vl", VllmQwen3VL), ("qwen3_5", VllmQwen3_5), ("cosmos3", VllmCosmos3)],
)
def test_variants_are_registered(variant: str, cls: type) -> None:
    assert vlmcap.get_plugin(variant) is cls
    assert cls.model_variant() == variant
    assert variant in vlmcap.testing.tiny_variants()


# --- decode ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "caption"),
    [
        ("<think>\nlook\n</think>\n\n<answer>\nA red car.\n</answer>", "A red car."),
        ("<ANSWER>two\nlines</Answer>", "two\nlines"),
        ("prefix <answer> first </answer> <answer>second</answer>", "first"),
        ("<answer></answer>", ""),
        ("  no tags at all \n", "no tags at all"),
        ("<answer>unterminated", "<answer>unterminated"),
    ],
)
def test_cosmos_decode_keeps_the_answer_or_falls_back(text: str, caption: str) -> None:
    assert extract_answer(text) == caption
    for plugin in COSMOS:
        assert plugin.decode(_output(text)) == caption


def test_qwen3_decode_is_the_stripped_text() -> None:
    assert VllmQwen3VL.decode(_output("\n<answer>x</answer> ")) == "<answer>x</answer>"


# --- inputs and refinement ---------------------------------------------------------------------


@pytest.mark.parametrize("plugin", COSMOS)
def test_cosmos_prompt_is_chat_text_with_the_system_message(
    plugin: Any, processors: dict[str, Any]
) -> None:
    processor = processors[plugin.model_variant()]
    clip = synthetic_clip(4, 64, 96, seed=1)
    md = vlmcap.VideoMetadata.uniform(4, 4.0)
    inp = plugin.make_llm_input("Describe it.", clip, processor, metadata=md,
                                config=_config(plugin.model_variant()))
    assert set(inp) == {"prompt", "multi_modal_data"}
    prompt = inp["prompt"]
    assert isinstance(prompt, str)
    assert SYSTEM_PROMPT in prompt and "Describe it." in prompt
    assert prompt.index(SYSTEM_PROMPT) < prompt.index("<|video_pad|>") < prompt.index("Describe")
    assert prompt.endswith("<|im_start|>assistant\n")
    frames, sent = inp["multi_modal_data"]["video"]
    assert frames.dtype == torch.uint8 and frames.shape[0] == 4
    assert sent["fps"] == 4.0
    assert (sent["width"], sent["height"]) == (frames.shape[3], frames.shape[2])


@pytest.mark.parametrize("plugin", COSMOS)
def test_cosmos_refine_rebuilds_the_prompt_over_the_same_video(
    plugin: Any, processors: dict[str, Any]
) -> None:
    processor = processors[plugin.model_variant()]
    clip = synthetic_clip(4, 64, 64, seed=2)
    inp = plugin.make_llm_input("Describe it.", clip, processor,
                                metadata=vlmcap.VideoMetadata.uniform(4, 2.0))
    stage1 = vlmcap.VllmCaptionRequest("s1", inp, caption="A blue circle bounces.",
                                       stage2_prompt="x")
    for prefix, expected in ((None, DEFAULT_REFINE_PROMPT), ("Refine: ", "Refine: ")):
        stage2 = plugin.make_refined_llm_request(stage1, processor, prefix)
        text = stage2.inputs["prompt"]
        assert SYSTEM_PROMPT in text
        assert expected + "A blue circle bounces." in text
        assert stage2.inputs["multi_modal_data"]["video"] is inp["multi_modal_data"]["video"]
        assert stage2.request_id != "s1"
        assert stage2.caption is None and stage2.stage2_prompt is None
    with pytest.raises(ValueError, match="caption"):
        plugin.make_refined_llm_request(vlmcap.VllmCaptionRequest("s1", inp), processor)


def test_cosmos_r1_resizes_on_the_client_unless_preprocess(processors: dict[str, Any]) -> None:
    processor = processors["cosmos_r1"]
    clip = synthetic_clip(4, 100, 150, seed=3)
    md = vlmcap.VideoMetadata.uniform(4, 2.0)
    client = VllmCosmosReason1VL.make_llm_input(
        "x", clip, processor, metadata=md, config=_config("cosmos_r1"))
    model_side = VllmCosmosReason1VL.make_llm_input(
        "x", clip, processor, metadata=md, config=_config("cosmos_r1", preprocess=True))
    h, w = client["multi_modal_data"]["video"][0].shape[2:]
    assert h % 28 == 0 and w % 28 == 0
    assert tuple(model_side["multi_modal_data"]["video"][0].shape[2:]) == (100, 150)


@pytest.mark.parametrize("variant", QWEN3_ARCH)
@pytest.mark.parametrize("preprocess", [False, True])
def test_qwen3_arch_ships_frames_unresized_with_metadata(
    variant: str, preprocess: bool, processors: dict[str, Any]
) -> None:
    plugin: Any = vlmcap.get_plugin(variant)  # plugin-specific keyword extras
    clip = synthetic_clip(6, 100, 150, seed=4)
    config = _config(variant, preprocess=preprocess, sampling_fps=3.0)
    inp = plugin.make_llm_input("Describe it.", clip, processors[variant], config=config)
    frames, md = inp["multi_modal_data"]["video"]
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (6, 3, 100, 150)
    assert md["fps"] == 3.0 and md["total_num_frames"] == 6
    assert md["frames_indices"] == list(range(6)) and (md["width"], md["height"]) == (150, 100)


def test_qwen3_refine_contains_the_caption(processors: dict[str, Any]) -> None:
    processor = processors["qwen3_vl"]
    inp = VllmQwen3VL.make_llm_input("Describe it.", synthetic_clip(4, 64, 64), processor)
    stage1 = vlmcap.VllmCaptionRequest("s1", inp, caption="A white square moves.")
    stage2 = VllmQwen3VL.make_refined_llm_request(stage1, processor, "Refine: ")
    text = processor.tokenizer.decode(stage2.inputs["prompt_token_ids"])
    assert "Refine: A white square moves." in text
    assert stage2.inputs["multi_modal_data"]["video"] is inp["multi_modal_data"]["video"]


def test_qwen3_5_asks_for_no_thinking_in_both_stages(processors: dict[str, Any]) -> None:
    processor = processors["qwen3_5"]
    inp = VllmQwen3_5.make_llm_input("Describe it.", synthetic_clip(4, 64, 64), processor)
    stage1 = vlmcap.VllmCaptionRequest("s1", inp, caption="A white square moves.")
    stage2 = VllmQwen3_5.make_refined_llm_request(stage1, processor, "Refine: ")
    for ids in (inp["prompt_token_ids"], stage2.inputs["prompt_token_ids"]):
        # the tiny template renders Qwen3.5's enable_thinking=False as an empty think block
        assert processor.tokenizer.decode(ids).endswith("assistant\n<think>\n\n</think>\n\n")
    assert stage2.inputs["multi_modal_data"]["video"] is inp["multi_modal_data"]["video"]
    # a template without the switch gets no stray keyword (Qwen3-VL's renders the same as before)
    plain = processors["qwen3_vl"]
    clip = synthetic_clip(4, 64, 64)
    assert (VllmQwen3_5.make_llm_input("Describe it.", clip, plain)["prompt_token_ids"]
            == VllmQwen3VL.make_llm_input("Describe it.", clip, plain)["prompt_token_ids"])


@pytest.mark.parametrize(
    ("text", "caption"),
    [("<think>\nlong reasoning\n</think>\n\nA red car.", "A red car."),
     ("  A red car. ", "A red car."), ("<think></think>A red car.", "A red car.")],
)
def test_qwen3_5_decode_drops_a_think_block(text: str, caption: str) -> None:
    assert VllmQwen3_5.decode(_output(text)) == caption


def test_cosmos3_checkpoint_is_in_the_unified_layout() -> None:
    """The tiny Cosmos 3 keeps Cosmos 3's flat keys in two folders: the engine test proves vLLM
    maps them (its Cosmos3 weight mapper) rather than reading a Qwen3-VL layout."""
    from safetensors import safe_open

    root = tiny_checkpoint("cosmos3")
    assert not list(root.glob("*.safetensors"))
    with safe_open(str(root / "transformer" / "model.safetensors"), "pt") as f:
        language = set(f.keys())
    with safe_open(str(root / "vision_encoder" / "model.safetensors"), "pt") as f:
        vision = set(f.keys())
    assert {"embed_tokens.weight", "norm.weight", "lm_head.weight"} <= language
    assert any(k.startswith("layers.0.") for k in language)
    assert any(k.startswith("blocks.0.") for k in vision) and "patch_embed.proj.weight" in vision
    assert not any(k.startswith("model.") for k in language | vision)


# --- engine arguments and refused settings -----------------------------------------------------


@pytest.mark.parametrize("variant", NEW_VARIANTS)
def test_engine_kwargs_honour_the_settings(variant: str) -> None:
    plugin: Any = vlmcap.get_plugin(variant)  # engine_kwargs is the plugins' own helper
    base = plugin.engine_kwargs(_config(variant))
    assert base["model"] == str(tiny_checkpoint(variant))
    assert base["tensor_parallel_size"] == 1 and "quantization" not in base
    assert base["mm_processor_cache_gb"] > 0
    assert base["limit_mm_per_prompt"] == {"video": 1, "image": 0}
    tuned = plugin.engine_kwargs(
        _config(variant, fp8=True, num_gpus=4, disable_mmcache=True, max_model_len=2048)
    )
    assert tuned["quantization"] == "fp8" and tuned["tensor_parallel_size"] == 4
    assert tuned["mm_processor_cache_gb"] == 0.0 and tuned["max_model_len"] == 2048
    if variant in QWEN3_ARCH:  # the processor in vLLM always resizes
        assert "mm_processor_kwargs" not in base
    else:
        assert base["mm_processor_kwargs"] == {"do_resize": False}
        assert plugin.engine_kwargs(_config(variant, preprocess=True))["mm_processor_kwargs"] == {}


@pytest.mark.parametrize("variant", NEW_VARIANTS)
def test_image_input_is_refused(variant: str) -> None:
    plugin: Any = vlmcap.get_plugin(variant)
    with pytest.raises(vlmcap.UnsupportedSettingError, match="use_image_input"):
        plugin.engine_kwargs(_config(variant, use_image_input=True))


# --- the real engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=NEW_VARIANTS)
def engine(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[str, vlmcap.VllmConfig, Any, Any, Any]]:
    """(variant, config, llm, processor, sampling params): one engine per variant."""
    from vlmcap._vllm_compat import shutdown_llm

    variant: str = request.param
    config = _config(
        variant,
        max_output_tokens=12,
        max_model_len=4096,
        sampling=vlmcap.VllmSamplingConfig(temperature=0.0, top_p=1.0, min_tokens=0),
    )
    llm = vlmcap.vllm_model(config)
    try:
        yield variant, config, llm, vlmcap.auto_processor(config), vlmcap.sampling_params(config)
    finally:
        shutdown_llm(llm)


@pytest.mark.engine
def test_stage1_and_stage2_on_the_engine(engine: Any, tmp_path: Path) -> None:
    variant, config, llm, processor, params = engine
    clips = [synthetic_clip(8, 112, 112 + 32 * i, seed=i) for i in range(3)]
    inputs = vlmcap.make_model_inputs(clips, config, processor, "Describe this video.")
    only1 = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    assert all(r.ok and r.text.strip() and r.stages == 1 for r in only1), only1
    stage2: list[str | None] = ["Refine this caption: ", None, "Refine this caption: "]
    res = vlmcap.caption_results(
        inputs, llm, processor, params, config, 0, stage2_prompts=stage2
    )
    assert [r.stages for r in res] == [2, 1, 2], res
    assert all(r.ok and r.text.strip() for r in res), res
    assert all(r.output_tokens > 0 for r in res)
    for i in (0, 2):  # stage 2 re-sends the video with a longer prompt (system message included)
        assert res[i].prompt_tokens > 2 * only1[i].prompt_tokens
    assert (res[1].text, res[1].prompt_tokens) == (only1[1].text, only1[1].prompt_tokens)
    assert len({r.text for r in only1}) > 1, f"{variant}: captions should differ per clip"


# --- phi4 without an engine (the engine tests: test_plugin_phi4_e2e.py) ------------------------


class _StandInTokenizer:
    """Phi-4's chat format, enough for the plugin: it renders string content only."""

    def apply_chat_template(
        self, messages: list[dict[str, Any]], *, tokenize: bool, add_generation_prompt: bool
    ) -> str:
        assert not tokenize and add_generation_prompt
        (message,) = messages
        assert isinstance(message["content"], str)
        return f"<|{message['role']}|>{message['content']}<|end|><|assistant|>"


_PHI4_PROCESSOR = SimpleNamespace(tokenizer=_StandInTokenizer())


def test_phi4_sends_one_image_and_placeholder_per_frame() -> None:
    from vlmcap.plugins.phi4 import VllmPhi4

    clip = synthetic_clip(3, 40, 60, seed=5)
    inp = VllmPhi4.make_llm_input("Describe it.", clip, _PHI4_PROCESSOR)
    assert inp["prompt"] == (
        "<|user|><|image_1|><|image_2|><|image_3|>Describe it.<|end|><|assistant|>"
    )
    images = inp["multi_modal_data"]["image"]
    assert [im.size for im in images] == [(60, 40)] * 3 and images[0].mode == "RGB"
    hwc = clip.permute(0, 2, 3, 1).numpy()
    assert all((np.asarray(im) == hwc[i]).all() for i, im in enumerate(images))
    floats = VllmPhi4.make_llm_input("x", clip.float() / 255.0, _PHI4_PROCESSOR)
    assert (np.asarray(floats["multi_modal_data"]["image"][2]) == hwc[2]).all()
    with pytest.raises(vlmcap.PluginError, match="1 to 100 frames"):
        VllmPhi4.make_llm_input("x", synthetic_clip(101, 8, 8), _PHI4_PROCESSOR)


def test_phi4_refine_and_decode() -> None:
    from vlmcap.plugins.phi4 import DEFAULT_REFINE_PROMPT, VllmPhi4

    inp = VllmPhi4.make_llm_input("Describe it.", synthetic_clip(2, 16, 16), _PHI4_PROCESSOR)
    stage1 = vlmcap.VllmCaptionRequest("s1", inp, caption="A cat sleeps.", stage2_prompt="r")
    stage2 = VllmPhi4.make_refined_llm_request(stage1, _PHI4_PROCESSOR)
    assert stage2.inputs["prompt"] == (
        f"<|user|><|image_1|><|image_2|>{DEFAULT_REFINE_PROMPT}A cat sleeps.<|end|><|assistant|>"
    )
    assert stage2.inputs["multi_modal_data"]["image"] is inp["multi_modal_data"]["image"]
    assert stage2.request_id != "s1" and stage2.caption is None and stage2.stage2_prompt is None
    custom = VllmPhi4.make_refined_llm_request(stage1, _PHI4_PROCESSOR, "Refine: ")
    assert "<|image_2|>Refine: A cat sleeps.<|end|>" in custom.inputs["prompt"]
    with pytest.raises(ValueError, match="caption"):
        VllmPhi4.make_refined_llm_request(vlmcap.VllmCaptionRequest("s1", inp), _PHI4_PROCESSOR)
    assert VllmPhi4.decode(_output("  A cat sleeps.\n")) == "A cat sleeps."


def test_phi4_engine_kwargs_enable_the_vision_lora(tmp_path: Path) -> None:
    from vlmcap.plugins.phi4 import VllmPhi4

    config = vlmcap.VllmConfig(model_variant="phi4", model_path=tmp_path)
    kw = VllmPhi4.engine_kwargs(config)
    assert kw["trust_remote_code"] and kw["enable_lora"] and kw["max_lora_rank"] >= 256
    assert kw["limit_mm_per_prompt"] == {"image": 100, "video": 0, "audio": 0}
    assert "quantization" not in kw and kw["tensor_parallel_size"] == 1
    tuned = VllmPhi4.engine_kwargs(
        vlmcap.VllmConfig(model_variant="phi4", model_path=tmp_path, fp8=True, num_gpus=2,
                          disable_mmcache=True, max_model_len=8192)
    )
    assert (tuned["quantization"], tuned["tensor_parallel_size"]) == ("fp8", 2)
    assert (tuned["mm_processor_cache_gb"], tuned["max_model_len"]) == (0.0, 8192)
    lora = VllmPhi4.lora_request(config)
    assert lora.lora_path == str(tmp_path / "vision-lora") and lora.lora_int_id == 1
