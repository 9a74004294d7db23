"""Pinned Hugging Face ids and revisions, in one table. Importable without vLLM."""

from collections.abc import Mapping
from types import MappingProxyType

import attrs


@attrs.frozen
class ModelId:
    """A Hugging Face repository at a pinned revision."""

    repo_id: str
    revision: str | None
    precision: str = "bf16"


_MODEL_IDS: dict[str, ModelId] = {
    "qwen": ModelId("Qwen/Qwen2.5-VL-7B-Instruct", "cc594898137f460bfe9f0759e9844b3ce807cfb5"),
    "phi4": ModelId(
        "microsoft/Phi-4-multimodal-instruct", "33e62acdd07cd7d6635badd529aa0a3467bb9c6a"
    ),
    "cosmos_r1": ModelId("nvidia/Cosmos-Reason1-7B", "0caf724f837efea5e25bf6d5818dcdeec0a36604"),
    "cosmos_r2": ModelId("nvidia/Cosmos-Reason2-8B", "b9806227bdb6f9dce8d0fb9d832718dd8b5efdf5"),
    "qwen3_vl": ModelId(
        "Qwen/Qwen3-VL-30B-A3B-Instruct", "4b184fbdab8886057d8d80c09f35bcfc65fe640e"
    ),
    "qwen3_5": ModelId(  # cosmos-curate's qwen3_5_27b pin
        "Qwen/Qwen3.5-27B-FP8", "97f5941bf617e31c5e237364a8602ce3f03a551a", precision="fp8"
    ),
    # the revision public code pins for Cosmos3-Nano; not checked against the hub (offline)
    "cosmos3": ModelId("nvidia/Cosmos3-Nano", "e59a53c25979a090fa8706c9acc0c254a6e89b92"),
    "nemotron_vl": ModelId(  # cosmos-curate's pin
        "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16", "5f7b7fac031d1eb7b8b8f2266c305b3f2fcc6ff4"
    ),
}
MODEL_IDS: Mapping[str, ModelId] = MappingProxyType(_MODEL_IDS)
"""variant -> pinned checkpoint (read-only). Third-party plugins add rows with
:func:`register_model_id`."""


def register_model_id(variant: str, repo_id: str, revision: str | None = None) -> None:
    """Add or replace the pinned checkpoint of ``variant``."""
    _MODEL_IDS[variant] = ModelId(repo_id, revision)
