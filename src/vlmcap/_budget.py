"""A visual token budget per window: pick the frame size, and if needed fewer frames.

A Qwen-style vision tower cuts a window of ``T`` frames of ``h x w`` pixels into patches of
``patch x patch`` pixels and ``temporal`` frames, then merges ``merge x merge`` patches into one
token, so the window costs ``ceil(T / temporal) * (h / f) * (w / f)`` tokens with
``f = patch * merge`` (Qwen2.5-VL: 14, 2, 2, so ``f = 28``). :func:`fit_window` (pure) chooses
the largest size within the model's own pixel range whose tokens fit a budget ``N``, keeping the
aspect ratio within rounding; if even the model's smallest frame (``min_pixels``) is over the
budget for ``T`` frames, it keeps fewer frames (whole temporal patches, evenly spaced) and then
the largest size that fits. It never goes below the model's minimum (``min_pixels`` per frame,
one temporal patch of frames): a budget below that is a :class:`VideoBudgetError`.

:func:`patch_spec` reads the sizes from a processor (Qwen's video processor has ``patch_size``,
``merge_size``, ``temporal_patch_size`` and the pixel range in ``size``);
:func:`apply_budget` (the thin tensor edge) resizes and subsamples a window's frames.
"""

import math
from typing import Any

import attrs

from vlmcap._errors import ConfigError
from vlmcap._records import VideoMetadata
from vlmcap._resize import resize_frames, smart_resize


class VideoBudgetError(ConfigError):
    """The budget is below what the model takes for one window at its smallest."""


@attrs.frozen
class PatchSpec:
    """How a model's vision tower turns pixels into tokens, and its pixel range per frame."""

    patch: int = 14
    merge: int = 2
    temporal: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    def __attrs_post_init__(self) -> None:
        """Positive sizes, a non-empty pixel range."""
        if min(self.patch, self.merge, self.temporal, self.min_pixels) < 1:
            raise ConfigError(f"patch sizes and min_pixels must be >= 1: {self}")
        if self.max_pixels < self.min_pixels:
            raise ConfigError(f"max_pixels < min_pixels: {self}")

    @property
    def factor(self) -> int:
        """Pixels per token side, ``patch * merge``; frame sides are multiples of it."""
        return self.patch * self.merge


@attrs.frozen
class WindowFit:
    """What :func:`fit_window` chose: frames kept, frame size, and the window's tokens."""

    frames: int
    height: int
    width: int
    tokens: int


