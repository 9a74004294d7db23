"""The ``nemotron_vl`` plugin (NVIDIA Nemotron Nano 12B v2 VL).

Fast tests pin the plugin's own rules (input layout, metadata, refine, decode, engine arguments,
refused settings) on the tiny checkpoint's processor; the ``engine`` test runs stage 1 and
stage 2 through a real vLLM engine (``NemotronH_Nano_VL_V2``) on the tiny checkpoint.
"""

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import vlmcap
from vlmcap.plugins import nemotron_vl
from vlmcap.plugins.cosmos_reason import DEFAULT_REFINE_PROMPT
from vlmcap.plugins.nemotron_vl import VllmNemotronVL
from vlmcap.testing import synthetic_clip, tiny_checkpoint


VARIANT = "nemotron_vl"
TOKENS_PER_FRAME = 16
"""Tiny checkpoint: 128-pixel tile, 16-pixel patches, 2x2 pixel shuffle -> 16 tokens a frame."""


def _config(**kw: Any) -> vlmcap.VllmConfig:
    return vlmcap.VllmConfig(model_variant=VARIANT, model_path=tiny_checkpoint(VARIANT), **kw)


@pytest.fixture(scope="module")
def processor() -> Any:
    return vlmcap.auto_processor(_config())


def _text(processor: Any, ids: list[int]) -> str:
    return str(processor.decode(ids))


def test_registered_with_its_pin_and_tiny_recipe() -> None:
    assert vlmcap.get_plugin(VARIANT) is VllmNemotronVL
    assert VllmNemotronVL.model_variant() == VARIANT
    assert VllmNemotronVL.model_id() == "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16"
    assert VARIANT in vlmcap.testing.tiny_variants()


def test_input_is_chat_token_ids_and_thwc_uint8_video_with_metadata(processor: Any) -> None:
    clip = synthetic_clip(5, 40, 56, seed=3)
    inp = VllmNemotronVL.make_llm_input(
        "Describe it.", clip, processor, config=_config(sampling_fps=4.0)
    )
    assert set(inp) == {"prompt_token_ids", "multi_modal_data"}
    text = _text(processor, inp["prompt_token_ids"])
    assert text == "<|im_start|>user\n<video>\nDescribe it.<|im_end|>\n<|im_start|>assistant\n"
    video, md = inp["multi_modal_data"]["video"]  # a (frames, metadata) tuple, not a list
    assert isinstance(video, np.ndarray)
    assert video.dtype == np.uint8
    assert video.shape == (5, 40, 56, 3)  # channels last, at the clip's own size
    np.testing.assert_array_equal(video, clip.permute(0, 2, 3, 1).numpy())
    assert {"total_num_frames", "fps", "duration", "frames_indices", "video_backend"} <= set(md)
    assert (md["total_num_frames"], md["fps"], md["duration"]) == (5, 4.0, 1.25)
    assert md["frames_indices"] == [0, 1, 2, 3, 4]


def test_float_frames_and_given_metadata(processor: Any) -> None:
    clip = synthetic_clip(4, 32, 32, seed=1)
    meta = vlmcap.VideoMetadata(
        fps=1.5, total_num_frames=4, frames_indices=(0, 3, 6, 9), duration=6.0
    )
    inp = VllmNemotronVL.make_llm_input("x", clip.float() / 255, processor, metadata=meta)
    video, md = inp["multi_modal_data"]["video"]
    assert video.dtype == np.uint8
    assert np.abs(video.astype(int) - clip.permute(0, 2, 3, 1).numpy().astype(int)).max() <= 1
    assert (md["fps"], md["frames_indices"], md["duration"]) == (1.5, [0, 3, 6, 9], 6.0)
    bare = VllmNemotronVL.make_llm_input("x", clip, processor)  # no config: 2 fps
    assert bare["multi_modal_data"]["video"][1]["fps"] == 2.0


