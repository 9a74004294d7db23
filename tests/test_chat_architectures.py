"""The ``chat`` plugin on seven more architectures than its own two recipes (issue #15).

Each architecture gets a tiny random checkpoint built by :func:`vlmcap.testing.tiny_checkpoint_like`
from its transformers config class and processor classes (into vlmcap's tiny-checkpoint cache,
``$VLMCAP_TINY_DIR`` or ``~/.cache/vlmcap/tiny``, rebuilt only when the recipe changes), in the
model's own chat format, written for it here. The plugin is used as is: prompts come from the
chat template, the input (video or images) from vLLM's multimodal registry.

- Fast: the plugin sends what vLLM takes for the architecture (video whenever it can), one
  placeholder per video or image, which the model's processor expands.
- ``engine``: one real CPU vLLM engine per architecture, one alive at a time; stage 1 and stage 2
  captions, vLLM's prompt exactly as long as the model's own processor makes it (all the media
  reached the model), stage 2 over the same media with the longer prompt.

Images: Gemma 3, Idefics3 (SmolVLM-Instruct's architecture), Mistral 3 (Pixtral tower). Video:
GLM-4.1V, InternVL (transformers' own), LLaVA-NeXT-Video, Qwen2-VL. Not here: SmolVLM2's
``SmolVLMForConditionalGeneration`` (its processor needs the ``num2words`` package), MiniCPM-V
4.6 (vLLM 0.32's CPU engine dies on its first video: "Tensor on device meta is not on the
expected device cpu!" in the vision tower), earlier MiniCPM-V (remote code, which the plugin does
not run), Aya Vision (vLLM 0.32 no longer serves it).
"""

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
import torch

import vlmcap
from tests import _idefics3_plugin as idefics3
from vlmcap._vllm_compat import shutdown_llm, supported_mm_limits
from vlmcap.plugins.chat import MAX_IMAGES, VllmChat, input_plan
from vlmcap.testing import synthetic_clip, tiny_checkpoint_like
from vlmcap.testing._tiny_base import CHAT_TEMPLATE as QWEN_TEMPLATE, default_root


FRAMES = 8
"""Frames per clip: one video of 8 frames, or :data:`MAX_IMAGES` of them as images."""

MAX_MODEL_LEN = 2048


def chat_template(*, turn: str, image: str, video: str, end: str, generation: str) -> str:
    """A chat template (Jinja) of one model's format, written for its tiny checkpoint.

    ``turn`` opens and ``end`` closes each message (Jinja, with ``message`` in scope);
    ``image`` and ``video`` are what one ``{"type": "image"}`` / ``{"type": "video"}`` item
    becomes (a model without video renders nothing for one); ``generation`` opens the answer.
    """
    return (
        "{% for message in messages %}"
        + turn
        + "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}"
        "{% if c['type'] == 'image' %}"
        + image
        + "{% elif c['type'] == 'video' %}"
        + video
        + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        + end
        + "{% endfor %}{% if add_generation_prompt %}"
        + generation
        + "{% endif %}"
    )


@dataclasses.dataclass(frozen=True)
class Arch:
    """One architecture: how to build its tiny checkpoint, and what vLLM is to do with it."""

    name: str
    config: str
    """The transformers config class (its defaults are shrunk)."""
    architecture: str
    """The transformers (and vLLM) model class."""
    modality: Literal["video", "image"]
    """What vLLM accepts and the chat plugin sends (video when the model takes video)."""
    placeholder: str
    """The token the chat template writes once per video or image, which vLLM expands."""
    make_processor: Callable[[Any, Any], Any]
    special_tokens: tuple[str, ...]
    template: str
    eos_token: str = "<|im_end|>"  # noqa: S105 - a token
    token_ids: Mapping[str, str] = dataclasses.field(default_factory=dict)
    named_tokens: Mapping[str, str] = dataclasses.field(default_factory=dict)
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def build(self) -> Path:
        """The tiny checkpoint (built once into vlmcap's tiny cache, reused after)."""
        import transformers

        return tiny_checkpoint_like(
            default_root() / f"chat-arch-{self.name}",
            getattr(transformers, self.config),
            self.make_processor,
            special_tokens=self.special_tokens,
            chat_template=self.template,
            eos_token=self.eos_token,
            token_ids=self.token_ids,
            named_tokens=self.named_tokens,
            overrides=self.overrides,
            architecture=self.architecture,
        )


# --- the recipes -------------------------------------------------------------------------------


