"""``chat``: any vLLM vision-language model whose processor has a chat template (the long tail).

One plugin for every checkpoint that vLLM serves with image or video input and whose Hugging Face
processor carries a chat template. It pins no model: the checkpoint is ``VllmConfig.model_path``
(``vlmcap caption --model chat --model-path DIR``); without one, :class:`ConfigError`.

- **Prompt**: one user turn rendered by the processor's own chat template
  (``apply_chat_template``) with ``{"type": "video"}`` or one ``{"type": "image"}`` per image
  before the text, then tokenized as is (no special tokens added): no model-specific token is
  written here.
- **Input**: what the model accepts, as vLLM's multimodal registry reports it for the checkpoint
  (:func:`vlmcap._vllm_compat.supported_mm_limits`): a model that takes video gets the clip as
  one video, ``(uint8 frames, metadata)`` (vLLM drops the metadata for models that do not use
  it); an image-only model gets evenly spaced frames as RGB PIL images, at most
  :data:`MAX_IMAGES` and at most the model's own per-prompt limit. The engine's
  ``limit_mm_per_prompt`` allows exactly that and switches the model's other modalities off.
- **Settings**: ``use_image_input=True`` sends images to a video model too (an error for a model
  that takes no images). The processor inside vLLM always resizes (only it knows the model's
  grid, tiling or anyres scheme), so ``preprocess`` is accepted with either value and changes
  nothing, as for ``qwen3_vl``. ``fp8``, ``num_gpus``, ``disable_mmcache``, ``max_model_len``
  (``None``: the model's own) and ``gpu_memory_utilization`` are honoured. Models whose
  processor is remote code are not supported (no ``trust_remote_code``).
- **Stage 2**: the refine prompt (default :data:`~vlmcap.DEFAULT_STAGE2_PROMPT`) plus the
  stage-1 caption, over the very same video or images.
"""

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs

from vlmcap._errors import ConfigError, UnsupportedSettingError
from vlmcap._frames import Frames
from vlmcap._plugin import VllmPlugin, explicit_model_path, resolve_model_path
from vlmcap._prompts import DEFAULT_STAGE2_PROMPT
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._vllm_compat import MODALITIES, build_llm, supported_mm_limits
from vlmcap.plugins import kit


VARIANT = "chat"
MAX_IMAGES = 8
"""Frames sent to an image-only model per prompt (evenly spaced over the clip)."""

NO_MODEL = (
    "the chat plugin pins no model: set VllmConfig.model_path (vlmcap caption --model chat "
    "--model-path DIR) to the folder of any vLLM vision-language model with a chat template"
)
NO_MODEL_ID = (
    "none pinned: any chat-template VLM, given as --model-path DIR / VllmConfig.model_path"
)

Modality = Literal["video", "image"]


@attrs.frozen
class ChatInputPlan:
    """How the chat plugin feeds one model: which modality, how many items per prompt."""

    modality: Modality
    items: int
    """1 video, or up to this many images (frames)."""
    disabled: tuple[str, ...] = ()
    """The model's other modalities, switched off in the engine (limit 0)."""

    @property
    def limit_mm_per_prompt(self) -> dict[str, int]:
        """The engine's ``limit_mm_per_prompt``."""
        return {**dict.fromkeys(self.disabled, 0), self.modality: self.items}


def plan_input(
    supported: Mapping[str, int | None], *, use_image_input: bool, model: str
) -> ChatInputPlan:
    """Choose the input for a model that accepts ``supported`` (modality -> limit, None: any).

    Video when the model takes video, else images; images when ``use_image_input``.

    Raises:
        UnsupportedSettingError: the model takes neither, or ``use_image_input`` and no images.
    """
    takes = {m for m, limit in supported.items() if limit is None or limit > 0}
    accepted = sorted(takes) or "nothing (a text-only model)"
    modality: Modality
    if use_image_input:
        if "image" not in takes:
            raise UnsupportedSettingError(
                f"use_image_input=True, but vLLM accepts no images for {model} "
                f"(it accepts {accepted})"
            )
        modality = "image"
    elif "video" in takes:
        modality = "video"
    elif "image" in takes:
        modality = "image"
    else:
        raise UnsupportedSettingError(
            f"the chat plugin needs a model that takes video or images; vLLM accepts {accepted} "
            f"for {model}"
        )
    limit = supported[modality]
    items = 1 if modality == "video" else min(MAX_IMAGES, MAX_IMAGES if limit is None else limit)
    disabled = tuple(sorted(m for m in supported if m in MODALITIES and m != modality))
    return ChatInputPlan(modality, items, disabled)


@functools.cache
def input_plan(model_path: Path, *, use_image_input: bool = False) -> ChatInputPlan:
    """:func:`plan_input` for the checkpoint at ``model_path`` (asks vLLM once per folder)."""
    return plan_input(
        supported_mm_limits(str(model_path)), use_image_input=use_image_input, model=str(model_path)
    )


