"""The frame-tensor contract: ``(frames, 3, height, width)``, uint8 in [0, 255] or float in [0, 1].

Shape and dtype are jaxtyping annotations (``Frames``) checked with beartype; value range, NaN/inf
and layout hints are checked here, because a type annotation cannot express them. Every failure is
a :class:`~vlmcap.FrameContractError` that names the field, the expected and the actual shape.
"""

from typing import Any, TypeAlias

import torch
from beartype import beartype
from jaxtyping import Float, TypeCheckError, UInt8, jaxtyped


FloatFrames: TypeAlias = Float[torch.Tensor, "_frames 3 _height _width"]
"""Float frames in [0, 1], channels first. (``_``: sizes are not bound across the arguments and
result of one call; each video has its own.)"""
ByteFrames: TypeAlias = UInt8[torch.Tensor, "_frames 3 _height _width"]
"""uint8 frames in [0, 255], channels first (the compact form decoders produce)."""
Frames: TypeAlias = FloatFrames | ByteFrames
"""What every public vlmcap function accepts as one video: ``(frames, 3, height, width)``."""

from vlmcap._errors import FrameContractError  # noqa: E402 - after the public aliases


EXPECTED = "a (frames, 3, height, width) tensor, uint8 in [0, 255] or float in [0, 1]"

MAX_SIDE = 16384
"""Largest accepted side in pixels; larger frames are almost surely a decoding bug."""


@jaxtyped(typechecker=beartype)
def _is_frames(frames: Frames) -> None:
    """Raise beartype's violation unless ``frames`` matches :data:`Frames`."""


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    return f"a {type(value).__name__}"


def _layout_hint(shape: tuple[int, ...]) -> str:
    if len(shape) == 4 and shape[1] != 3:
        if shape[-1] == 3:
            return "looks channels-last (frames, height, width, 3); use frames.permute(0, 3, 1, 2)"
        if shape[0] == 3:
            return "looks like (3, frames, height, width); use frames.transpose(0, 1)"
    if len(shape) == 3:
        return "one image? add a frames axis with frames.unsqueeze(0)"
    return ""


def check_frames(frames: Any, field: str = "frames") -> Frames:
    """Validate one video tensor against the frame contract and return it unchanged.

    Args:
        frames: the candidate tensor.
        field: how to name it in an error, e.g. ``"videos[3]"``.

    Raises:
        FrameContractError: wrong type, rank, layout, dtype, size, value range, NaN or inf.
    """
    if not isinstance(frames, torch.Tensor):
        raise FrameContractError(field, EXPECTED, _describe(frames))
    shape = tuple(frames.shape)
    if frames.dtype not in (
        torch.uint8,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    ):
        raise FrameContractError(field, EXPECTED, _describe(frames), "unsupported dtype")
    try:
        _is_frames(frames)
    except TypeCheckError as exc:
        raise FrameContractError(field, EXPECTED, _describe(frames), _layout_hint(shape)) from exc
    if 0 in shape:
        raise FrameContractError(field, EXPECTED, _describe(frames), "empty axis")
    if max(shape[2:]) > MAX_SIDE:
        raise FrameContractError(field, EXPECTED, _describe(frames), f"side over {MAX_SIDE} pixels")
    if frames.is_floating_point():
        finite = torch.isfinite(frames)
        if not bool(finite.all()):
            raise FrameContractError(field, EXPECTED, _describe(frames), "contains NaN or inf")
        lo, hi = float(frames.min()), float(frames.max())
        if lo < 0.0 or hi > 1.0:
            hint = "values look like [0, 255]: divide by 255 or pass uint8" if hi <= 255.0 else ""
            raise FrameContractError(
                field, EXPECTED, f"{_describe(frames)} with values in [{lo:g}, {hi:g}]", hint
            )
    return frames


def to_uint8(frames: Frames) -> ByteFrames:
    """Return ``frames`` as uint8 in [0, 255] (float input is scaled by 255 and rounded)."""
    if frames.dtype == torch.uint8:
        return frames
    return (frames.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