NEWLINES = ("\n", "\n\n", "\n\n\n", "\n\n\n\n")
"""Gemma's vocabulary has runs of newlines as tokens, and vLLM's Gemma 3 prompt update merges
the ones it writes around an image with the prompt's (``vocab["\n\n"]``)."""


def _gemma3_processor(tokenizer: Any, config: Any) -> Any:
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    side = config.vision_config.image_size
    return Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        image_seq_length=config.mm_tokens_per_image,
    )


GEMMA3 = Arch(
    name="gemma3",
    config="Gemma3Config",
    architecture="Gemma3ForConditionalGeneration",
    modality="image",
    placeholder="<start_of_image>",
    make_processor=_gemma3_processor,
    special_tokens=(
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
        *NEWLINES,
    ),
    template=chat_template(
        turn="<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
        "else message['role'] }}\n",
        image="<start_of_image>",
        video="",
        end="<end_of_turn>\n",
        generation="<start_of_turn>model\n",
    ),
    eos_token="<end_of_turn>",
    token_ids={
        "boi_token_index": "<start_of_image>",
        "eoi_token_index": "<end_of_image>",
        "image_token_index": "<image_soft_token>",
    },
    named_tokens={
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    },
    overrides={"mm_tokens_per_image": 4},  # the 4x4 patches pooled to 2x2
)


def _glm4v_processor(tokenizer: Any, config: Any) -> Any:
    from transformers import Glm4vImageProcessor, Glm4vProcessor, Glm4vVideoProcessor

    side = config.vision_config.image_size
    size = {"shortest_edge": side * side, "longest_edge": 4 * side * side}
    return Glm4vProcessor(
        image_processor=Glm4vImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Glm4vVideoProcessor(size=size),
    )


GLM4V = Arch(
    name="glm4v",
    config="Glm4vConfig",
    architecture="Glm4vForConditionalGeneration",
    modality="video",
    placeholder="<|video|>",
    make_processor=_glm4v_processor,
    special_tokens=(
        "[gMASK]",
        "<sop>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|begin_of_image|>",
        "<|end_of_image|>",
        "<|image|>",
        "<|begin_of_video|>",
        "<|end_of_video|>",
        "<|video|>",
    ),
    template="[gMASK]<sop>"
    + chat_template(
        turn="<|{{ message['role'] }}|>\n",
        image="<|begin_of_image|><|image|><|end_of_image|>",
        video="<|begin_of_video|><|video|><|end_of_video|>",
        end="",
        generation="<|assistant|>\n",
    ),
    eos_token="<|user|>",
    token_ids={
        "image_token_id": "<|image|>",
        "video_token_id": "<|video|>",
        "image_start_token_id": "<|begin_of_image|>",
        "image_end_token_id": "<|end_of_image|>",
        "video_start_token_id": "<|begin_of_video|>",
        "video_end_token_id": "<|end_of_video|>",
    },
)


def _internvl_processor(tokenizer: Any, config: Any) -> Any:
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    height, width = config.vision_config.image_size
    size = {"height": height, "width": width}
    grid = height // config.vision_config.patch_size[0]
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=int(grid * config.downsample_ratio) ** 2,
    )


