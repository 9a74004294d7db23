"""The plugin kit's engine rules hold for every first-party plugin, on a GPU build and a CPU one.

Every engine setting of ``VllmConfig`` is honoured by every plugin (the kit applies them once),
and the video-only plugins refuse ``use_image_input`` naming themselves. Hypothesis draws the
configs; the CPU/GPU branch is the kit's platform check, patched.
"""

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import vlmcap
from vlmcap.plugins import kit


VIDEO_ONLY = ("qwen", "cosmos_r1", "qwen3_vl", "cosmos_r2", "qwen3_5", "cosmos3", "nemotron_vl")
TAKES_IMAGES = ("phi4", "chat")

CONFIGS = st.fixed_dictionaries(
    {
        "num_gpus": st.integers(1, 8),
        "max_model_len": st.none() | st.integers(1024, 131072),
        "gpu_memory_utilization": st.none() | st.floats(0.05, 0.95),
        "disable_mmcache": st.booleans(),
        "compile_mm_encoder": st.booleans(),
        "fp8": st.booleans(),
        "preprocess": st.booleans(),
    }
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, tiny_qwen: Path) -> dict[str, Path]:
    """A checkpoint folder per variant (the chat plugin asks vLLM about a real one)."""
    empty = tmp_path_factory.mktemp("checkpoint")
    return {v: tiny_qwen if v == "chat" else empty for v in (*VIDEO_ONLY, *TAKES_IMAGES)}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    variant=st.sampled_from((*VIDEO_ONLY, *TAKES_IMAGES)),
    settings_=CONFIGS,
    cpu=st.booleans(),
)
def test_every_engine_setting_is_honoured_by_every_plugin(
    variant: str,
    settings_: dict[str, Any],
    cpu: bool,
    folders: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kit, "is_cpu_platform", lambda: cpu)
    config = vlmcap.VllmConfig(model_variant=variant, model_path=folders[variant], **settings_)
    plugin: Any = vlmcap.get_plugin(variant)
    kw = plugin.engine_kwargs(config)

    assert kw["model"] == str(folders[variant])
    assert kw["tensor_parallel_size"] == config.num_gpus
    if config.gpu_memory_utilization is not None:
        assert kw["gpu_memory_utilization"] == config.gpu_memory_utilization
    assert (kw["mm_processor_cache_gb"] == 0.0) == config.disable_mmcache
    assert (kw.get("quantization") == "fp8") == config.fp8
    assert ("compilation_config" in kw) == config.compile_mm_encoder
    if config.max_model_len is not None:
        assert kw["max_model_len"] == config.max_model_len
    length = kw.get("max_model_len")
    if length is not None:  # a video prompt is never split across engine steps
        assert kw["max_num_batched_tokens"] >= length
        if cpu:  # one context per step on vLLM's CPU build (its RAM)
            assert kw["max_num_batched_tokens"] == length
    limits = kw["limit_mm_per_prompt"]
    used = {m for m, n in limits.items() if n > 0}
    assert len(used) == 1, limits  # one modality per plugin, the others switched off


@pytest.mark.parametrize("variant", VIDEO_ONLY)
def test_video_only_plugins_refuse_image_input_by_name(variant: str, tmp_path: Path) -> None:
    config = vlmcap.VllmConfig(model_variant=variant, model_path=tmp_path, use_image_input=True)
    plugin: Any = vlmcap.get_plugin(variant)
    with pytest.raises(
        vlmcap.UnsupportedSettingError, match=f"the {variant} plugin captions video"
    ):
        plugin.engine_kwargs(config)


def test_phi4_takes_images_either_way(tmp_path: Path) -> None:
    plugin: Any = vlmcap.get_plugin("phi4")
    config = vlmcap.VllmConfig(model_variant="phi4", model_path=tmp_path)
    images = plugin.engine_kwargs(
        vlmcap.VllmConfig(model_variant="phi4", model_path=tmp_path, use_image_input=True)
    )
    assert images == plugin.engine_kwargs(config)


def test_model_kwargs_come_last_and_win(tmp_path: Path) -> None:
    config = vlmcap.VllmConfig(model_variant="qwen", model_path=tmp_path, max_model_len=4096)
    kw = kit.engine_kwargs(
        tmp_path, config, limit_mm_per_prompt={"video": 1}, max_num_batched_tokens=123
    )
    assert kw["max_num_batched_tokens"] == 123
    assert (
        kit.engine_kwargs(tmp_path, config, limit_mm_per_prompt={"video": 1}, max_model_len=None)[
            "max_model_len"
        ]
        == 4096
    ), "the config's length wins over the plugin's default"
