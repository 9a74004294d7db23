"""NVIDIA Cosmos 3 reasoner (pinned: nvidia/Cosmos3-Nano), the understanding half of the omni model.

A Cosmos 3 checkpoint is a unified Diffusers layout: a Qwen3-VL understanding tower (the
reasoner) beside a generation tower, its weights under ``transformer/`` and
``vision_encoder/``. vLLM serves the reasoner as ``Cosmos3ForConditionalGeneration``, a subclass
of its Qwen3-VL model whose weight mapper drops the generation tensors; the processor is
Qwen3-VL's. So the input, the engine settings and stage 2 are ``qwen3_vl``'s: ``(uint8 frames,
metadata)`` resized model-side, token ids from the checkpoint's chat template, the very same
video object in stage 2.
"""

from vlmcap.plugins.qwen3_vl import VllmQwen3VL


class VllmCosmos3(VllmQwen3VL):
    """nvidia/Cosmos3-Nano (Cosmos3-Super or another Cosmos 3 checkpoint via ``model_path``)."""

    @staticmethod
    def model_variant() -> str:
        """``"cosmos3"``."""
        return "cosmos3"