INTERNVL = Arch(
    name="internvl",
    config="InternVLConfig",
    architecture="InternVLForConditionalGeneration",
    modality="video",
    placeholder="<video>",
    make_processor=_internvl_processor,
    special_tokens=("<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
    template=chat_template(
        turn="<|im_start|>{{ message['role'] }}\n",
        image="<IMG_CONTEXT>\n",
        video="<video>\n",
        end="<|im_end|>\n",
        generation="<|im_start|>assistant\n",
    ),
    token_ids={"image_token_id": "<IMG_CONTEXT>"},
    named_tokens={
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    },
    overrides={"image_seq_length": 4},  # 4x4 patches, pixel-shuffled by 0.5
)


def _llava_next_video_processor(tokenizer: Any, config: Any) -> Any:
    from transformers import (
        LlavaNextImageProcessor,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    side = config.vision_config.image_size
    size, crop = {"shortest_edge": side}, {"height": side, "width": side}
    return LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        image_processor=LlavaNextImageProcessor(
            size=size, crop_size=crop, image_grid_pinpoints=config.image_grid_pinpoints
        ),
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's class token
    )


LLAVA_NEXT_VIDEO = Arch(
    name="llava_next_video",
    config="LlavaNextVideoConfig",
    architecture="LlavaNextVideoForConditionalGeneration",
    modality="video",
    placeholder="<video>",
    make_processor=_llava_next_video_processor,
    special_tokens=("<image>", "<video>"),
    template=chat_template(
        turn="{{ message['role'].upper() }}: ",
        image="<image>\n",
        video="<video>\n",
        end=" ",
        generation="ASSISTANT:",
    ),
    token_ids={"image_token_index": "<image>", "video_token_index": "<video>"},
    overrides={
        # vLLM's video pooler needs image_size // patch_size**2 >= 1: 16x16 frames, 4x4 patches
        "vision_config.patch_size": 4,
        "vision_config.image_size": 16,
        "image_grid_pinpoints": [[16, 16], [16, 32], [32, 16], [32, 32]],
        "image_seq_length": 16,
        "video_seq_length": 4 * FRAMES,
    },
)


def _mistral3_processor(tokenizer: Any, config: Any) -> Any:
    from transformers import PixtralImageProcessor, PixtralProcessor

    patch = config.vision_config.patch_size
    return PixtralProcessor(
        image_processor=PixtralImageProcessor(
            size={"longest_edge": config.vision_config.image_size},
            patch_size={"height": patch, "width": patch},
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        spatial_merge_size=config.spatial_merge_size,
    )


MISTRAL3 = Arch(
    name="mistral3",
    config="Mistral3Config",
    architecture="Mistral3ForConditionalGeneration",
    modality="image",
    placeholder="[IMG]",
    make_processor=_mistral3_processor,
    special_tokens=("[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "</s>"),
    template=chat_template(
        turn="{% if message['role'] == 'user' %}[INST]{% endif %}",
        image="[IMG]",
        video="",
        end="{% if message['role'] == 'user' %}[/INST]{% else %}</s>{% endif %}",
        generation="",
    ),
    eos_token="</s>",
    token_ids={"image_token_index": "[IMG]"},
)


def _qwen2_vl_processor(tokenizer: Any, config: Any) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    side = config.vision_config.patch_size * config.vision_config.spatial_merge_size * 2
    size = {"shortest_edge": side * side, "longest_edge": 4 * side * side}
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
    )


QWEN2_VL = Arch(
    name="qwen2_vl",
    config="Qwen2VLConfig",
    architecture="Qwen2VLForConditionalGeneration",
    modality="video",
    placeholder="<|video_pad|>",
    make_processor=_qwen2_vl_processor,
    special_tokens=("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"),
    template=QWEN_TEMPLATE,
    token_ids={
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    },
    overrides={
        # Qwen2-VL's vision width is embed_dim; its hidden_size is the merger's output, the
        # language model's width
        "vision_config.embed_dim": 64,
        "vision_config.hidden_size": 128,
        "text_config.rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": [4, 6, 6],
        },
    },
)


IDEFICS3 = Arch(
    name="idefics3",
    config="Idefics3Config",
    architecture="Idefics3ForConditionalGeneration",
    modality="image",
    placeholder="<image>",
    make_processor=idefics3.make_processor,
    special_tokens=idefics3.SPECIAL_TOKENS,
    template=idefics3.CHAT_TEMPLATE,
    eos_token="<end_of_utterance>",
    token_ids={"image_token_id": "<image>"},
)


ARCHS = (GEMMA3, GLM4V, IDEFICS3, INTERNVL, LLAVA_NEXT_VIDEO, MISTRAL3, QWEN2_VL)


# --- the tests ---------------------------------------------------------------------------------


def _config(arch: Arch) -> vlmcap.VllmConfig:
    return vlmcap.VllmConfig(
        model_variant="chat",
        model_path=arch.build(),
        max_output_tokens=8,
        max_model_len=MAX_MODEL_LEN,
        sampling=vlmcap.VllmSamplingConfig(temperature=0.0, top_p=1.0, min_tokens=0),
    )


def _inputs(config: vlmcap.VllmConfig, processor: Any) -> list[dict[str, Any]]:
    """Two clips apart in content and shape (a square of shapes, a white 48x96 frame)."""
    clips = [
        synthetic_clip(FRAMES, 64, 64),
        torch.full((FRAMES, 3, 48, 96), 255, dtype=torch.uint8),
    ]
    return vlmcap.make_model_inputs(clips, config, processor, "Describe this video.")


def processor_prompt_length(processor: Any, inputs: Mapping[str, Any]) -> int:
    """Tokens of ``inputs``' prompt once the model's own (transformers) processor expands it.

    The chat template wrote one placeholder per video or image; the processor replaces each with
    the model's vision tokens (tiles, rows, frames and timestamps, as the model has them), for
    the very media of ``inputs``.
    """
    text = processor.tokenizer.decode(inputs["prompt_token_ids"])
    media = inputs["multi_modal_data"]
    if "video" in media:
        frames, metadata = media["video"]
        sent = {k: v for k, v in metadata.items() if k != "do_sample_frames"}  # vLLM's own key
        out = processor(
            text=[text],
            videos=[frames],
            video_metadata=[sent],
            do_sample_frames=False,
            add_special_tokens=False,
        )
    else:
        out = processor(text=[text], images=[media["image"]], add_special_tokens=False)
    return len(out["input_ids"][0])


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_the_plugin_sends_what_vllm_takes_for_the_architecture(arch: Arch) -> None:
    """Video whenever vLLM takes video for the architecture, else images; one placeholder each."""
    config = _config(arch)
    path = arch.build()
    assert json.loads((path / "config.json").read_text())["architectures"] == [arch.architecture]
    limits = supported_mm_limits(str(path))
    takes = {m for m, n in limits.items() if n is None or n > 0}
    assert arch.modality in takes, limits
    assert ("video" in takes) == (arch.modality == "video"), limits
    assert input_plan(path).modality == arch.modality
    items = 1 if arch.modality == "video" else min(FRAMES, MAX_IMAGES)
    assert VllmChat.engine_kwargs(config)["limit_mm_per_prompt"][arch.modality] == items
    processor = vlmcap.auto_processor(config)
    placeholder = processor.tokenizer.convert_tokens_to_ids(arch.placeholder)
    for inp in _inputs(config, processor):
        assert set(inp["multi_modal_data"]) == {arch.modality}
        media = inp["multi_modal_data"][arch.modality]
        assert len(media) == (2 if arch.modality == "video" else items)  # (frames, metadata)
        assert inp["prompt_token_ids"].count(placeholder) == items
        assert processor_prompt_length(processor, inp) > len(inp["prompt_token_ids"])


@pytest.fixture(params=ARCHS, ids=lambda a: a.name)
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[Arch, vlmcap.VllmConfig, Any, Any]]:
    """(arch, config, llm, processor): one engine per architecture, stopped after its test."""
    arch: Arch = request.param
    config = _config(arch)
    llm = vlmcap.vllm_model(config)
    try:
        yield arch, config, llm, vlmcap.auto_processor(config)
    finally:
        shutdown_llm(llm)