def window_tokens(frames: int, height: int, width: int, spec: PatchSpec) -> int:
    """Visual tokens of ``frames`` frames of ``height x width`` (sides multiples of the factor)."""
    f = spec.factor
    return -(-frames // spec.temporal) * (height // f) * (width // f)


def _cells_within(height: int, width: int, cells: int) -> tuple[int, int]:
    """The largest ``(rows, cols)`` of token cells within ``cells``, shaped like the frame."""
    scale = math.sqrt(cells / (height * width))
    rows = max(1, math.floor(height * scale))
    cols = max(1, math.floor(width * scale))
    # a side clamped to one cell (an extreme aspect ratio) can push the product over
    if rows * cols > cells:
        if rows >= cols:
            rows = max(1, cells // cols)
        else:
            cols = max(1, cells // rows)
    return rows, cols


def _min_cells(height: int, width: int, spec: PatchSpec) -> tuple[int, int]:
    """The smallest frame, in cells, of at least ``min_pixels`` pixels, shaped like the frame."""
    f = spec.factor
    scale = math.sqrt(spec.min_pixels / (height * width))
    return max(1, math.ceil(height * scale / f)), max(1, math.ceil(width * scale / f))


def fit_window(frames: int, height: int, width: int, max_tokens: int, spec: PatchSpec) -> WindowFit:
    """Fit a window of ``frames`` frames of ``height x width`` within ``max_tokens`` tokens.

    See the module doc for the rule.

    Without a budget problem the size is the model's own (:func:`vlmcap.smart_resize` within
    ``[min_pixels, max_pixels]``). Monotone: a larger budget never gives fewer tokens.

    Raises:
        VideoBudgetError: ``max_tokens`` is below one temporal patch of frames at the model's
            smallest frame size.
        ConfigError: a non-positive frame count or side.
    """
    if frames < 1 or height < 1 or width < 1:
        raise ConfigError(f"a window needs frames and sides >= 1, got {frames}, {height}x{width}")
    f = spec.factor
    h0, w0 = smart_resize(
        height, width, factor=f, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels
    )
    full = window_tokens(frames, h0, w0, spec)
    if full <= max_tokens:
        return WindowFit(frames, h0, w0, full)
    floor_rows, floor_cols = _min_cells(height, width, spec)
    if floor_rows * floor_cols > (h0 // f) * (w0 // f):  # the model's rounding went lower
        floor_rows, floor_cols = h0 // f, w0 // f
    floor_cells = floor_rows * floor_cols
    groups = -(-frames // spec.temporal)
    if max_tokens // groups < floor_cells:  # even the smallest frame is over: fewer frames
        groups = max_tokens // floor_cells
        if groups < 1:
            raise VideoBudgetError(
                f"max_video_tokens {max_tokens} is below the model's minimum for one window: "
                f"{floor_cells} tokens ({min(frames, spec.temporal)} frame(s) of "
                f"{floor_cols * f}x{floor_rows * f}, the smallest frame of {spec.min_pixels} "
                "pixels or more)"
            )
        frames = min(frames, groups * spec.temporal)
    rows, cols = _cells_within(height, width, max_tokens // groups)
    # never larger than the model's own size, on either side (the aspect ratio's rounding can
    # make one side of a smaller frame longer than the model's own: 23 x 2 cells beside 22 x 3)
    rows, cols = min(rows, h0 // f), min(cols, w0 // f)
    if rows * cols < floor_cells or rows * cols * f * f < spec.min_pixels:
        rows, cols = floor_rows, floor_cols
    return WindowFit(frames, rows * f, cols * f, window_tokens(frames, rows * f, cols * f, spec))


def even_indices(total: int, keep: int) -> list[int]:
    """``keep`` indices into ``range(total)``, evenly spaced, first and last included."""
    if keep >= total:
        return list(range(total))
    if keep == 1:
        return [0]
    return [i * (total - 1) // (keep - 1) for i in range(keep)]


def patch_spec(processor: Any) -> PatchSpec:
    """The :class:`PatchSpec` of a processor (its video processor, else its image processor).

    Reads ``patch_size``, ``merge_size``, ``temporal_patch_size`` and the pixel range
    (``size`` with ``shortest_edge``/``longest_edge`` in pixels, or ``min_pixels``/
    ``max_pixels``); a missing value takes Qwen2.5-VL's.
    """
    vp = getattr(processor, "video_processor", None) or getattr(processor, "image_processor", None)
    default = PatchSpec()
    size: Any = getattr(vp, "size", None)  # a dict, or transformers' SizeDict (has .get too)

    def get(key: str) -> Any:
        return size.get(key) if callable(getattr(size, "get", None)) else None

    def pick(name: str, fallback: int) -> int:
        value = getattr(vp, name, None)
        return int(value) if isinstance(value, int | float) and value > 0 else fallback

    lo = get("shortest_edge") or pick("min_pixels", default.min_pixels)
    hi = get("longest_edge") or pick("max_pixels", default.max_pixels)
    return PatchSpec(
        patch=pick("patch_size", default.patch),
        merge=pick("merge_size", default.merge),
        temporal=pick("temporal_patch_size", default.temporal),
        min_pixels=int(lo),
        max_pixels=int(hi),
    )


def apply_budget(
    frames: Any, metadata: VideoMetadata, max_tokens: int, spec: PatchSpec
) -> tuple[Any, VideoMetadata, WindowFit]:
    """Resize (and subsample) uint8 ``(T, 3, H, W)`` frames to :func:`fit_window`'s choice.

    The metadata's fps follows the frames kept (the window's duration stays).
    """
    t, h, w = int(frames.shape[0]), int(frames.shape[2]), int(frames.shape[3])
    fit = fit_window(t, h, w, max_tokens, spec)
    if fit.frames < t:
        frames = frames[even_indices(t, fit.frames)]
        metadata = VideoMetadata.uniform(
            fit.frames, metadata.fps * fit.frames / t, width=fit.width, height=fit.height
        )
    else:
        metadata = attrs.evolve(metadata, width=fit.width, height=fit.height)
    return resize_frames(frames, fit.height, fit.width), metadata, fit
