"""Known-bad plugins: each breaks exactly one rule of contracts/README.md.

Each class changes the good :class:`VllmVideoLLaMA` (the seed guide's example) in one place and
names the rule it breaks in ``BREAKS``. The meta-tests prove that the suite fails each of them on
exactly that rule, and on nothing else. Most are the seed guide's own "Common Plugin Bugs".
"""

import secrets
from typing import Any, ClassVar

import torch
from transformers import AutoProcessor

from contracts.reference_plugins.image_frames import (
    DEFAULT_REFINE_PROMPT,
    VllmImageFrames,
    render,
)
from contracts.reference_plugins.videollama import _DEFAULT_REFINE_PROMPT, VllmVideoLLaMA
from vlmcap import LLM, VllmCaptionRequest, VllmConfig, VllmPlugin


def _refined_inputs(
    request: VllmCaptionRequest, processor: Any, final_prompt: str
) -> dict[str, Any]:
    """Stage-2 inputs over the stage-1 video, built with the good plugin's make_llm_input."""
    video = request.inputs["multi_modal_data"]["video"]
    return VllmVideoLLaMA.make_llm_input(final_prompt, video, processor)


class VllmKeepsCaption(VllmVideoLLaMA):
    """Seed bug 1: the stage-2 request keeps caption and stage2_prompt."""

    BREAKS: ClassVar[str] = "C-REFINE-002"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
        return VllmCaptionRequest(
            request_id=refined.request_id,
            inputs=refined.inputs,
            caption=request.caption,
            stage2_prompt=request.stage2_prompt,
        )


class VllmVideoFramesKey(VllmVideoLLaMA):
    """Seed bug 2: multi_modal_data uses the key "video_frames"."""

    BREAKS: ClassVar[str] = "C-INPUT-003"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        inputs = VllmVideoLLaMA.make_llm_input(prompt, frames, processor)
        return {
            "prompt_token_ids": inputs["prompt_token_ids"],
            "multi_modal_data": {"video_frames": frames},
        }


class VllmImagesKey(VllmVideoLLaMA):
    """Seed bug 2: multi_modal_data uses the plural key "images"."""

    BREAKS: ClassVar[str] = "C-INPUT-003"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        inputs = VllmVideoLLaMA.make_llm_input(prompt, frames, processor)
        return {
            "prompt_token_ids": inputs["prompt_token_ids"],
            "multi_modal_data": {"images": frames},
        }


def _decode_video_again(request: VllmCaptionRequest) -> torch.Tensor:
    """Stands for decoding the clip from its bytes again: frames of the same shape, other pixels."""
    video = request.inputs["multi_modal_data"]["video"]
    frames = video[0] if isinstance(video, tuple) else video
    g = torch.Generator().manual_seed(1234)
    return torch.randint(0, 256, tuple(frames.shape), generator=g, dtype=torch.uint8)


class VllmNewFrames(VllmVideoLLaMA):
    """Seed bug 3: stage 2 decodes the video again instead of reusing the stage-1 frames."""

    BREAKS: ClassVar[str] = "C-REFINE-004"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
        inputs = {**refined.inputs, "multi_modal_data": {"video": _decode_video_again(request)}}
        return VllmCaptionRequest(request_id=refined.request_id, inputs=inputs)


class VllmDecodeList(VllmVideoLLaMA):
    """Seed bug 4: decode returns the list of completions (its annotation says Any)."""

    BREAKS: ClassVar[str] = "C-DECODE-001"

    @staticmethod
    def decode(vllm_output: Any) -> Any:
        return list(vllm_output.outputs)


class VllmDecodeDeclaredInt(VllmVideoLLaMA):
    """decode is declared to return int: the protocol (statically and at runtime) refuses it."""

    BREAKS: ClassVar[str] = "C-STRUCT-007"

    @staticmethod
    def decode(vllm_output: Any) -> int:  # type: ignore[override]
        return len(vllm_output.outputs)


