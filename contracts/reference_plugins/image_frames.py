"""A good image-based plugin (the seed guide's Phi-4 pattern): frames become PIL images.

The text prompt carries one image placeholder per frame; ``multi_modal_data`` holds the list of
images under ``"image"`` (singular), and stage 2 reuses that very list.
"""

import secrets
from typing import Any

import torch
from PIL import Image

from vlmcap import LLM, VllmCaptionRequest, VllmConfig, VllmPlugin


MAX_IMAGES = 8
DEFAULT_REFINE_PROMPT = "Improve the following description of these video frames: "


def to_images(frames: torch.Tensor) -> list[Image.Image]:
    """``(T, 3, H, W)`` uint8 or float [0, 1] frames as T RGB PIL images."""
    if frames.dtype != torch.uint8:
        frames = (frames.float() * 255).round().to(torch.uint8)
    return [Image.fromarray(f.permute(1, 2, 0).contiguous().numpy(), mode="RGB") for f in frames]


def render(processor: Any, num_images: int, text: str) -> str:
    """The chat prompt with ``num_images`` image placeholders followed by ``text``."""
    content: list[dict[str, str]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": text})
    messages = [{"role": "user", "content": content}]
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


class VllmImageFrames(VllmPlugin):
    """Captions a clip from its frames given as separate images."""

    @staticmethod
    def model_variant() -> str:
        return "imageframes"

    @classmethod
    def processor(cls) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(cls.model_path())

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path()),
            max_model_len=config.max_model_len or 8192,
            limit_mm_per_prompt={"image": MAX_IMAGES, "video": 0},
        )

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        images = to_images(frames[:MAX_IMAGES])
        text = render(processor, len(images), prompt)
        return {"prompt": text, "multi_modal_data": {"image": images}}

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        if request.caption is None:
            msg = "request caption is None: stage 2 refines the stage-1 caption"
            raise ValueError(msg)
        mm = request.inputs["multi_modal_data"]
        if "image" in mm:
            images = mm["image"]
        else:  # a video request built by someone else: take its frames as images
            video = mm["video"]
            images = to_images(video[0] if isinstance(video, tuple) else video)
        prefix = DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt": render(processor, len(images), prefix + request.caption),
                "multi_modal_data": {"image": images},
            },
        )

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(vllm_output.outputs[0].text).strip()
