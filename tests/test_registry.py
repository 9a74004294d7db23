"""Registry, entry points, structural plugins and model-path resolution."""

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
import torch

import vlmcap
from vlmcap import _registry
from vlmcap._plugin import call_make_llm_input, plugin_model_id
from vlmcap.plugins.qwen import VllmQwen7B

from ._plugins import EchoPlugin


class Structural:
    """Has the methods, does not subclass VllmPlugin, has no model_id/model_path."""

    @staticmethod
    def model_variant() -> str:
        return "structural-test"

    @classmethod
    def processor(cls) -> Any:
        return None

    @classmethod
    def model(cls, config: vlmcap.VllmConfig) -> Any:
        return None

    @staticmethod
    def make_llm_input(
        prompt: str, frames: Any, processor: Any, *, metadata: Any = None
    ) -> dict[str, Any]:
        return {"prompt": prompt, "md": metadata}

    @staticmethod
    def make_refined_llm_request(
        request: Any, processor: Any, refine_prompt: str | None = None
    ) -> Any:
        return request

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return ""


def test_unknown_variant_lists_the_known_ones() -> None:
    with pytest.raises(vlmcap.UnknownVariantError) as err:
        vlmcap.get_plugin("qwen9")
    assert "'qwen9'" in str(err.value)
    assert "qwen" in err.value.known


def test_builtin_qwen_is_a_vllm_plugin() -> None:
    plugin: object = vlmcap.get_plugin("qwen")
    assert isinstance(plugin, vlmcap.VllmPlugin)
    assert plugin is VllmQwen7B
    assert VllmQwen7B.model_id() == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert vlmcap.MODEL_IDS["qwen"].revision == "cc594898137f460bfe9f0759e9844b3ce807cfb5"


def test_the_model_and_prompt_tables_are_read_only_and_grow_by_register() -> None:
    with pytest.raises(TypeError):
        vlmcap.MODEL_IDS["qwen"] = vlmcap.ModelId("x/y", None)  # type: ignore[index]
    with pytest.raises(TypeError):
        vlmcap.PROMPTS["default"] = "changed"  # type: ignore[index]
    assert "registered-test" not in vlmcap.MODEL_IDS
    from vlmcap import _model_ids

    try:
        vlmcap.register_model_id("registered-test", "org/model", "abc")
        assert vlmcap.MODEL_IDS["registered-test"] == vlmcap.ModelId("org/model", "abc")
    finally:
        del _model_ids._MODEL_IDS["registered-test"]


def test_structural_plugin_is_accepted_and_gets_optional_kwargs_it_declares() -> None:
    vlmcap.register_plugin(Structural)
    try:
        assert vlmcap.get_plugin("structural-test") is Structural
        some_class: object = Structural
        assert not isinstance(some_class, vlmcap.VllmPlugin)  # lacks model_id/model_path
        md = vlmcap.VideoMetadata.uniform(2, 2.0)
        cfg = vlmcap.VllmConfig(model_variant="structural-test")
        frames = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
        out = call_make_llm_input(Structural, "p", frames, None, metadata=md, config=cfg)
        assert out == {"prompt": "p", "md": md}  # metadata passed, config not (not declared)
        with pytest.raises(vlmcap.UnknownVariantError, match="model id"):
            plugin_model_id(Structural)
    finally:
        _registry.unregister_plugin("structural-test")


def test_incomplete_plugin_is_refused_with_the_missing_methods() -> None:
    class Half:
        @staticmethod
        def model_variant() -> str:
            return "half"

    with pytest.raises(vlmcap.PluginError, match=r"processor\(\) is missing.*model\(\) is missing"):
        vlmcap.register_plugin(Half)  # type: ignore[type-var]  # mypy rejects it too


def test_entry_point_plugins_are_found_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        importlib.metadata.EntryPoint(
            "echo-test", "tests._plugins:EchoPlugin", _registry.ENTRY_POINT_GROUP
        ),
        importlib.metadata.EntryPoint(
            "liar", "tests._plugins:EchoPlugin", _registry.ENTRY_POINT_GROUP
        ),
        importlib.metadata.EntryPoint("gone", "no_such_pkg.mod:X", _registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: [e for e in eps if e.group == group]
    )
    assert {"echo-test", "liar", "gone", "qwen"} <= set(vlmcap.available_variants())
    assert vlmcap.get_plugin("echo-test") is EchoPlugin
    with pytest.raises(vlmcap.PluginError, match="registered as 'liar' but says 'echo-test'"):
        vlmcap.get_plugin("liar")
    with pytest.raises(vlmcap.PluginError, match="cannot import 'no_such_pkg.mod'"):
        vlmcap.get_plugin("gone")


def test_model_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b):
        d.mkdir()
    (c / "Qwen" / "Qwen2.5-VL-7B-Instruct").mkdir(parents=True)
    monkeypatch.setenv("VLMCAP_MODEL_DIR", str(c))
    assert vlmcap.get_plugin("qwen") is VllmQwen7B
    plugin = VllmQwen7B
    assert plugin.model_path() == c / "Qwen" / "Qwen2.5-VL-7B-Instruct"
    with vlmcap.using_model_path("qwen", b):
        assert plugin.model_path() == b
        assert plugin.model_path(vlmcap.VllmConfig(model_variant="qwen", model_path=a)) == a
        with vlmcap.using_model_path("other", a):
            assert plugin.model_path() == b
    assert plugin.model_path() == c / "Qwen" / "Qwen2.5-VL-7B-Instruct"
    with pytest.raises(vlmcap.ModelNotFoundError, match="not a folder"):
        plugin.model_path(vlmcap.VllmConfig(model_variant="qwen", model_path=tmp_path / "missing"))


def test_echo_plugin_satisfies_the_protocol_statically_and_at_runtime() -> None:
    plugin: vlmcap.VllmPlugin = EchoPlugin()  # mypy checks the structure here
    assert isinstance(plugin, vlmcap.VllmPlugin)