def chat_template(processor: Any) -> str:
    """The processor's chat template (or its tokenizer's; of named templates, ``"default"``).

    Raises:
        UnsupportedSettingError: there is none.
    """
    tokenizer = getattr(processor, "tokenizer", None)
    for owner in (processor, tokenizer):
        template = getattr(owner, "chat_template", None)
        if isinstance(template, Mapping):
            template = template.get("default")
        if isinstance(template, str) and template:
            return template
    raise UnsupportedSettingError(
        f"the chat plugin needs a processor with a chat template; this "
        f"{type(processor).__name__} has none"
    )


def chat_token_ids(processor: Any, text: str, *, videos: int = 0, images: int = 0) -> list[int]:
    """Token ids of one user turn (``images`` images, ``videos`` videos, then ``text``).

    Rendered by the processor's chat template with the generation prompt, then tokenized without
    adding special tokens (the template writes them).
    """
    content: list[dict[str, Any]] = [{"type": "image"}] * images + [{"type": "video"}] * videos
    content.append({"type": "text", "text": text})
    template = chat_template(processor)
    rendered = processor.apply_chat_template(
        [{"role": "user", "content": content}],
        chat_template=template,
        tokenize=False,
        add_generation_prompt=True,
    )
    tokenizer = getattr(processor, "tokenizer", processor)
    return [int(i) for i in tokenizer(str(rendered), add_special_tokens=False)["input_ids"]]


class VllmChat(VllmPlugin):
    """Any vLLM vision-language model with a chat template (see the module docstring)."""

    pins_no_model: ClassVar[Literal[True]] = True
    """No pinned model: the checkpoint is ``VllmConfig.model_path`` (vlmcap.PinsNoModel)."""

    @staticmethod
    def model_variant() -> str:
        """``"chat"``."""
        return VARIANT

    @classmethod
    def model_id(cls) -> str:
        """There is none to give: raises :class:`ConfigError` (the model is ``model_path``)."""
        raise ConfigError(NO_MODEL_ID)

    @classmethod
    def model_path(cls, config: VllmConfig | None = None) -> Path:
        """``config.model_path`` (or the folder set with ``using_model_path``).

        Raises:
            ConfigError: none is set (the chat plugin pins no model).
            ModelNotFoundError: it is not a folder.
        """
        if explicit_model_path(VARIANT, config) is None:
            raise ConfigError(NO_MODEL)
        return resolve_model_path(VARIANT, config)

    @classmethod
    def processor(cls) -> Any:
        """The checkpoint's processor; it must have a chat template."""
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(cls.model_path())
        chat_template(processor)
        return processor

    @classmethod
    def engine_kwargs(cls, config: VllmConfig) -> dict[str, Any]:
        """The ``LLM(...)`` arguments for ``config``; every setting is honoured or refused."""
        path = cls.model_path(config)
        plan = input_plan(path, use_image_input=config.use_image_input)
        return kit.engine_kwargs(
            path, config, limit_mm_per_prompt=plan.limit_mm_per_prompt, max_model_len=None
        )

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        """A ``vllm.LLM`` for the checkpoint at ``config.model_path``."""
        return build_llm(**cls.engine_kwargs(config))

    @classmethod
    def make_llm_input(
        cls,
        prompt: str,
        frames: Frames,
        processor: Any,
        *,
        metadata: VideoMetadata | None = None,
        config: VllmConfig | None = None,
    ) -> dict[str, Any]:
        """Token ids for ``prompt`` plus the clip as a video, or as images for image-only models.

        Without ``config`` the model is the folder set with ``using_model_path``.
        """
        use_images = config is not None and config.use_image_input
        plan = input_plan(cls.model_path(config), use_image_input=use_images)
        if plan.modality == "video":
            return {
                "prompt_token_ids": chat_token_ids(processor, prompt, videos=1),
                "multi_modal_data": {
                    "video": kit.video_with_metadata(frames, metadata=metadata, config=config)
                },
            }
        images = kit.frames_as_images(kit.split_video(frames)[0], plan.items)
        return {
            "prompt_token_ids": chat_token_ids(processor, prompt, images=len(images)),
            "multi_modal_data": {"image": images},
        }

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Refine prompt + stage-1 caption over the very same video or images."""
        mm = request.inputs.get("multi_modal_data")
        key = (
            "image" if isinstance(mm, Mapping) and "video" not in mm and "image" in mm else "video"
        )
        caption, media = kit.stage1_media(request, key)
        text = (DEFAULT_STAGE2_PROMPT if refine_prompt is None else refine_prompt) + caption
        if key == "video":
            ids = chat_token_ids(processor, text, videos=1)
        else:
            ids = chat_token_ids(
                processor, text, images=len(media) if isinstance(media, list) else 1
            )
        return kit.refined_request({"prompt_token_ids": ids, "multi_modal_data": {key: media}})

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The first completion's text, stripped."""
        return kit.first_text(vllm_output)
