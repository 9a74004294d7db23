"""Qwen2.5-VL-7B-Instruct, written the way a third-party plugin would be.

Video goes in as ``(uint8 frames, metadata)`` with a token-id prompt from the chat template.
With ``preprocess=False`` (default) vlmcap resizes frames on the client to the processor's
28-aligned grid and the engine skips resizing; with ``preprocess=True`` the processor inside
vLLM resizes. Rescaling and normalisation always happen in the processor, so the bytes shipped to
the engine stay uint8 (4x smaller than float32).

**Prompt layout for stage 2.** Stage 1 and stage 2 of a clip share the system turn, the video
and ``<|vision_end|>``; vLLM's prefix cache reuses whole KV blocks only. Newline tokens are put
after ``<|vision_end|>`` (in both stages) so that the first stage-specific token starts a fresh
KV block (:func:`kv_block_tokens`); stage 2 then finds the whole video span in the prefix cache and
the vision encoder does not run again (:func:`block_aligned_ids`).
"""

from collections.abc import Mapping
from typing import Any

import torch

from vlmcap._frames import Frames, check_frames, to_uint8
from vlmcap._plugin import VllmPlugin
from vlmcap._prompts import DEFAULT_STAGE2_PROMPT
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._resize import resize_frames, smart_resize
from vlmcap._vllm_compat import build_llm, is_cpu_platform
from vlmcap.plugins import kit
from vlmcap.plugins.kit import chat_token_ids, split_video


GRID = 28
KV_BLOCK_TOKENS = 16
"""KV-cache block size the Qwen2.5-VL plugins give the engine on GPUs (vLLM's default there)."""
CPU_KV_BLOCK_TOKENS = 32
"""... and on vLLM's CPU build (its attention takes multiples of 32; vLLM would pick 128)."""


