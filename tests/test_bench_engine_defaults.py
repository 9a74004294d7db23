"""Engine defaults chosen by the GPU benchmark: on by default, user-switchable, dropped on CPU."""

from typing import Any

import attrs
import pytest

import vlmcap
from vlmcap._vllm_compat import adapt_llm_kwargs, is_cpu_platform
from vlmcap.plugins.qwen import kv_block_tokens
from vlmcap.testing import tiny_checkpoint


QWEN_FAMILY = ("qwen", "cosmos_r1", "qwen3_vl", "cosmos_r2")


def _config(variant: str, **kw: Any) -> vlmcap.VllmConfig:
    return vlmcap.VllmConfig(model_variant=variant, model_path=tiny_checkpoint(variant), **kw)


@pytest.mark.parametrize("variant", QWEN_FAMILY)
def test_vision_encoder_compile_is_on_by_default_and_can_be_turned_off(variant: str) -> None:
    plugin: Any = vlmcap.get_plugin(variant)
    on = plugin.engine_kwargs(_config(variant))
    assert on["compilation_config"] == {"compile_mm_encoder": True}
    off = plugin.engine_kwargs(attrs.evolve(_config(variant), compile_mm_encoder=False))
    assert "compilation_config" not in off
    assert {k: v for k, v in on.items() if k != "compilation_config"} == off


def test_compile_setting_is_dropped_on_a_cpu_build() -> None:
    if not is_cpu_platform():
        pytest.skip("a GPU build keeps the setting")
    plugin: Any = vlmcap.get_plugin("qwen")
    kwargs = plugin.engine_kwargs(_config("qwen"))
    adapted = adapt_llm_kwargs(kwargs)
    assert "compilation_config" not in adapted and adapted["enforce_eager"] is True


@pytest.mark.parametrize("variant", ["qwen", "cosmos_r1"])
def test_qwen25_engines_use_the_block_size_the_prompt_layout_aligns_to(variant: str) -> None:
    plugin: Any = vlmcap.get_plugin(variant)
    assert plugin.engine_kwargs(_config(variant))["block_size"] == kv_block_tokens()
    assert kv_block_tokens() == (32 if is_cpu_platform() else 16)