class VllmTransposedFrames(VllmVideoLLaMA):
    """Seed bug 5: the frames are transposed to (C, T, H, W)."""

    BREAKS: ClassVar[str] = "C-INPUT-004"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        return VllmVideoLLaMA.make_llm_input(prompt, frames.transpose(0, 1), processor)


class VllmNoCaptionCheck(VllmVideoLLaMA):
    """Seed bug 6: no check for a missing caption, so None crashes the concatenation."""

    BREAKS: ClassVar[str] = "C-REFINE-008"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        _refine_prompt = _DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        final_prompt = _refine_prompt + request.caption  # type: ignore[operator]
        inputs = _refined_inputs(request, processor, final_prompt)
        return VllmCaptionRequest(request_id=secrets.token_hex(8), inputs=inputs)


class VllmReusedRequestId(VllmVideoLLaMA):
    """The stage-2 request reuses the stage-1 request id."""

    BREAKS: ClassVar[str] = "C-REFINE-003"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
        return VllmCaptionRequest(request_id=request.request_id, inputs=refined.inputs)


class VllmDerivedRequestId(VllmVideoLLaMA):
    """The stage-2 id is derived from the stage-1 id, so refining twice repeats it."""

    BREAKS: ClassVar[str] = "C-REFINE-003"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
        return VllmCaptionRequest(request_id=f"{request.request_id}-s2", inputs=refined.inputs)


class VllmDropsCaption(VllmVideoLLaMA):
    """The stage-2 prompt holds the refine prompt but not the stage-1 caption."""

    BREAKS: ClassVar[str] = "C-REFINE-005"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        if request.caption is None:
            msg = "Request caption is None"
            raise ValueError(msg)
        final_prompt = _DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        inputs = _refined_inputs(request, processor, final_prompt)
        return VllmCaptionRequest(request_id=secrets.token_hex(8), inputs=inputs)


class VllmIgnoresRefinePrompt(VllmVideoLLaMA):
    """The stage-2 prompt always uses the default refine prompt."""

    BREAKS: ClassVar[str] = "C-REFINE-006"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        return VllmVideoLLaMA.make_refined_llm_request(request, processor, None)


class VllmMutatesRequest(VllmVideoLLaMA):
    """Stage 2 writes its prompt into the stage-1 inputs and reuses that dict."""

    BREAKS: ClassVar[str] = "C-REFINE-007"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
        inputs: dict[str, Any] = request.inputs  # type: ignore[assignment]
        inputs["prompt_token_ids"] = refined.inputs["prompt_token_ids"]
        return VllmCaptionRequest(request_id=refined.request_id, inputs=dict(inputs))


class VllmRefineNoVideo(VllmVideoLLaMA):
    """The stage-2 inputs lack multi_modal_data."""

    BREAKS: ClassVar[str] = "C-REFINE-009"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
        return VllmCaptionRequest(
            request_id=refined.request_id,
            inputs={"prompt_token_ids": refined.inputs["prompt_token_ids"]},
        )


class VllmRefineReturnsDict(VllmVideoLLaMA):
    """Stage 2 returns the inputs dict instead of a VllmCaptionRequest (annotated Any)."""

    BREAKS: ClassVar[str] = "C-REFINE-001"

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> Any:
        refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
        return dict(refined.inputs)


class VllmInstanceMethod(VllmVideoLLaMA):
    """make_llm_input is written as an instance method (no @staticmethod)."""

    BREAKS: ClassVar[str] = "C-STRUCT-001"

    def make_llm_input(  # type: ignore[override]
        self, prompt: str, frames: torch.Tensor, processor: Any
    ) -> dict[str, Any]:
        return VllmVideoLLaMA.make_llm_input(prompt, frames, processor)


class VllmMissingDecode(VllmPlugin):
    """Subclasses VllmPlugin but forgets decode, so it inherits the protocol's empty stub."""

    BREAKS: ClassVar[str] = "C-STRUCT-001"

    @staticmethod
    def model_variant() -> str:
        return "videollama"

    @classmethod
    def processor(cls) -> Any:
        return AutoProcessor.from_pretrained(cls.model_path(), trust_remote_code=True)

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return VllmVideoLLaMA.model(config)

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        return VllmVideoLLaMA.make_llm_input(prompt, frames, processor)

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        return VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)