def kv_block_tokens() -> int:
    """The engine's KV block size on this platform; prompts align the text after the video to it."""
    return CPU_KV_BLOCK_TOKENS if is_cpu_platform() else KV_BLOCK_TOKENS


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def video_token_count(video: Any, processor: Any) -> int | None:
    """Tokens a Qwen2.5-VL processor expands ``video`` into, or ``None`` if unknown.

    ``video`` is ``(T, C, H, W)`` frames, bare or with metadata; the count is
    ``ceil(T / temporal_patch) * (h / 28) * (w / 28)`` at the processor's resized size.
    """
    frames, _md = split_video(video)
    shape = tuple(getattr(frames, "shape", ()))
    if len(shape) != 4:
        return None
    vp = getattr(processor, "video_processor", None)
    factor = int(getattr(vp, "patch_size", 14)) * int(getattr(vp, "merge_size", 2))
    temporal = int(getattr(vp, "temporal_patch_size", 2))
    lo, hi = _pixel_budget(processor)
    h, w = smart_resize(int(shape[2]), int(shape[3]), factor=factor, min_pixels=lo, max_pixels=hi)
    return -(-int(shape[0]) // temporal) * (h // factor) * (w // factor)


def block_aligned_ids(
    ids: list[int], processor: Any, video_tokens: int | None, block: int | None = None
) -> list[int]:
    """``ids`` with newline tokens after ``<|vision_end|>``: the text starts a fresh KV block.

    Once vLLM has expanded the one ``<|video_pad|>`` into ``video_tokens`` tokens, the text
    after the video starts at a multiple of ``block`` (default: :func:`kv_block_tokens`).

    Everything up to that point is the same in stage 1 and stage 2 of a clip, so stage 2 reuses
    it from the prefix cache in whole blocks, video included. The newlines sit inside the user
    turn, between the video and the prompt text; nothing else changes. ``ids`` come back
    unchanged when the layout is unknown (no ``video_tokens``, not exactly one video, or a
    newline that is not one token).
    """
    tok = _tokenizer(processor)
    end_id = tok.convert_tokens_to_ids("<|vision_end|>")
    pad_id = tok.convert_tokens_to_ids("<|video_pad|>")
    newline = tok.encode("\n", add_special_tokens=False)
    if video_tokens is None or len(newline) != 1 or ids.count(pad_id) != 1:
        return ids
    if ids.count(end_id) != 1 or ids.index(end_id) < ids.index(pad_id):
        return ids
    cut = ids.index(end_id) + 1
    pad = -(cut - 1 + video_tokens) % (block or kv_block_tokens())
    return [*ids[:cut], *newline * pad, *ids[cut:]]


def video_prompt_ids(processor: Any, prompt: str, video: Any) -> list[int]:
    """:func:`chat_token_ids` of ``prompt`` laid out by :func:`block_aligned_ids` for ``video``."""
    ids = chat_token_ids(processor, prompt)
    return block_aligned_ids(ids, processor, video_token_count(video, processor))


def _pixel_budget(processor: Any) -> tuple[int, int]:
    vp = getattr(processor, "video_processor", None)
    size: Mapping[str, Any] = getattr(vp, "size", None) or {}
    lo = int(size.get("shortest_edge", getattr(vp, "min_pixels", 128 * GRID * GRID)))
    hi = int(size.get("longest_edge", getattr(vp, "max_pixels", 768 * GRID * GRID)))
    return lo, hi


def to_model_frames(frames: Any, processor: Any, *, client_resize: bool) -> torch.Tensor:
    """uint8 frames, resized to the processor's grid when the client does the resizing."""
    video = to_uint8(check_frames(frames, "frames"))
    if client_resize:
        lo, hi = _pixel_budget(processor)
        h, w = smart_resize(
            int(video.shape[2]), int(video.shape[3]), factor=GRID, min_pixels=lo, max_pixels=hi
        )
        video = resize_frames(video, h, w)
    return video


def client_video(
    frames: Any,
    processor: Any,
    *,
    metadata: VideoMetadata | None,
    config: VllmConfig | None,
) -> Any:
    """The video for vLLM: uint8 frames, with metadata when given or carried by ``frames``.

    Frames are resized on the client to the processor's grid unless ``config.preprocess``.
    """
    raw, md = split_video(frames)
    client_resize = config is None or not config.preprocess
    video = to_model_frames(raw, processor, client_resize=client_resize)
    if metadata is not None:
        md = metadata.to_vllm()
    if md is None:
        return video
    return video, {**md, "width": int(video.shape[3]), "height": int(video.shape[2])}


def refined_video_request(
    request: VllmCaptionRequest, processor: Any, refine_prompt: str | None
) -> VllmCaptionRequest:
    """The stage-2 request: refine prompt + stage-1 caption over the very same video object.

    The refine prompt defaults to :data:`DEFAULT_STAGE2_PROMPT`. It is block-aligned after the
    video like stage 1's (:func:`block_aligned_ids`), so stage 2 takes the video from the prefix
    cache.
    """
    caption, video = kit.stage1_media(request)
    text = (DEFAULT_STAGE2_PROMPT if refine_prompt is None else refine_prompt) + caption
    ids = video_prompt_ids(processor, text, video)
    return kit.refined_request({"prompt_token_ids": ids, "multi_modal_data": {"video": video}})


class VllmQwen7B(VllmPlugin):
    """Qwen/Qwen2.5-VL-7B-Instruct."""

    @staticmethod
    def model_variant() -> str:
        """``"qwen"``."""
        return "qwen"

    @classmethod
    def processor(cls) -> Any:
        """The checkpoint's processor."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(cls.model_path())

    @classmethod
    def engine_kwargs(cls, config: VllmConfig) -> dict[str, Any]:
        """The ``LLM(...)`` arguments for ``config``; every setting is honoured or refused."""
        kit.refuse_image_input(cls.model_variant(), config)
        return kit.engine_kwargs(
            cls.model_path(config),
            config,
            limit_mm_per_prompt={"video": 1, "image": 0},
            mm_processor_kwargs={} if config.preprocess else {"do_resize": False},
            block_size=kv_block_tokens(),
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
        """Token ids for ``prompt`` (block-aligned) plus the video as ``(uint8 frames, metadata)``.

        See :func:`block_aligned_ids` for the layout.
        """
        video = client_video(frames, processor, metadata=metadata, config=config)
        return {
            "prompt_token_ids": video_prompt_ids(processor, prompt, video),
            "multi_modal_data": {"video": video},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Refine prompt + stage-1 caption over the very same video object.

        Laid out like stage 1, so that stage 2 takes the video from the prefix cache.
        """
        return refined_video_request(request, processor, refine_prompt)

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The first completion's text, stripped."""
        return kit.first_text(vllm_output)
