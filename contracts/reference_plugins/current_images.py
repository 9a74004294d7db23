"""A good plugin in cosmos-curate's current form that sends frames as a list of images (Phi style).

Chat prompt with one image placeholder per image, ``multi_modal_data={"image": [PIL, ...]}``,
at most ``MAX_IMAGES`` images spread evenly over the window (picked with the metadata's
``total_num_frames``), and ``limit_mm_per_prompt={"image": MAX_IMAGES, "video": 0}``.
Written for vlmcap's tests; only its import lines name vlmcap.
"""

from __future__ import annotations  # noqa: TID251 - written as cosmos-curate writes plugins

import secrets
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from transformers import AutoProcessor

from vlmcap import LLM, VllmCaptionRequest, VllmPlugin


if TYPE_CHECKING:
    from vlmcap import VllmConfig


MAX_IMAGES = 4
REFINE = "Refine this description of the images: "


def _pick(total: int) -> list[int]:
    """Up to MAX_IMAGES frame indices spread evenly over ``total`` frames."""
    n = min(total, MAX_IMAGES)
    return sorted({round(i * (total - 1) / max(n - 1, 1)) for i in range(n)})


def _images(frames: torch.Tensor, indices: list[int]) -> list[Image.Image]:
    out = []
    for i in indices:
        frame = frames[i]
        if frame.is_floating_point():
            frame = (frame * 255.0).round().clamp(0, 255)
        array = frame.permute(1, 2, 0).to(dtype=torch.uint8).contiguous().numpy()
        out.append(Image.fromarray(array, mode="RGB"))
    return out


def _prompt(processor: Any, count: int, text: str) -> str:
    content: list[dict[str, str]] = [{"type": "image"} for _ in range(count)]
    content.append({"type": "text", "text": text})
    messages = [{"role": "user", "content": content}]
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


class VllmCurrentImages(VllmPlugin):
    """Frames as separate images, in the current plugin form."""

    @staticmethod
    def model_variant() -> str:
        return "current-images"

    @classmethod
    def processor(cls, config: VllmConfig) -> Any:
        return AutoProcessor.from_pretrained(cls.model_path(config), trust_remote_code=True)

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path(config)),
            max_model_len=config.max_model_len or 8192,
            limit_mm_per_prompt={"image": MAX_IMAGES, "video": 0},
            performance_mode=config.performance_mode,
        )

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: torch.Tensor,
        metadata: dict[str, Any],
        processor: Any,
        config: VllmConfig,
    ) -> dict[str, Any]:
        del config
        images = _images(frames, _pick(int(metadata["total_num_frames"])))
        return {
            "prompt": _prompt(processor, len(images), prompt),
            "multi_modal_data": {"image": images},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        if request.caption is None:
            msg = "request caption is None: stage 2 refines the stage-1 caption"
            raise ValueError(msg)
        images = request.inputs["multi_modal_data"]["image"]
        prefix = REFINE if refine_prompt is None else refine_prompt
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt": _prompt(processor, len(images), prefix + request.caption),
                "multi_modal_data": {"image": images},
            },
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text).strip()