@pytest.mark.engine
def test_stage1_and_stage2_through_the_chat_plugin(engine: Any) -> None:
    arch, config, llm, processor = engine
    inputs = _inputs(config, processor)
    assert all(set(inp["multi_modal_data"]) == {arch.modality} for inp in inputs)
    params = vlmcap.sampling_params(config)
    only1 = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
    assert all(r.ok and r.text.strip() and r.stages == 1 for r in only1), only1
    for inp, r in zip(inputs, only1, strict=True):  # the media reached the model, all of it
        expanded = processor_prompt_length(processor, inp)
        assert r.prompt_tokens == expanded > len(inp["prompt_token_ids"]), (arch.name, r)

    refine = "Refine this caption: "
    res = vlmcap.caption_results(
        inputs, llm, processor, params, config, 0, stage2_prompts=[refine, None]
    )
    assert [r.stages for r in res] == [2, 1], res
    assert all(r.ok and r.text.strip() and r.output_tokens > 0 for r in res), res
    assert (res[1].text, res[1].prompt_tokens) == (only1[1].text, only1[1].prompt_tokens)
    # stage 2 re-sends the same media (the same expansion) with the longer prompt (a result's
    # token counts are summed over its stages; its stage 1 is only1's, greedy)
    stage1 = vlmcap.VllmCaptionRequest("s1", inputs[0], caption=only1[0].text)
    stage2 = VllmChat.make_refined_llm_request(stage1, processor, refine)
    longer = len(stage2.inputs["prompt_token_ids"]) - len(inputs[0]["prompt_token_ids"])
    assert longer > 0
    assert refine + only1[0].text in processor.tokenizer.decode(stage2.inputs["prompt_token_ids"])
    second = res[0].prompt_tokens - only1[0].prompt_tokens
    assert second == only1[0].prompt_tokens + longer, (arch.name, res[0], only1[0])
    assert res[0].output_tokens > only1[0].output_tokens