def test_refine_reuses_the_video_object(processor: Any) -> None:
    inp = VllmNemotronVL.make_llm_input("Describe it.", synthetic_clip(3, 32, 32), processor)
    request = vlmcap.VllmCaptionRequest(request_id="r1", inputs=inp, caption="a red car")
    refined = VllmNemotronVL.make_refined_llm_request(request, processor)
    assert refined.request_id != "r1"
    assert refined.caption is None
    assert refined.inputs["multi_modal_data"]["video"] is inp["multi_modal_data"]["video"]
    text = _text(processor, refined.inputs["prompt_token_ids"])
    assert text == (
        f"<|im_start|>user\n<video>\n{DEFAULT_REFINE_PROMPT}a red car<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    custom = VllmNemotronVL.make_refined_llm_request(request, processor, "Fix: ")
    custom_text = _text(processor, custom.inputs["prompt_token_ids"])
    assert "<video>\nFix: a red car<|im_end|>" in custom_text
    with pytest.raises(ValueError, match="caption"):
        VllmNemotronVL.make_refined_llm_request(
            vlmcap.VllmCaptionRequest(request_id="r2", inputs=inp), processor
        )


@pytest.mark.parametrize(
    ("text", "caption"),
    [("  A red car. \n", "A red car."), ("<think>\nhmm\n</think>\n\nA dog.", "A dog.")],
)
def test_decode(text: str, caption: str) -> None:
    out = SimpleNamespace(outputs=[SimpleNamespace(text=text)])
    assert VllmNemotronVL.decode(out) == caption


def test_engine_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    kw = VllmNemotronVL.engine_kwargs(_config())
    assert kw["model"] == str(tiny_checkpoint(VARIANT))
    assert kw["trust_remote_code"] is True
    assert kw["gpu_memory_utilization"] == 0.9
    assert kw["limit_mm_per_prompt"] == {"video": 1, "image": 0}
    assert kw["max_model_len"] == kw["max_num_batched_tokens"] == 32768
    assert kw["mm_processor_cache_gb"] > 0
    assert "quantization" not in kw
    assert kw["enable_prefix_caching"] is False  # this machine is CPU-only
    kw = VllmNemotronVL.engine_kwargs(
        _config(max_model_len=4096, gpu_memory_utilization=0.5, fp8=True, disable_mmcache=True,
                num_gpus=2, compile_mm_encoder=True)
    )
    assert (kw["max_model_len"], kw["max_num_batched_tokens"]) == (4096, 4096)
    assert (kw["gpu_memory_utilization"], kw["tensor_parallel_size"]) == (0.5, 2)
    assert (kw["quantization"], kw["mm_processor_cache_gb"]) == ("fp8", 0.0)
    assert kw["compilation_config"] == {"compile_mm_encoder": True}
    monkeypatch.setattr(nemotron_vl, "is_cpu_platform", lambda: False)
    assert "enable_prefix_caching" not in VllmNemotronVL.engine_kwargs(_config())


def test_image_input_is_refused() -> None:
    with pytest.raises(vlmcap.UnsupportedSettingError, match="use_image_input"):
        VllmNemotronVL.engine_kwargs(_config(use_image_input=True))


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[vlmcap.VllmConfig, Any, Any, Any]]:
    from vlmcap._vllm_compat import is_cpu_platform, shutdown_llm, vllm_version

    if is_cpu_platform() and vllm_version() < (0, 27, 0):
        pytest.skip(
            "vLLM 0.26's Mamba2 mixer (NemotronH's layers) has no CPU path: its prefill calls "
            "Triton kernels (causal_conv1d_fn), which a CPU build lacks"
        )
    config = _config(
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
def test_stage1_and_stage2_on_the_engine(engine: Any) -> None:
    config, llm, processor, params = engine
    clips = [synthetic_clip(8, 112, 112 + 32 * i, seed=i) for i in range(3)]
    inputs = vlmcap.make_model_inputs(clips, config, processor, "Describe this video.")
    only1 = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    assert all(r.ok and r.text.strip() and r.stages == 1 for r in only1), only1
    for inp, r in zip(inputs, only1, strict=True):  # every frame's vision tokens are in the prompt
        assert r.prompt_tokens >= len(inp["prompt_token_ids"]) + 8 * TOKENS_PER_FRAME
    stage2: list[str | None] = ["Refine this caption: ", None, "Refine this caption: "]
    res = vlmcap.caption_results(inputs, llm, processor, params, config, 0, stage2_prompts=stage2)
    assert [r.stages for r in res] == [2, 1, 2], res
    assert all(r.ok and r.text.strip() and r.output_tokens > 0 for r in res), res
    for i in (0, 2):  # stage 2 re-sends the video with a longer prompt
        assert res[i].prompt_tokens > only1[i].prompt_tokens
    assert (res[1].text, res[1].prompt_tokens) == (only1[1].text, only1[1].prompt_tokens)
    assert len({r.text for r in only1}) > 1, "captions should differ per clip"


def test_frames_reach_the_model_as_given(processor: Any) -> None:
    """The frames in the input are the caller's pixels: no client-side resizing."""
    clip = torch.zeros(2, 3, 20, 30, dtype=torch.uint8)
    clip[:, 0] = 255
    video, _md = VllmNemotronVL.make_llm_input("x", clip, processor)["multi_modal_data"]["video"]
    assert video.shape == (2, 20, 30, 3)
    assert (video[..., 0] == 255).all() and (video[..., 1:] == 0).all()
