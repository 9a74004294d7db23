"""Hypothesis strategies for plugin inputs: frames, prompts, captions, requests, vLLM outputs.

Frames follow the frame contract (``(T, 3, H, W)``, uint8 in [0, 255] or float in [0, 1]) and
stay small: ``T <= 8`` and sides that are multiples of 28 between 28 and 112, sizes every
Qwen-like processor accepts. Pixel data is drawn as a pattern plus a seed, not pixel by pixel,
so examples are cheap and shrink to a few frames of a constant colour.

Prompts and captions are ASCII text that any byte-level tokenizer decodes back exactly, so a
check can look for them in decoded token ids.

Example::

    from hypothesis import given
    from vlmcap.testing import strategies as vst

    @given(vst.frames(), vst.prompts())
    def test_my_input(frames, prompt):
        inputs = MyPlugin.make_llm_input(prompt, frames, processor)
        ...
"""

import string
from collections.abc import Callable, Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from vlmcap._records import VideoMetadata, VllmCaptionRequest


Draw = Callable[..., Any]
"""Hypothesis' ``draw`` (its ``DrawFn`` protocol is not runtime-checkable, and vlmcap's test
suite type-checks every call at runtime through jaxtyping's import hook)."""


FRAME_SIDES: tuple[int, ...] = (28, 56, 84, 112)
"""Default heights and widths: multiples of 28 (Qwen's patch grid) that processors accept."""

FRAME_DTYPES: tuple[torch.dtype, ...] = (
    torch.uint8,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
)
"""Every dtype the frame contract accepts (uint8 in [0, 255], floats in [0, 1])."""

MAX_FRAMES = 8

_PATTERNS = ("constant", "random", "extremes", "gradient")

_PROMPT_ALPHABET = string.ascii_letters + string.digits + " .,;:!?'-()\n"

_WORDS = (
    "a", "the", "red", "blue", "green", "car", "person", "dog", "walks", "drives", "along",
    "road", "street", "park", "camera", "pans", "across", "city", "boat", "lake", "square",
    "circle", "moves", "left", "right", "slowly", "quickly", "at", "night", "in", "bright",
    "kitchen", "snow", "rain", "train", "bridge", "scene", "shows", "video", "begins", "with",
)


def _fill(pattern: str, shape: tuple[int, ...], seed: int, level: float) -> torch.Tensor:
    """Float pixels in [0, 1] following ``pattern``."""
    g = torch.Generator().manual_seed(seed)
    if pattern == "constant":
        return torch.full(shape, level)
    if pattern == "random":
        return torch.rand(shape, generator=g)
    if pattern == "extremes":
        return (torch.rand(shape, generator=g) < level).float()
    t, c, h, w = shape
    ramp = torch.linspace(0.0, 1.0, steps=h * w).view(1, 1, h, w)
    phase = torch.arange(t * c, dtype=torch.float32).view(t, c, 1, 1) / max(1, t * c)
    return (ramp + phase + level).remainder(1.0)


@st.composite
def frames(  # noqa: PLR0913 - one knob per axis
    draw: Draw,
    *,
    min_frames: int = 1,
    max_frames: int = MAX_FRAMES,
    heights: Sequence[int] = FRAME_SIDES,
    widths: Sequence[int] = FRAME_SIDES,
    dtypes: Sequence[torch.dtype] = FRAME_DTYPES,
) -> torch.Tensor:
    """A ``(T, 3, H, W)`` frames tensor that satisfies the frame contract.

    Args:
        draw: supplied by Hypothesis.
        min_frames: smallest ``T``.
        max_frames: largest ``T`` (default 8).
        heights: ``H`` is drawn from these (default :data:`FRAME_SIDES`).
        widths: ``W`` is drawn from these.
        dtypes: drawn from these (default :data:`FRAME_DTYPES`); uint8 values are in
            [0, 255], float values in [0, 1] (both ends included).
    """
    t = draw(st.integers(min_frames, max_frames), label="T")
    h = draw(st.sampled_from(tuple(heights)), label="H")
    w = draw(st.sampled_from(tuple(widths)), label="W")
    dtype = draw(st.sampled_from(tuple(dtypes)), label="dtype")
    pattern = draw(st.sampled_from(_PATTERNS), label="pattern")
    level = draw(st.floats(0.0, 1.0), label="level")
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    values = _fill(pattern, (t, 3, h, w), seed, level)
    if dtype == torch.uint8:
        return (values * 255.0).round().clamp(0, 255).to(torch.uint8)
    return values.to(dtype).clamp(0.0, 1.0)


