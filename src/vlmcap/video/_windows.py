"""Windowing and frame sampling: pure functions over frozen records (no I/O, no tensors).

A video of ``total_frames`` native frames is cut into windows of native frames with inclusive
ends (cosmos-curate's ``compute_windows``); from each window an even number of frames is sampled
uniformly at about ``sampling_fps``. Unlike the reference implementation:

- the sampled range includes the window's last frame (``end`` is inclusive everywhere);
- the metadata's ``fps`` is the *true* rate of the sampled frames,
  ``count / window duration``, not the nominal target rate, so timestamps ``i / fps`` land where
  the frames really are;
- sample indices are computed with exact integer arithmetic (no float ``linspace``), so they are
  sorted, unique and inside the window for every input.
"""

import math
from typing import Any

import attrs

from vlmcap._errors import ConfigError
from vlmcap._records import VideoMetadata


WINDOW_MIN_FRAMES = 4
"""Fewest native frames in a window, and fewest sampled frames per window (cosmos-curate's)."""
WINDOW_MAX_FRAMES = 768
"""Most sampled frames per window (Qwen's ``FPS_MAX_FRAMES``)."""


def _at_least(minimum: float) -> Any:
    def check(_inst: object, attribute: "attrs.Attribute[Any]", value: float) -> None:
        if not value >= minimum:
            raise ConfigError(f"{attribute.name} must be >= {minimum}, got {value!r}")

    return check


