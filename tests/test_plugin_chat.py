"""The ``chat`` plugin: any vLLM vision-language model with a chat template.

Fast tests pin its rules (the model comes from ``model_path`` only, the input is chosen from what
vLLM accepts for the model, prompts come from the model's own chat template, settings are honoured
or refused, refinement reuses the media); the ``engine`` tests run stage 1 and stage 2 through a
real vLLM engine on two architectures outside the Qwen family, one engine alive at a time: a tiny
LLaVA-OneVision (takes video: the clip goes in as one video) and a tiny LLaVA-1.5 (images only:
the frames go in as images).
"""

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import vlmcap
from vlmcap.cli import main as cli_main
from vlmcap.plugins.chat import (
    MAX_IMAGES,
    ChatInputPlan,
    VllmChat,
    chat_token_ids,
    input_plan,
    plan_input,
)
from vlmcap.testing import synthetic_clip, tiny_checkpoint


VIDEO, IMAGE = "chat", "chat_image"
"""Tiny checkpoints: LLaVA-OneVision (image and video), LLaVA-1.5 (image only)."""


def _config(checkpoint: str = VIDEO, **kw: Any) -> vlmcap.VllmConfig:
    return vlmcap.VllmConfig(model_variant="chat", model_path=tiny_checkpoint(checkpoint), **kw)


def _output(text: str) -> Any:
    return SimpleNamespace(outputs=[SimpleNamespace(text=text)])


@pytest.fixture(scope="module")
def processors() -> dict[str, Any]:
    """The processor of each tiny checkpoint, loaded by the plugin."""
    return {c: vlmcap.auto_processor(_config(c)) for c in (VIDEO, IMAGE)}


# --- registry and the model path ---------------------------------------------------------------


def test_chat_is_a_builtin_with_tiny_checkpoints() -> None:
    assert vlmcap.get_plugin("chat") is VllmChat
    assert {"chat", "chat_image"} <= set(vlmcap.testing.tiny_variants())
    archs = {
        c: json.loads((tiny_checkpoint(c) / "config.json").read_text())["architectures"]
        for c in (VIDEO, IMAGE)
    }
    assert archs == {
        VIDEO: ["LlavaOnevisionForConditionalGeneration"],
        IMAGE: ["LlavaForConditionalGeneration"],
    }


def test_no_model_path_is_a_config_error() -> None:
    config = vlmcap.VllmConfig(model_variant="chat")
    for call in (vlmcap.vllm_model, vlmcap.auto_processor, VllmChat.engine_kwargs):
        with pytest.raises(vlmcap.ConfigError, match="pins no model.*model_path"):
            call(config)
    with pytest.raises(vlmcap.ConfigError, match="model_path"):
        VllmChat.make_llm_input("x", synthetic_clip(2, 8, 8), None)
    with pytest.raises(vlmcap.ConfigError, match="none pinned"):
        VllmChat.model_id()


def test_model_path_comes_from_the_config_or_using_model_path(tmp_path: Path) -> None:
    assert VllmChat.model_path(_config()) == tiny_checkpoint(VIDEO)
    with vlmcap.using_model_path("chat", tmp_path):
        assert VllmChat.model_path() == tmp_path
    with pytest.raises(vlmcap.ModelNotFoundError, match="not a folder"):
        VllmChat.model_path(vlmcap.VllmConfig(model_variant="chat", model_path=tmp_path / "no"))


def test_plugins_command_lists_chat_without_a_pinned_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["plugins"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "no pinned model" in lines["chat"] and "--model-path" in lines["chat"]
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in lines["qwen"]


# --- choosing the input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("supported", "use_image_input", "plan"),
    [
        ({"image": None, "video": None}, False, ChatInputPlan("video", 1, ("image",))),
        ({"image": None, "video": None}, True, ChatInputPlan("image", MAX_IMAGES, ("video",))),
        ({"image": None}, False, ChatInputPlan("image", MAX_IMAGES)),
        ({"image": 2, "video": 0}, False, ChatInputPlan("image", 2, ("video",))),
        (
            {"video": 1, "image": 1, "audio": None},
            False,
            ChatInputPlan("video", 1, ("audio", "image")),
        ),
        ({"vision_chunk": None, "image": None}, False, ChatInputPlan("image", MAX_IMAGES)),
    ],
)
def test_plan_prefers_video_and_respects_the_model_limits(
    supported: dict[str, int | None], use_image_input: bool, plan: ChatInputPlan
) -> None:
    got = plan_input(supported, use_image_input=use_image_input, model="m")
    assert got == plan
    limits = got.limit_mm_per_prompt
    assert limits[got.modality] == got.items and sum(limits.values()) == got.items
    assert set(limits) <= {"image", "video", "audio"}