class VllmEmptyVariant(VllmVideoLLaMA):
    """model_variant returns an empty string."""

    BREAKS: ClassVar[str] = "C-STRUCT-002"

    @staticmethod
    def model_variant() -> str:
        return ""


class VllmProcessorArgs(VllmVideoLLaMA):
    """processor forwards *args, which the protocol does not allow."""

    BREAKS: ClassVar[str] = "C-STRUCT-003"

    @classmethod
    def processor(cls, *args: Any, **kwargs: Any) -> Any:
        path = cls.model_path()
        return AutoProcessor.from_pretrained(path, *args, trust_remote_code=True, **kwargs)


class VllmModelWithoutConfig(VllmVideoLLaMA):
    """model takes no config (it would read its settings elsewhere)."""

    BREAKS: ClassVar[str] = "C-STRUCT-004"

    @classmethod
    def model(cls) -> Any:  # type: ignore[override]
        return LLM(model=str(cls.model_path()), max_model_len=8192)


class VllmRenamedInputParams(VllmVideoLLaMA):
    """make_llm_input names its parameters (text, video, proc)."""

    BREAKS: ClassVar[str] = "C-STRUCT-005"

    @staticmethod
    def make_llm_input(text: str, video: torch.Tensor, proc: Any) -> dict[str, Any]:
        return VllmVideoLLaMA.make_llm_input(text, video, proc)


class VllmRefinePromptRequired(VllmVideoLLaMA):
    """make_refined_llm_request has no default for refine_prompt."""

    BREAKS: ClassVar[str] = "C-STRUCT-006"

    @staticmethod
    def make_refined_llm_request(  # type: ignore[override]
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None
    ) -> VllmCaptionRequest:
        return VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)


class VllmDecodeRenamedParam(VllmVideoLLaMA):
    """decode names its parameter output instead of vllm_output."""

    BREAKS: ClassVar[str] = "C-STRUCT-007"

    @staticmethod
    def decode(output: Any) -> str:
        return VllmVideoLLaMA.decode(output)


class VllmHardcodedProcessorPath(VllmVideoLLaMA):
    """processor loads from a fixed folder instead of cls.model_path()."""

    BREAKS: ClassVar[str] = "C-STRUCT-008"

    @classmethod
    def processor(cls) -> Any:
        return AutoProcessor.from_pretrained("/models/missing/videollama", local_files_only=True)


class VllmFloatOnly(VllmVideoLLaMA):
    """make_llm_input refuses uint8 frames, which the frame contract allows."""

    BREAKS: ClassVar[str] = "C-INPUT-001"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        if not frames.is_floating_point():
            msg = f"expected float frames in [0, 1], got {frames.dtype}"
            raise TypeError(msg)
        return VllmVideoLLaMA.make_llm_input(prompt, frames, processor)


class VllmTensorTokenIds(VllmVideoLLaMA):
    """prompt_token_ids is the tensor from apply_chat_template, without .tolist()."""

    BREAKS: ClassVar[str] = "C-INPUT-002"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        inputs = VllmVideoLLaMA.make_llm_input(prompt, frames, processor)
        return {**inputs, "prompt_token_ids": torch.tensor(inputs["prompt_token_ids"])}


class VllmIgnoresPrompt(VllmVideoLLaMA):
    """make_llm_input always asks the same question, whatever the prompt."""

    BREAKS: ClassVar[str] = "C-INPUT-005"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        return VllmVideoLLaMA.make_llm_input("Describe this video.", frames, processor)


class VllmScalesFramesInPlace(VllmVideoLLaMA):
    """make_llm_input scales float frames to [0, 255] in place."""

    BREAKS: ClassVar[str] = "C-INPUT-006"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        if frames.is_floating_point():
            frames.mul_(255.0)
        return VllmVideoLLaMA.make_llm_input(prompt, frames, processor)


class VllmDecodeTokenIds(VllmVideoLLaMA):
    """decode returns the token ids as a string instead of the text."""

    BREAKS: ClassVar[str] = "C-DECODE-002"

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return str(list(vllm_output.outputs[0].token_ids))


