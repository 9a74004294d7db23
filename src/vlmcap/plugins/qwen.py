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

import secrets
from collections.abc import Mapping
from typing import Any

import torch

from vlmcap._errors import PluginError, UnsupportedSettingError
from vlmcap._frames import Frames, check_frames, to_uint8
from vlmcap._plugin import VllmPlugin
from vlmcap._prompts import DEFAULT_STAGE2_PROMPT
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._resize import resize_frames, smart_resize
from vlmcap._vllm_compat import build_llm, is_cpu_platform


MAX_MODEL_LEN = 32768
MAX_NUM_BATCHED_TOKENS = 32768
GPU_MEMORY_UTILIZATION = 0.85
MM_CACHE_GB = 4.0
GRID = 28
KV_BLOCK_TOKENS = 16
"""KV-cache block size the Qwen2.5-VL plugins give the engine on GPUs (vLLM's default there)."""
CPU_KV_BLOCK_TOKENS = 32
"""... and on vLLM's CPU build (its attention takes multiples of 32; vLLM would pick 128)."""


def kv_block_tokens() -> int:
    """The engine's KV block size on this platform; prompts align the text after the video to it."""
    return CPU_KV_BLOCK_TOKENS if is_cpu_platform() else KV_BLOCK_TOKENS


def chat_token_ids(
    processor: Any,
    prompt: str,
    *,
    kind: str = "video",
    system: str | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> list[int]:
    """Token ids of a one-turn chat with a vision placeholder followed by ``prompt``.

    ``template_kwargs`` are passed to the chat template (``{"enable_thinking": False}``); those
    the template never names are left out (transformers would hand them to the processor).
    """
    template = str(getattr(processor, "chat_template", None) or "")
    switches = {k: v for k, v in (template_kwargs or {}).items() if k in template}
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]})
    ids = processor.apply_chat_template(
        messages,
        add_generation_prompt=True,
        tokenize=True,
        return_tensors="pt",
        **switches,
    )
    if not isinstance(ids, torch.Tensor):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(t) for t in ids[0].tolist()]


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


def split_video(video: Any) -> tuple[Any, dict[str, Any] | None]:
    """``(frames, metadata dict)`` from any of vLLM's video forms (bare, tuple, one-item list)."""
    if isinstance(video, list) and len(video) == 1:
        video = video[0]
    if isinstance(video, tuple) and len(video) == 2:
        frames, md = video
        return frames, dict(md)
    return video, None


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


def stage1_media(request: VllmCaptionRequest, key: str = "video") -> tuple[str, Any]:
    """The stage-1 caption and the multimodal item (``multi_modal_data[key]``) to refine over.

    Raises:
        ValueError: the request has no caption (stage 2 needs it).
        PluginError: the request's inputs carry no ``multi_modal_data[key]``.
    """
    if request.caption is None:
        msg = "request caption is None: stage 2 needs the stage-1 caption"
        raise ValueError(msg)
    mm = request.inputs.get("multi_modal_data")
    if not isinstance(mm, Mapping) or key not in mm:
        msg = f"request inputs have no multi_modal_data[{key!r}] to refine over"
        raise PluginError(msg)
    return request.caption, mm[key]


def refined_video_request(
    request: VllmCaptionRequest,
    processor: Any,
    refine_prompt: str | None,
    *,
    align: bool,
    template_kwargs: Mapping[str, Any] | None = None,
) -> VllmCaptionRequest:
    """The stage-2 request: refine prompt + stage-1 caption over the very same video object.

    The refine prompt defaults to :data:`DEFAULT_STAGE2_PROMPT`; with ``align`` the prompt is
    block-aligned after the video like stage 1's (:func:`block_aligned_ids`); without it, the
    chat template renders it with ``template_kwargs``.
    """
    caption, video = stage1_media(request)
    prefix = DEFAULT_STAGE2_PROMPT if refine_prompt is None else refine_prompt
    text = prefix + caption
    ids = (
        video_prompt_ids(processor, text, video)
        if align
        else chat_token_ids(processor, text, template_kwargs=template_kwargs)
    )
    return VllmCaptionRequest(
        request_id=secrets.token_hex(8),
        inputs={"prompt_token_ids": ids, "multi_modal_data": {"video": video}},
    )


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
        if config.use_image_input:
            raise UnsupportedSettingError(
                "the qwen plugin captions video; use_image_input=True is not supported yet"
            )
        kwargs: dict[str, Any] = {
            "model": str(cls.model_path(config)),
            "tensor_parallel_size": config.num_gpus,
            "max_model_len": config.max_model_len or MAX_MODEL_LEN,
            "max_num_batched_tokens": max(MAX_NUM_BATCHED_TOKENS, config.max_model_len or 0),
            "gpu_memory_utilization": config.gpu_memory_utilization or GPU_MEMORY_UTILIZATION,
            "limit_mm_per_prompt": {"video": 1, "image": 0},
            "mm_processor_cache_gb": 0.0 if config.disable_mmcache else MM_CACHE_GB,
            "mm_processor_kwargs": {} if config.preprocess else {"do_resize": False},
            "block_size": kv_block_tokens(),
        }
        if config.compile_mm_encoder:
            kwargs["compilation_config"] = {"compile_mm_encoder": True}
        if config.fp8:
            kwargs["quantization"] = "fp8"
        if is_cpu_platform():
            kwargs["max_num_batched_tokens"] = kwargs["max_model_len"]
        return kwargs

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
        return refined_video_request(request, processor, refine_prompt, align=True)

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The first completion's text, stripped."""
        return str(vllm_output.outputs[0].text).strip()