def prompts(*, min_size: int = 1, max_size: int = 200) -> st.SearchStrategy[str]:
    """Prompts: ASCII letters, digits, spaces, newlines and punctuation, never blank."""
    return st.text(_PROMPT_ALPHABET, min_size=min_size, max_size=max_size).filter(
        lambda s: bool(s.strip())
    )


def captions(*, max_words: int = 30) -> st.SearchStrategy[str]:
    """Captions as a model writes them: words separated by single spaces, maybe a final period."""
    words = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=max_words).map(" ".join)
    return st.tuples(words, st.sampled_from(("", "."))).map("".join)


def request_ids() -> st.SearchStrategy[str]:
    """Non-empty request ids such as ``"vlmcap-3"`` or ``"ab12"``."""
    return st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=24)


def video_metadata(
    num_frames: int, *, width: int | None = None, height: int | None = None
) -> st.SearchStrategy[VideoMetadata]:
    """Uniform :class:`~vlmcap.VideoMetadata` for ``num_frames`` frames at 0.5 to 30 fps."""
    return st.floats(0.5, 30.0).map(
        lambda fps: VideoMetadata.uniform(num_frames, fps, width=width, height=height)
    )


@st.composite
def videos(draw: Draw, frames_strategy: st.SearchStrategy[torch.Tensor] | None = None) -> Any:
    """A video as vlmcap hands it to vLLM: bare frames or ``(frames, metadata dict)``."""
    f = draw(frames() if frames_strategy is None else frames_strategy)
    if draw(st.booleans(), label="with metadata"):
        md = draw(video_metadata(int(f.shape[0]), width=int(f.shape[3]), height=int(f.shape[2])))
        return (f, md.to_vllm())
    return f


@st.composite
def requests(
    draw: Draw,
    *,
    caption: st.SearchStrategy[str | None] | None = None,
    stage2_prompt: st.SearchStrategy[str | None] | None = None,
    vocab_size: int = 512,
) -> VllmCaptionRequest:
    """A stage-1 :class:`~vlmcap.VllmCaptionRequest` over a video, the way vlmcap builds one.

    Args:
        draw: supplied by Hypothesis.
        caption: the stage-1 caption (default: :func:`captions`, i.e. stage 1 is done).
        stage2_prompt: default: ``None`` or a prompt.
        vocab_size: token ids of the placeholder prompt are below this.
    """
    token_ids = draw(st.lists(st.integers(0, vocab_size - 1), min_size=1, max_size=32))
    inputs = {"prompt_token_ids": token_ids, "multi_modal_data": {"video": draw(videos())}}
    return VllmCaptionRequest(
        request_id=draw(request_ids()),
        inputs=inputs,
        caption=draw(captions() if caption is None else caption),
        stage2_prompt=draw((st.none() | prompts()) if stage2_prompt is None else stage2_prompt),
    )


@st.composite
def request_outputs(
    draw: Draw,
    *,
    texts: st.SearchStrategy[str] | None = None,
    finish_reasons: Sequence[str] = ("stop", "length"),
) -> Any:
    """A finished ``vllm.RequestOutput`` with one completion, built with vLLM's own classes.

    Args:
        draw: supplied by Hypothesis.
        texts: the completion text (default: a caption, maybe padded with whitespace, or "").
        finish_reasons: drawn from these.
    """
    from vlmcap._vllm_compat import request_output

    if texts is None:
        padded = st.tuples(
            st.sampled_from(("", " ", "\n")), captions(), st.sampled_from(("", " ", "\n"))
        ).map("".join)
        texts = padded | st.just("")
    text = draw(texts, label="text")
    token_ids = draw(st.lists(st.integers(0, 511), max_size=16), label="token_ids")
    prompt_ids = draw(st.lists(st.integers(0, 511), min_size=1, max_size=16))
    finish_reason = draw(st.sampled_from(tuple(finish_reasons)), label="finish_reason")
    return request_output(
        request_id=draw(request_ids()),
        prompt_token_ids=prompt_ids,
        text=text,
        token_ids=token_ids,
        finish_reason=finish_reason,
    )
