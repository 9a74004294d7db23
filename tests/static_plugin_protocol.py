"""mypy negative tests of the plugin protocols (run by CI's ``mypy --strict``, not by pytest).

Each ``# type: ignore[...]`` below marks a line that mypy must reject: with ``warn_unused_ignores``
(part of ``strict``), an ignore that is no longer needed is itself an error, so if the protocols
stopped catching a bad plugin, CI's mypy run would fail. The good plugins must type-check clean.
``tests/test_plugin_protocol.py`` registers the same classes at runtime and expects the same
verdicts from the runtime check.
"""

from typing import Any

import torch

import vlmcap
from vlmcap import PluginClass, VllmCaptionRequest, VllmConfig, VllmPlugin


class GuideForm(VllmPlugin):
    """The guide's form: make_llm_input(prompt, frames, processor), processor()."""

    @staticmethod
    def model_variant() -> str:
        return "static-guide"

    @classmethod
    def processor(cls) -> Any:
        return None

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return None

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        return {"prompt": prompt, "multi_modal_data": {"video": frames}}

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        return request

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text)


class CurrentForm(VllmPlugin):
    """cosmos-curate's current form: five positional arguments, processor(config)."""

    @staticmethod
    def model_variant() -> str:
        return "static-current"

    @classmethod
    def processor(cls, config: VllmConfig) -> Any:
        return None

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return None

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: torch.Tensor,
        metadata: dict[str, Any],
        processor: Any,
        config: VllmConfig,
    ) -> dict[str, Any]:
        return {"prompt": prompt, "multi_modal_data": {"video": [(frames, metadata)]}}

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        return request

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text)


class DecodeReturnsInt(GuideForm):
    """Bad: decode returns an int."""

    @staticmethod
    def model_variant() -> str:
        return "static-decode-int"

    @staticmethod
    def decode(vllm_output: Any) -> int:  # type: ignore[override]
        return len(vllm_output.outputs)


class TwoArgInput(GuideForm):
    """Bad: make_llm_input lacks the processor."""

    @staticmethod
    def model_variant() -> str:
        return "static-two-args"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor) -> dict[str, Any]:  # type: ignore[override]
        return {"prompt": prompt}


class FourArgInput(GuideForm):
    """Bad: neither form (metadata but no config)."""

    @staticmethod
    def model_variant() -> str:
        return "static-four-args"

    @staticmethod
    def make_llm_input(  # type: ignore[override]
        prompt: str, frames: torch.Tensor, metadata: dict[str, Any], processor: Any
    ) -> dict[str, Any]:
        return {"prompt": prompt}


GOOD: tuple[PluginClass, ...] = (GuideForm, CurrentForm)
BAD: tuple[Any, ...] = (DecodeReturnsInt, TwoArgInput, FourArgInput)


def register_all() -> None:
    """What mypy must accept and reject (never called by CI; tests call it under pytest.raises)."""
    vlmcap.register_plugin(GuideForm)
    vlmcap.register_plugin(CurrentForm)
    vlmcap.register_plugin(DecodeReturnsInt)  # type: ignore[type-var]
    vlmcap.register_plugin(TwoArgInput)  # type: ignore[type-var]
    vlmcap.register_plugin(FourArgInput)  # type: ignore[type-var]
    checked: PluginClass = vlmcap.get_plugin("static-guide")
    _: PluginClass = DecodeReturnsInt  # type: ignore[assignment]
    del checked
