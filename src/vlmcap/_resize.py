"""Qwen-style frame sizing: 28-aligned sides within a per-frame pixel budget."""

import math

import torch
import torch.nn.functional as F  # noqa: N812 - torch convention

from vlmcap._errors import FrameContractError
from vlmcap._frames import ByteFrames


MAX_ASPECT_RATIO = 200


def _size(width: int, height: int) -> str:
    """A frame size as users read it everywhere in vlmcap: width x height."""
    return f"{width}x{height} (width x height)"


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = 28,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
) -> tuple[int, int]:
    """The grid size nearest to ``(height, width)`` within a pixel budget.

    Both sides become multiples of ``factor`` and ``min_pixels <= h * w <= max_pixels``; the
    aspect ratio is kept as far as rounding allows.

    Raises:
        FrameContractError: a non-positive side, or an aspect ratio over 200.
    """
    if height <= 0 or width <= 0:
        raise FrameContractError("frame size", "positive width and height", _size(width, height))
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise FrameContractError(
            "frame size", f"aspect ratio at most {MAX_ASPECT_RATIO}", _size(width, height)
        )
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def resize_frames(frames: ByteFrames, height: int, width: int) -> ByteFrames:
    """Resize uint8 ``(T, 3, H, W)`` frames (bicubic, antialiased); a no-op at the same size."""
    if tuple(frames.shape[2:]) == (height, width):
        return frames
    out = F.interpolate(
        frames.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)
