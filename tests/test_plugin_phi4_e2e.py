"""phi4 (Phi-4-multimodal) end to end: stage 1 and stage 2 through a real vLLM engine.

The tiny checkpoint (``tiny_checkpoint("phi4")``) carries its own remote code (config and
processor, loaded with ``trust_remote_code`` from the folder), tiny weights and the
``vision-lora/`` adapter that the plugin attaches to every request. One engine for the module.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import vlmcap
from vlmcap._vllm_compat import EngineAdapter, shutdown_llm
from vlmcap.plugins.phi4 import VISION_LORA_DIR, VllmPhi4
from vlmcap.testing import synthetic_clip, tiny_checkpoint
from vlmcap.testing._tiny_phi4 import DYNAMIC_HD, IMAGE_TOKEN_ID


PROMPT = "Describe this video."
REFINE = "Refine this caption, and make it clearer, longer and more precise for the reader: "


def _config(**kw: Any) -> vlmcap.VllmConfig:
    return vlmcap.VllmConfig(
        model_variant="phi4",
        model_path=tiny_checkpoint("phi4"),
        max_output_tokens=12,
        max_model_len=4096,
        sampling=vlmcap.VllmSamplingConfig(temperature=0.0, top_p=1.0, min_tokens=0),
        **kw,
    )


def _clips() -> list[torch.Tensor]:
    """Three 3-frame clips of different sizes and looks (the second inverted)."""
    clips = [synthetic_clip(3, 112, 112 + 32 * i, seed=i) for i in range(3)]
    return [clips[0], 255 - clips[1], clips[2].flip(1)]


@pytest.fixture(scope="module")
def processor() -> Any:
    """The checkpoint's remote-code processor, through the plugin."""
    return vlmcap.auto_processor(_config())


# --- the checkpoint and its processor (no engine) ----------------------------------------------


def test_phi4_has_a_tiny_recipe() -> None:
    assert "phi4" in vlmcap.testing.tiny_variants()
    root = tiny_checkpoint("phi4")
    for name in ("config.json", "model.safetensors", "configuration_phi4mm.py",
                 "processing_phi4mm.py", "preprocessor_config.json", "tokenizer.json",
                 f"{VISION_LORA_DIR}/adapter_config.json",
                 f"{VISION_LORA_DIR}/adapter_model.safetensors"):
        assert (root / name).is_file(), name


def test_the_processor_is_the_folders_remote_code(processor: Any) -> None:
    assert type(processor).__name__ == "Phi4MMProcessor"
    assert type(processor).__module__.startswith("transformers_modules.")
    assert processor.image_processor.dynamic_hd == DYNAMIC_HD
    assert processor.audio_processor.sampling_rate == 16000


def test_placeholders_expand_to_the_native_token_counts(processor: Any) -> None:
    inp = VllmPhi4.make_llm_input(PROMPT, _clips()[2], processor)
    prompt, images = inp["prompt"], inp["multi_modal_data"]["image"]
    assert prompt == f"<|user|><|image_1|><|image_2|><|image_3|>{PROMPT}<|end|><|assistant|>"
    out = processor(text=prompt, images=images)
    counts = processor.image_processor(images)["num_img_tokens"]
    assert int((out["input_ids"][0] == IMAGE_TOKEN_ID).sum()) == sum(counts) > 3 * 256
    assert tuple(out["input_image_embeds"].shape) == (3, 2, 3, 448, 448)  # global + 1 crop
    assert tuple(out["image_attention_mask"].shape) == (3, 2, 32, 32)
    assert out["image_sizes"].tolist() == [[448, 448]] * 3
    text_only = processor(text=prompt)["input_ids"][0].tolist()
    assert IMAGE_TOKEN_ID not in text_only
    assert processor.tokenizer.convert_tokens_to_ids("<|image_3|>") in text_only


# --- the real engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[vlmcap.VllmConfig, Any, Any, Any]]:
    """(config, llm, processor, sampling params) of one engine for the module.

    The engine leaves audio on, as cosmos-curate's Phi-4 plugin does (vlmcap's sets it to 0):
    the tiny checkpoint accepts what the real model accepts, audio tower included.
    """
    config = _config(batch_size=2)
    kwargs = VllmPhi4.engine_kwargs(config)
    kwargs["limit_mm_per_prompt"] = {**kwargs["limit_mm_per_prompt"], "audio": 1}
    llm = vlmcap.LLM(**kwargs)
    try:
        yield config, llm, vlmcap.auto_processor(config), vlmcap.sampling_params(config)
    finally:
        shutdown_llm(llm)


def _record_loras(llm: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``lora_request`` of every request added to ``llm``'s engine from now on."""
    seen: list[Any] = []
    add: Callable[..., Any] = llm.llm_engine.add_request

    def recording_add(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("lora_request"))
        return add(*args, **kwargs)

    monkeypatch.setattr(llm.llm_engine, "add_request", recording_add)
    return seen


@pytest.mark.engine
def test_stage1_and_stage2_on_the_engine(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config, llm, processor, params = engine
    loras = _record_loras(llm, monkeypatch)
    inputs = vlmcap.make_model_inputs(_clips(), config, processor, PROMPT)
    only1 = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    assert all(r.ok and r.text.strip() and r.stages == 1 for r in only1), only1
    assert all(r.output_tokens > 0 and r.prompt_tokens > 3 * 256 for r in only1), only1
    assert len({r.text for r in only1}) > 1, f"captions should differ per clip: {only1}"

    res = vlmcap.caption_results(
        inputs, llm, processor, params, config, 0, stage2_prompts=[REFINE, None, REFINE]
    )
    assert [r.stages for r in res] == [2, 1, 2], res
    assert all(r.ok and r.text.strip() for r in res), res
    for i in (0, 2):  # stage 2 re-sends the images with the refine prompt and the caption
        assert res[i].prompt_tokens > 2 * only1[i].prompt_tokens
        assert res[i].output_tokens > only1[i].output_tokens
    assert (res[1].text, res[1].prompt_tokens) == (only1[1].text, only1[1].prompt_tokens)

    lora = VllmPhi4.lora_request(config)
    assert len(loras) == 3 + 5  # stage 1, then stage 1 and two refinements
    assert all(r is not None and r.lora_path == lora.lora_path for r in loras)
    assert lora.lora_path == str(tiny_checkpoint("phi4") / VISION_LORA_DIR)


@pytest.mark.engine
def test_results_keep_the_input_order(engine: Any) -> None:
    config, llm, processor, params = engine
    inputs = vlmcap.make_model_inputs(_clips(), config, processor, PROMPT)
    forward = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    backward = vlmcap.caption_results(inputs[::-1], llm, processor, params, config, 0)
    assert [(r.text, r.prompt_tokens) for r in backward[::-1]] == [
        (r.text, r.prompt_tokens) for r in forward
    ]
    assert len({r.prompt_tokens for r in forward}) == 3  # sizes differ, so do image tokens


@pytest.mark.engine
def test_the_vision_lora_changes_the_captions(engine: Any) -> None:
    config, llm, processor, params = engine
    inputs = vlmcap.make_model_inputs(_clips(), config, processor, PROMPT)
    with_lora = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    bare = EngineAdapter(llm, lora_request=None)  # the same engine, requests without the LoRA
    without = vlmcap.caption_results(inputs, bare, processor, params, config, 0)
    assert all(r.ok and r.text.strip() for r in without), without
    assert [r.prompt_tokens for r in without] == [r.prompt_tokens for r in with_lora]
    assert [r.text for r in without] != [r.text for r in with_lora]
