"""NVIDIA Nemotron Nano 12B v2 VL (pinned: nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16).

vLLM serves it as ``NemotronH_Nano_VL_V2``: a RADIO vision encoder in front of a hybrid
Mamba2/attention language model (NemotronH). The config is the repository's remote code, so the
engine and the processor load with ``trust_remote_code=True``; the multimodal processor is
vLLM's own. Input as in cosmos-curate's plugin:

- token ids from the checkpoint's chat template, one user turn ``[video, prompt]`` (no system
  turn), which renders the video as ``<video>``; vLLM expands it into one
  ``Frame i sampled at t seconds: <img><image>...</img>`` block per frame;
- the video as ``(uint8 frames, channels last (T, H, W, 3) numpy, metadata dict)``. vLLM needs
  the metadata (``fps`` and ``frames_indices`` give the frame timestamps); bare frames get
  uniform metadata at ``config.sampling_fps`` (2 fps without a config).

Frames are resized model-side (the processor resizes every frame to the model's square tile),
so ``VllmConfig.preprocess`` is accepted with either value and changes nothing. Stage 2 sends
the refine prompt + stage-1 caption over the very same video object; the default refine prompt
is cosmos-curate's Nemotron (= Cosmos-Reason) text. :meth:`VllmNemotronVL.decode` drops a
``<think>...</think>`` block should the model reason before answering.

**CPU.** vLLM's CPU build runs the architecture, but its Mamba2 prefill kernel returns only the
final state, while prefix caching of hybrid models needs per-chunk states (an ``IndexError`` in
``mamba_mixer2``); on CPU the engine is therefore built with ``enable_prefix_caching=False``.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

from vlmcap._frames import Frames
from vlmcap._plugin import VllmPlugin
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._vllm_compat import build_llm, is_cpu_platform
from vlmcap.plugins import kit
from vlmcap.plugins.cosmos_reason import DEFAULT_REFINE_PROMPT


GPU_MEMORY_UTILIZATION = 0.9
"""cosmos-curate's value for this model."""


def nemotron_video(
    frames: Frames,
    *,
    metadata: VideoMetadata | None = None,
    config: VllmConfig | None = None,
) -> tuple[npt.NDArray[np.uint8], dict[str, Any]]:
    """``(uint8 (T, H, W, 3) numpy frames, vLLM metadata dict)`` for vLLM's Nemotron processor.

    Metadata as :func:`~vlmcap.plugins.kit.video_with_metadata` makes it: from ``metadata``,
    else from a ``(frames, metadata)`` pair, else uniform at ``config.sampling_fps``.
    """
    video, md = kit.video_with_metadata(frames, metadata=metadata, config=config)
    thwc: npt.NDArray[np.uint8] = video.permute(0, 2, 3, 1).contiguous().numpy()
    return thwc, md


class VllmNemotronVL(VllmPlugin):
    """nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16 (any Nemotron Nano VL v2 via ``model_path``)."""

    @staticmethod
    def model_variant() -> str:
        """``"nemotron_vl"``."""
        return "nemotron_vl"

    @classmethod
    def processor(cls) -> Any:
        """The checkpoint's processor (remote code allowed), used for its chat template."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(cls.model_path(), trust_remote_code=True)

    @classmethod
    def engine_kwargs(cls, config: VllmConfig) -> dict[str, Any]:
        """The ``LLM(...)`` arguments for ``config``; every setting is honoured or refused.

        A video prompt is never split across batches, so the batch holds a whole context.
        """
        kit.refuse_image_input(cls.model_variant(), config)
        cpu = {"enable_prefix_caching": False} if is_cpu_platform() else {}  # module docstring
        return kit.engine_kwargs(
            cls.model_path(config),
            config,
            limit_mm_per_prompt={"video": 1, "image": 0},
            gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
            whole_context_batches=True,
            trust_remote_code=True,
            **cpu,
        )

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        """A ``vllm.LLM`` for the checkpoint."""
        return build_llm(**cls.engine_kwargs(config))

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: Frames,
        processor: Any,
        *,
        metadata: VideoMetadata | None = None,
        config: VllmConfig | None = None,
    ) -> dict[str, Any]:
        """Token ids for ``prompt`` plus the video as ``(uint8 THWC numpy, metadata)``."""
        return {
            "prompt_token_ids": kit.chat_token_ids(processor, prompt),
            "multi_modal_data": {"video": nemotron_video(frames, metadata=metadata, config=config)},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Refine prompt (default: cosmos-curate's) + stage-1 caption over the same video."""
        return kit.refined_chat_request(
            request, processor, refine_prompt, default_prompt=DEFAULT_REFINE_PROMPT
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The first completion's text without a ``<think>`` block, stripped (as Qwen3.5's)."""
        return kit.without_think(vllm_output)
