"""Shared fixtures: Hypothesis profiles, the tiny checkpoint, one real CPU engine per session."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings


settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2.5-VL checkpoint (built once into the user cache, reused after)."""
    from vlmcap.testing import tiny_checkpoint

    return tiny_checkpoint("qwen")


@pytest.fixture(scope="session")
def qwen_config(tiny_qwen: Path) -> Any:
    """A config for the tiny checkpoint: short outputs, greedy, small context."""
    import vlmcap

    return vlmcap.VllmConfig(
        model_variant="qwen",
        model_path=tiny_qwen,
        max_output_tokens=12,
        max_model_len=4096,
        batch_size=2,
        sampling=vlmcap.VllmSamplingConfig(temperature=0.0, top_p=1.0, min_tokens=0),
    )


@pytest.fixture(scope="session")
def qwen_engine(qwen_config: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(llm, processor, sampling params) of one real vLLM engine for the whole session."""
    import vlmcap

    llm = vlmcap.vllm_model(qwen_config)
    processor = vlmcap.auto_processor(qwen_config)
    yield llm, processor, vlmcap.sampling_params(qwen_config)
    from vlmcap._vllm_compat import shutdown_llm

    shutdown_llm(llm)