class VllmNoPlaceholder(VllmVideoLLaMA):
    """The chat message has no {"type": "video"} entry, so the prompt has no video placeholder.

    The prompt text is there and the video is in multi_modal_data: only the placeholder count
    (C-INPUT-007) shows that the model would never see the frames, and no engine is needed.
    """

    BREAKS: ClassVar[str] = "C-INPUT-007"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        message = {"role": "user", "content": [{"type": "text", "text": prompt}]}
        ids = processor.apply_chat_template(
            [message], add_generation_prompt=True, tokenize=True, return_tensors="pt"
        )
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        return {"prompt_token_ids": ids[0].tolist(), "multi_modal_data": {"video": frames}}


class VllmOverLimit(VllmImageFrames):
    """Sends one image per frame (up to 8) but allows only 2 images per prompt in model()."""

    BREAKS: ClassVar[str] = "C-INPUT-007"

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path()),
            max_model_len=config.max_model_len or 8192,
            limit_mm_per_prompt={"image": 2, "video": 0},
        )


class VllmEngineContextTooShort(VllmVideoLLaMA):
    """model() gives the engine a 40-token context: the video prompt does not fit.

    Every static rule holds (no rule reads max_model_len); only the engine round trip
    (engine=True) finds it.
    """

    BREAKS: ClassVar[str] = "C-ENGINE-001"

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        return LLM(
            model=str(cls.model_path()),
            tensor_parallel_size=config.num_gpus,
            max_model_len=40,
            limit_mm_per_prompt={"image": 0, "video": 1},
        )


class VllmInputRaises(VllmImageFrames):
    """Breaks only make_llm_input (it always raises); its stage 2 refines its own image inputs.

    The suite reports C-INPUT-001 once and skips the C-REFINE checks ("skipped because
    C-INPUT-001 failed"): refining inputs the plugin never makes would fail them falsely.
    """

    BREAKS: ClassVar[str] = "C-INPUT-001"

    @staticmethod
    def make_llm_input(prompt: str, frames: torch.Tensor, processor: Any) -> dict[str, Any]:
        msg = "no image placeholder token in this processor"
        raise RuntimeError(msg)

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest:
        if request.caption is None:
            msg = "request caption is None: stage 2 refines the stage-1 caption"
            raise ValueError(msg)
        images = request.inputs["multi_modal_data"]["image"]  # only its own stage-1 form
        prefix = DEFAULT_REFINE_PROMPT if refine_prompt is None else refine_prompt
        return VllmCaptionRequest(
            request_id=secrets.token_hex(8),
            inputs={
                "prompt": render(processor, len(images), prefix + request.caption),
                "multi_modal_data": {"image": images},
            },
        )


BAD_PLUGINS: tuple[type, ...] = (
    VllmKeepsCaption,
    VllmVideoFramesKey,
    VllmImagesKey,
    VllmNewFrames,
    VllmDecodeList,
    VllmDecodeDeclaredInt,
    VllmTransposedFrames,
    VllmNoCaptionCheck,
    VllmReusedRequestId,
    VllmDerivedRequestId,
    VllmDropsCaption,
    VllmIgnoresRefinePrompt,
    VllmMutatesRequest,
    VllmRefineNoVideo,
    VllmRefineReturnsDict,
    VllmInstanceMethod,
    VllmMissingDecode,
    VllmEmptyVariant,
    VllmProcessorArgs,
    VllmModelWithoutConfig,
    VllmRenamedInputParams,
    VllmRefinePromptRequired,
    VllmDecodeRenamedParam,
    VllmHardcodedProcessorPath,
    VllmFloatOnly,
    VllmTensorTokenIds,
    VllmIgnoresPrompt,
    VllmScalesFramesInPlace,
    VllmDecodeTokenIds,
    VllmEngineContextTooShort,
    VllmInputRaises,
    VllmNoPlaceholder,
    VllmOverLimit,
)
"""Every known-bad plugin; each names the one rule it breaks in ``BREAKS``."""