def _finite_positive(_inst: object, attribute: "attrs.Attribute[Any]", value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{attribute.name} must be a finite number > 0, got {value!r}")


@attrs.frozen
class Window:
    """Native frames ``start..end`` of a video, both inclusive; ``index`` counts from 0."""

    index: int = attrs.field(validator=_at_least(0))
    start: int = attrs.field(validator=_at_least(0))
    end: int = attrs.field()

    @end.validator
    def _check_end(self, _attribute: "attrs.Attribute[int]", value: int) -> None:
        if value < self.start:
            raise ConfigError(f"window end {value} is before its start {self.start}")

    @property
    def num_frames(self) -> int:
        """Native frames in the window, ``end - start + 1``."""
        return self.end - self.start + 1


@attrs.frozen
class WindowSettings:
    """How videos are cut into windows and sampled (cosmos-curate's ``WindowConfig`` values).

    A remainder of at least ``max(remainder_threshold, min_frames)`` native frames becomes its
    own window; a shorter one joins the last full window.
    """

    window_size: int = attrs.field(default=256, validator=_at_least(2))
    """Native frames per window."""
    remainder_threshold: int = attrs.field(default=128, validator=_at_least(1))
    sampling_fps: float = attrs.field(default=2.0, validator=_finite_positive)
    """Target rate of the sampled frames."""
    min_frames: int = attrs.field(default=WINDOW_MIN_FRAMES, validator=_at_least(2))
    """Fewest native frames of a video and of a window; fewest sampled frames per window."""
    max_frames: int = attrs.field(default=WINDOW_MAX_FRAMES, validator=_at_least(2))
    """Most sampled frames per window."""

    def __attrs_post_init__(self) -> None:
        """Check that the fields agree with each other."""
        if self.window_size < self.min_frames:
            raise ConfigError(f"window_size {self.window_size} < min_frames {self.min_frames}")
        if self.max_frames < self.min_frames:
            raise ConfigError(f"max_frames {self.max_frames} < min_frames {self.min_frames}")


@attrs.frozen
class WindowPlan:
    """Which native frames of one window are sampled, and where the window lies in time.

    ``fps`` is the true rate of the sampled frames (``len(indices) / (end_s - start_s)``).
    """

    window: Window
    indices: tuple[int, ...]
    """Native frame indices, sorted (an image repeats its one frame)."""
    fps: float = attrs.field(validator=_finite_positive)
    start_s: float
    end_s: float

    @property
    def num_frames(self) -> int:
        """Sampled frames, the ``T`` of the window's tensor."""
        return len(self.indices)

    def metadata(self, *, width: int | None = None, height: int | None = None) -> VideoMetadata:
        """Describe the sampled frames as :class:`~vlmcap.VideoMetadata` (true fps)."""
        return VideoMetadata.uniform(self.num_frames, self.fps, width=width, height=height)


def _check_fps(native_fps: float) -> None:
    if not (math.isfinite(native_fps) and native_fps > 0):
        raise ConfigError(f"native_fps must be a finite number > 0, got {native_fps!r}")


def compute_windows(
    total_frames: int,
    window_size: int = 256,
    remainder_threshold: int = 128,
    min_frames: int = WINDOW_MIN_FRAMES,
) -> tuple[Window, ...]:
    """Cut ``total_frames`` native frames into windows with inclusive ends.

    - ``total_frames < min_frames``: no windows;
    - ``total_frames <= window_size``: one window ``[0, total_frames - 1]``;
    - otherwise ``total_frames // window_size`` full windows; a remainder of at least
      ``max(remainder_threshold, min_frames)`` frames becomes its own window, a shorter one
      extends the last window to ``total_frames - 1``.

    The windows partition ``range(total_frames)`` (when there are any), and each has at least
    ``min_frames`` frames.

    Raises:
        ConfigError: a negative ``total_frames``, ``min_frames < 1`` or
            ``window_size < min_frames``.

    """
    if total_frames < 0:
        raise ConfigError(f"total_frames must be >= 0, got {total_frames}")
    if min_frames < 1:
        raise ConfigError(f"min_frames must be >= 1, got {min_frames}")
    if window_size < min_frames:
        raise ConfigError(f"window_size {window_size} < min_frames {min_frames}")
    if total_frames < min_frames:
        return ()
    if total_frames <= window_size:
        return (Window(0, 0, total_frames - 1),)
    full, remainder = divmod(total_frames, window_size)
    bounds = [(i * window_size, i * window_size + window_size - 1) for i in range(full)]
    if remainder >= max(remainder_threshold, min_frames):
        bounds.append((total_frames - remainder, total_frames - 1))
    elif remainder:
        bounds[-1] = (bounds[-1][0], total_frames - 1)
    return tuple(Window(i, start, end) for i, (start, end) in enumerate(bounds))


def _floor_even(n: int) -> int:
    return n - n % 2


def sample_count(
    num_native: int,
    native_fps: float,
    target_fps: float = 2.0,
    min_frames: int = WINDOW_MIN_FRAMES,
    max_frames: int = WINDOW_MAX_FRAMES,
) -> int:
    """How many frames to sample from ``num_native`` native frames at about ``target_fps``.

    The count is ``num_native / native_fps * target_fps`` rounded to the nearest even number
    (halves up), clamped to ``[min_frames, max_frames]`` (rounded inwards to even bounds) and
    never more than ``num_native``: where that clamp is empty (a window shorter than
    ``min_frames``) the count is the largest even number ``<= min(max_frames, num_native)``.
    The count is always even (Qwen merges frames in pairs) and >= 2.

    Raises:
        ConfigError: ``num_native < 2``, bad rates, or ``max_frames < 2``.

    """
    _check_fps(native_fps)
    _check_fps(target_fps)
    if num_native < 2:
        raise ConfigError(f"cannot sample an even number of frames from {num_native} frame(s)")
    if max_frames < 2:
        raise ConfigError(f"max_frames must be >= 2, got {max_frames}")
    wanted = num_native / native_fps * target_fps
    even = 2 * math.floor(wanted / 2 + 0.5)
    low = min_frames + min_frames % 2
    high = _floor_even(min(max_frames, num_native))
    return min(max(even, low), high)


def sample_indices(
    window: Window,
    native_fps: float,
    target_fps: float = 2.0,
    min_frames: int = WINDOW_MIN_FRAMES,
    max_frames: int = WINDOW_MAX_FRAMES,
) -> tuple[int, ...]:
    """Native frame indices sampled uniformly from ``window``, first and last frame included.

    ``count = sample_count(window.num_frames, ...)`` points are spread evenly over
    ``[window.start, window.end]`` and rounded to the nearest frame (halves up), in exact
    integer arithmetic: the result is sorted, without repeats, and starts at ``window.start``
    and ends at ``window.end``.

    Raises:
        ConfigError: see :func:`sample_count`.

    """
    n = window.num_frames
    count = sample_count(n, native_fps, target_fps, min_frames, max_frames)
    span, steps = n - 1, count - 1
    return tuple(window.start + (2 * i * span + steps) // (2 * steps) for i in range(count))


def sampled_fps(window: Window, native_fps: float, num_sampled: int) -> float:
    """Return the true rate of ``num_sampled`` frames spread over ``window`` (count / duration)."""
    _check_fps(native_fps)
    if num_sampled < 1:
        raise ConfigError(f"num_sampled must be >= 1, got {num_sampled}")
    return num_sampled * native_fps / window.num_frames


def window_seconds(window: Window, native_fps: float) -> tuple[float, float]:
    """Start and end of ``window`` in seconds: ``start / fps`` and ``(end + 1) / fps``.

    The end is where the inclusive last frame stops showing, so ``end_s - start_s`` is the
    window's duration and consecutive windows meet exactly.
    """
    _check_fps(native_fps)
    return window.start / native_fps, (window.end + 1) / native_fps


def window_metadata(
    window: Window,
    native_fps: float,
    num_sampled: int,
    *,
    width: int | None = None,
    height: int | None = None,
) -> VideoMetadata:
    """Metadata of ``num_sampled`` frames sampled from ``window``.

    ``fps`` is the true sampled rate (:func:`sampled_fps`), ``frames_indices`` are
    ``0..T-1``, ``total_num_frames`` is ``T`` and ``duration`` is ``T / fps`` (the window's
    duration): vlmcap's convention that frame ``i`` sits at ``i / fps`` seconds into the window.
    """
    fps = sampled_fps(window, native_fps, num_sampled)
    return VideoMetadata.uniform(num_sampled, fps, width=width, height=height)


def plan_window(window: Window, native_fps: float, settings: WindowSettings) -> WindowPlan:
    """Sample indices, true fps and time span of one window."""
    indices = sample_indices(
        window, native_fps, settings.sampling_fps, settings.min_frames, settings.max_frames
    )
    start_s, end_s = window_seconds(window, native_fps)
    return WindowPlan(
        window=window,
        indices=indices,
        fps=sampled_fps(window, native_fps, len(indices)),
        start_s=start_s,
        end_s=end_s,
    )


def plan_windows(
    total_frames: int, native_fps: float, settings: WindowSettings | None = None
) -> tuple[WindowPlan, ...]:
    """Every window of a video of ``total_frames`` frames at ``native_fps``, planned.

    Empty when the video has fewer than ``settings.min_frames`` frames.
    """
    s = settings or WindowSettings()
    _check_fps(native_fps)
    windows = compute_windows(total_frames, s.window_size, s.remainder_threshold, s.min_frames)
    return tuple(plan_window(w, native_fps, s) for w in windows)


IMAGE_REPEAT = 2
"""Frames an image becomes: Qwen-family models need an even number of video frames."""


def image_plan(settings: WindowSettings | None = None) -> WindowPlan:
    """Plan a still image: its one frame repeated twice, at ``settings.sampling_fps``.

    The plugin receives a 2-frame still video whose metadata says ``fps = sampling_fps`` and
    ``duration = 2 / sampling_fps``; the row's ``start_s`` and ``end_s`` are both 0.0.
    """
    s = settings or WindowSettings()
    return WindowPlan(
        window=Window(0, 0, 0),
        indices=(0,) * IMAGE_REPEAT,
        fps=s.sampling_fps,
        start_s=0.0,
        end_s=0.0,
    )