@pytest.mark.parametrize("supported", [{}, {"audio": None}, {"image": 0, "video": 0}])
def test_a_model_without_vision_input_is_refused(supported: dict[str, int | None]) -> None:
    with pytest.raises(vlmcap.UnsupportedSettingError, match="video or images.*for m"):
        plan_input(supported, use_image_input=False, model="m")


def test_image_input_on_a_video_only_model_is_refused() -> None:
    with pytest.raises(vlmcap.UnsupportedSettingError, match="use_image_input=True.*no images"):
        plan_input({"video": None}, use_image_input=True, model="m")


def test_the_plan_comes_from_what_vllm_accepts_for_the_checkpoint() -> None:
    assert input_plan(tiny_checkpoint(VIDEO)) == ChatInputPlan("video", 1, ("image",))
    assert input_plan(tiny_checkpoint(IMAGE)) == ChatInputPlan("image", MAX_IMAGES)
    forced = input_plan(tiny_checkpoint(VIDEO), use_image_input=True)
    assert forced == ChatInputPlan("image", MAX_IMAGES, ("video",))


def test_a_text_only_checkpoint_is_refused(tmp_path: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    source = tiny_checkpoint(VIDEO)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(source / name, tmp_path / name)
    config = Qwen2Config(
        vocab_size=600,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    config.architectures = ["Qwen2ForCausalLM"]
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(vlmcap.UnsupportedSettingError, match="nothing \\(a text-only model\\)"):
        VllmChat.engine_kwargs(vlmcap.VllmConfig(model_variant="chat", model_path=tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(vlmcap.UnsupportedSettingError, match="cannot serve"):
        VllmChat.engine_kwargs(
            vlmcap.VllmConfig(model_variant="chat", model_path=tmp_path / "empty")
        )


# --- prompts and inputs ------------------------------------------------------------------------


def test_video_model_gets_the_clip_as_one_video_in_its_own_chat_format(
    processors: dict[str, Any],
) -> None:
    processor = processors[VIDEO]
    clip = synthetic_clip(6, 100, 150, seed=1)
    md = vlmcap.VideoMetadata.uniform(6, 4.0)
    inp = VllmChat.make_llm_input("Describe it.", clip, processor, metadata=md, config=_config())
    assert set(inp) == {"prompt_token_ids", "multi_modal_data"}
    text = processor.tokenizer.decode(inp["prompt_token_ids"])
    assert text == "<|im_start|>user <video>\nDescribe it.<|im_end|>\n<|im_start|>assistant\n"
    assert inp["prompt_token_ids"].count(processor.video_token_id) == 1  # vLLM expands it
    ((key, (frames, sent)),) = inp["multi_modal_data"].items()
    assert key == "video"
    assert frames.dtype == torch.uint8 and torch.equal(frames, clip)  # resized model-side
    assert sent["fps"] == 4.0 and sent["total_num_frames"] == 6
    assert (sent["width"], sent["height"]) == (150, 100)
    floats = VllmChat.make_llm_input(
        "x", clip.float() / 255.0, processor, config=_config(sampling_fps=3.0)
    )
    frames, sent = floats["multi_modal_data"]["video"]
    assert torch.equal(frames, clip) and sent["fps"] == 3.0  # bare frames: config's fps


def test_image_only_model_gets_evenly_spaced_frames_as_images(processors: dict[str, Any]) -> None:
    processor = processors[IMAGE]
    clip = synthetic_clip(20, 40, 60, seed=2)
    inp = VllmChat.make_llm_input("Describe it.", clip, processor, config=_config(IMAGE))
    images = inp["multi_modal_data"]["image"]
    assert set(inp["multi_modal_data"]) == {"image"} and len(images) == MAX_IMAGES
    assert all(im.mode == "RGB" and im.size == (60, 40) for im in images)
    picks = torch.linspace(0, 19, MAX_IMAGES).round().long().tolist()
    assert picks[0] == 0 and picks[-1] == 19
    hwc = clip.permute(0, 2, 3, 1).numpy()
    assert all((np.asarray(im) == hwc[i]).all() for im, i in zip(images, picks, strict=True))
    text = processor.tokenizer.decode(inp["prompt_token_ids"])
    assert text == "USER: " + "<image>\n" * MAX_IMAGES + "Describe it. ASSISTANT:"
    short = VllmChat.make_llm_input("x", clip[:3], processor, config=_config(IMAGE))
    assert len(short["multi_modal_data"]["image"]) == 3
    assert short["prompt_token_ids"].count(processor.image_token_id) == 3


def test_use_image_input_sends_images_to_a_video_model(processors: dict[str, Any]) -> None:
    config = _config(use_image_input=True)
    inp = VllmChat.make_llm_input(
        "Describe it.", synthetic_clip(4, 32, 32), processors[VIDEO], config=config
    )
    assert set(inp["multi_modal_data"]) == {"image"} and len(inp["multi_modal_data"]["image"]) == 4
    text = processors[VIDEO].tokenizer.decode(inp["prompt_token_ids"])
    assert "<image>" * 4 + "\nDescribe it." in text and "<video>" not in text
    assert VllmChat.engine_kwargs(config)["limit_mm_per_prompt"] == {
        "image": MAX_IMAGES,
        "video": 0,
    }


def test_a_processor_without_chat_template_is_refused(tmp_path: Path) -> None:
    shutil.copytree(tiny_checkpoint(VIDEO), tmp_path / "m")
    (tmp_path / "m" / "chat_template.jinja").unlink()
    with pytest.raises(vlmcap.UnsupportedSettingError, match="chat template"):
        vlmcap.auto_processor(vlmcap.VllmConfig(model_variant="chat", model_path=tmp_path / "m"))
    bare = SimpleNamespace(chat_template=None, tokenizer=SimpleNamespace(chat_template=None))
    with pytest.raises(vlmcap.UnsupportedSettingError, match="chat template"):
        chat_token_ids(bare, "x", videos=1)


# --- refinement and decoding -------------------------------------------------------------------


@pytest.mark.parametrize(("checkpoint", "key"), [(VIDEO, "video"), (IMAGE, "image")])
def test_refine_reuses_the_media_with_the_caption(
    checkpoint: str, key: str, processors: dict[str, Any]
) -> None:
    processor = processors[checkpoint]
    inp = VllmChat.make_llm_input(
        "Describe it.", synthetic_clip(4, 32, 32, seed=3), processor, config=_config(checkpoint)
    )
    stage1 = vlmcap.VllmCaptionRequest("s1", inp, caption="A red car.", stage2_prompt="x")
    for refine, prefix in ((None, vlmcap.DEFAULT_STAGE2_PROMPT), ("Refine: ", "Refine: ")):
        stage2 = VllmChat.make_refined_llm_request(stage1, processor, refine)
        assert stage2.inputs["multi_modal_data"] == {key: inp["multi_modal_data"][key]}
        assert stage2.inputs["multi_modal_data"][key] is inp["multi_modal_data"][key]
        ids = stage2.inputs["prompt_token_ids"]
        assert (prefix + "A red car.").strip() in processor.tokenizer.decode(ids)
        placeholder = processor.video_token_id if key == "video" else processor.image_token_id
        assert ids.count(placeholder) == inp["prompt_token_ids"].count(placeholder)
        assert stage2.request_id != "s1"
        assert stage2.caption is None and stage2.stage2_prompt is None
    with pytest.raises(ValueError, match="caption"):
        VllmChat.make_refined_llm_request(vlmcap.VllmCaptionRequest("s1", inp), processor)


def test_decode_is_the_stripped_text() -> None:
    assert VllmChat.decode(_output("\n A red car. ")) == "A red car."


# --- engine arguments --------------------------------------------------------------------------


def test_engine_kwargs_honour_the_settings() -> None:
    base = VllmChat.engine_kwargs(_config())
    assert base["model"] == str(tiny_checkpoint(VIDEO))
    assert base["limit_mm_per_prompt"] == {"video": 1, "image": 0}
    assert base["tensor_parallel_size"] == 1 and "quantization" not in base
    assert base["mm_processor_cache_gb"] > 0
    assert "max_model_len" not in base  # the model's own
    assert "mm_processor_kwargs" not in base and "trust_remote_code" not in base
    tuned = VllmChat.engine_kwargs(
        _config(
            fp8=True,
            num_gpus=2,
            disable_mmcache=True,
            max_model_len=2048,
            gpu_memory_utilization=0.5,
        )
    )
    assert (tuned["quantization"], tuned["tensor_parallel_size"]) == ("fp8", 2)
    assert (tuned["mm_processor_cache_gb"], tuned["max_model_len"]) == (0.0, 2048)
    assert tuned["gpu_memory_utilization"] == 0.5
    assert VllmChat.engine_kwargs(_config(IMAGE))["limit_mm_per_prompt"] == {"image": MAX_IMAGES}
    # the processor inside vLLM always resizes: preprocess changes nothing (documented)
    assert VllmChat.engine_kwargs(_config(preprocess=True)) == base


# --- the real engine ---------------------------------------------------------------------------


def _vision_tokens(checkpoint: str, frames: int) -> int:
    """Prompt tokens the tiny model's vision placeholders expand to for ``frames`` frames."""
    vision = json.loads((tiny_checkpoint(checkpoint) / "config.json").read_text())["vision_config"]
    grid = int(vision["image_size"]) // int(vision["patch_size"])
    if checkpoint == VIDEO:  # LLaVA-OneVision: 2x2-pooled frames and one newline per video
        return frames * math.ceil(grid / 2) ** 2 + 1
    return frames * grid * grid  # LLaVA-1.5: one image per frame, class token dropped


@pytest.fixture(scope="module", params=[VIDEO, IMAGE])
def engine(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[str, vlmcap.VllmConfig, Any, Any, Any]]:
    """(checkpoint, config, llm, processor, sampling params): one engine per checkpoint."""
    from vlmcap._vllm_compat import shutdown_llm, vllm_version

    if vllm_version() < (0, 27, 0):
        pytest.skip(
            "vLLM 0.26 cannot load LLaVA under transformers 5: its pixtral.py imports "
            "PixtralRotaryEmbedding, which transformers 5 renamed (the chat plugin runs on 0.26 "
            "with other architectures: tests/test_chat_architectures.py)"
        )
    checkpoint: str = request.param
    config = _config(
        checkpoint,
        max_output_tokens=12,
        max_model_len=4096,
        sampling=vlmcap.VllmSamplingConfig(temperature=0.0, top_p=1.0, min_tokens=0),
    )
    llm = vlmcap.vllm_model(config)
    try:
        yield checkpoint, config, llm, vlmcap.auto_processor(config), vlmcap.sampling_params(config)
    finally:
        shutdown_llm(llm)


@pytest.mark.engine
def test_stage1_and_stage2_on_the_engine(engine: Any) -> None:
    checkpoint, config, llm, processor, params = engine
    noise = torch.randint(0, 256, (8, 3, 64, 128), generator=torch.Generator().manual_seed(0))
    clips = [  # content far apart: the tiny random model answers shapes on a dark ground alike
        synthetic_clip(8, 64, 64),
        torch.full((8, 3, 64, 96), 255, dtype=torch.uint8),
        noise.to(torch.uint8),
    ]
    inputs = vlmcap.make_model_inputs(clips, config, processor, "Describe this video.")
    key = "video" if checkpoint == VIDEO else "image"
    assert all(set(inp["multi_modal_data"]) == {key} for inp in inputs)
    only1 = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    assert all(r.ok and r.text.strip() and r.stages == 1 for r in only1), only1
    for inp, r in zip(inputs, only1, strict=True):  # every frame reached the model
        ids = inp["prompt_token_ids"]
        placeholders = ids.count(
            processor.video_token_id if key == "video" else processor.image_token_id
        )
        assert r.prompt_tokens == len(ids) - placeholders + _vision_tokens(checkpoint, 8)
    stage2: list[str | None] = ["Refine this caption: ", None, "Refine this caption: "]
    res = vlmcap.caption_results(inputs, llm, processor, params, config, 0, stage2_prompts=stage2)
    assert [r.stages for r in res] == [2, 1, 2], res
    assert all(r.ok and r.text.strip() and r.output_tokens > 0 for r in res), res
    for i in (0, 2):  # stage 2 re-sends the media with a longer prompt
        assert res[i].prompt_tokens > 2 * only1[i].prompt_tokens
    assert (res[1].text, res[1].prompt_tokens) == (only1[1].text, only1[1].prompt_tokens)
    assert len({r.text for r in only1}) > 1, f"{checkpoint}: captions should follow the frames"
