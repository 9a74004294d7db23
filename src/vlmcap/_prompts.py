"""Caption and refinement prompts (cosmos-curate's texts)."""

from collections.abc import Mapping
from types import MappingProxyType

from vlmcap._errors import PromptError


_PROMPTS: dict[str, str] = {
    "default": "Elaborate on the visual and narrative elements of the video in detail.",
    "av": (
        "The video depicts the view from a camera mounted on a car as it is driving. Pay special "
        "attention to the motion of the cars, including the primary car whose point-of-view we "
        "observe in the video. Also note important factors that would relate to driving safety "
        "like the relative positions of pedestrians, lane markers, road signs, traffic signals, "
        "and any aggressive driving behavior of other vehicles. Also pay attention to interesting "
        "landmarks and describe them in detail."
    ),
    "av-surveillance": (
        "The video depicts the view from a surveillance camera. Pay special attention to the "
        "motion of the cars and other important factors that would relate to driving safety "
        "like the relative positions of pedestrians, lane markers, road signs, traffic signals, "
        "and any aggressive driving behavior of vehicles. Also pay attention to interesting "
        "landmarks and describe them in detail."
    ),
    "image": "Describe the image in detail.",
}
PROMPTS: Mapping[str, str] = MappingProxyType(_PROMPTS)
"""Prompt variant -> caption prompt (read-only)."""

DEFAULT_STAGE2_PROMPT = (
    "Improve and refine following video description. Focus on highlighting the key visual and "
    "sensory elements.\n"
    "Ensure the description is clear, precise, and paints a compelling picture of the scene.\n"
)
"""Prefix of the stage-2 prompt; the stage-1 caption is appended to it."""

MAX_PROMPT_CHARS = 100_000


def check_prompt(prompt: object, field: str = "prompt") -> str:
    """Return ``prompt`` if it is a non-blank string of sane length, else raise PromptError."""
    if not isinstance(prompt, str):
        raise PromptError(f"{field}: expected str, got {type(prompt).__name__}")
    if not prompt.strip():
        raise PromptError(f"{field}: empty prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError(f"{field}: {len(prompt)} characters, more than {MAX_PROMPT_CHARS}")
    return prompt


def get_prompt(prompt_variant: str = "default", prompt_text: str | None = None) -> str:
    """``prompt_text`` if set, else the named prompt."""
    if prompt_text is not None:
        return check_prompt(prompt_text, "prompt_text")
    try:
        return PROMPTS[prompt_variant]
    except KeyError:
        known = ", ".join(sorted(PROMPTS))
        raise PromptError(f"unknown prompt variant {prompt_variant!r}; known: {known}") from None


def get_stage2_prompt(stage2_prompt_text: str | None = None) -> str:
    """The refinement prefix: ``stage2_prompt_text`` if set, else the default."""
    if stage2_prompt_text is not None:
        return check_prompt(stage2_prompt_text, "stage2_prompt_text")
    return DEFAULT_STAGE2_PROMPT
