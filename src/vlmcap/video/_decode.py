"""Decode media files into windows of sampled frames with PyAV: the I/O edge of the video job.

One file is decoded in **one pass**: frames are decoded in order, only the frames sampled by
some window are converted to RGB (``rgb24``), and decoding stops after the last wanted frame.
Each window is yielded as soon as its last frame is decoded, so memory holds one window at a
time, not the whole video.

- The frame count comes from the container (``stream.frames``); where the container does not
  say (0, as in Matroska/WebM), packets are counted by demuxing (no decoding).
- A decoder that stops before a frame the count promised raises
  :class:`~vlmcap.video.TruncatedMediaError`; frames are never left uninitialised.
- ``max_pixels`` (default ``768 * 28 * 28 = 602112``, cosmos-curate's ``VIDEO_MAX_PIXELS``)
  resizes each frame with :func:`vlmcap.smart_resize` (28-aligned sides, at most ``max_pixels``
  pixels per frame, aspect ratio kept) and :func:`~vlmcap._resize.resize_frames`; ``None`` keeps
  the native size. Unlike cosmos-curate the budget is per frame, not shared by a clip's windows.
- Images (``.jpg``, ``.jpeg``, ``.png``, ``.webp``) become one window of their frame repeated
  twice (see :func:`vlmcap.video._windows.image_plan`).
- Frames whose size changes mid-stream are scaled to the first frame's size. Rotation metadata
  is not applied; frames come out as stored.
"""

import itertools
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch

from vlmcap._errors import ConfigError
from vlmcap._frames import ByteFrames
from vlmcap._records import VideoMetadata
from vlmcap._resize import resize_frames, smart_resize
from vlmcap.video._errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    MediaTooShortError,
    NoFramesError,
    NoVideoStreamError,
    ResolutionTooLargeError,
    TruncatedMediaError,
    UnsupportedMediaError,
)
from vlmcap.video._windows import WindowPlan, WindowSettings, image_plan, plan_windows


VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
     ".flv", ".wmv", ".3gp", ".ogv", ".gif"}
)
"""File extensions decoded as video (lower case)."""
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
"""File extensions decoded as a still image (lower case)."""
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
"""Every extension vlmcap decodes."""

DEFAULT_MAX_PIXELS = 768 * 28 * 28
"""Per-frame pixel budget of the optional resize (cosmos-curate's ``VIDEO_MAX_PIXELS``)."""
DEFAULT_MAX_SIDE = 8192
"""Largest accepted width or height of a source, in pixels."""
RESIZE_FACTOR = 28

MediaKind = Literal["video", "image"]


@attrs.frozen
class MediaInfo:
    """What a probe learns about a file before decoding it."""

    path: Path
    kind: MediaKind
    total_frames: int
    native_fps: float
    """Frames per second of the source (for an image, the sampling fps of its plan)."""
    width: int
    height: int


@attrs.frozen
class DecodedWindow:
    """The sampled frames of one window: uint8 ``(T, 3, H, W)`` and their metadata."""

    path: Path
    plan: WindowPlan
    frames: ByteFrames = attrs.field(eq=False, repr=False)
    metadata: VideoMetadata

    @property
    def index(self) -> int:
        """The window's index in its file."""
        return self.plan.window.index


def media_kind(path: Path | str) -> MediaKind:
    """``"video"`` or ``"image"`` from the file's extension.

    Raises:
        UnsupportedMediaError: any other extension.

    """
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    known = " ".join(sorted(MEDIA_EXTENSIONS))
    raise UnsupportedMediaError(
        path, f"unsupported extension {suffix or '(none)'!r}; supported: {known}"
    )


def check_media_file(path: Path | str) -> MediaKind:
    """Check that ``path`` is a non-empty regular file with a supported extension.

    Raises:
        MediaNotFoundError: missing, or not a regular file.
        UnsupportedMediaError: unknown extension.
        EmptyMediaError: zero bytes.

    """
    p = Path(path)
    if not p.exists():
        raise MediaNotFoundError(p, "no such file")
    if not p.is_file():
        raise MediaNotFoundError(p, "not a regular file")
    kind = media_kind(p)
    if p.stat().st_size == 0:
        raise EmptyMediaError(p, "empty file (0 bytes)")
    return kind


def _av() -> Any:
    import av

    return av


def _open(path: Path) -> Any:
    av = _av()
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise CorruptMediaError(path, f"cannot open container: {exc}") from exc


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        others = ", ".join(s.type for s in container.streams) or "none"
        raise NoVideoStreamError(path, f"no video stream (streams: {others})")
    return container.streams.video[0]


def _native_fps(stream: Any, container: Any, total_frames: int, path: Path) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * Fraction(stream.time_base))
        if seconds > 0:
            return total_frames / seconds
    if container.duration:
        seconds = float(container.duration) / 1_000_000
        if seconds > 0:
            return total_frames / seconds
    raise CorruptMediaError(path, "cannot determine the frame rate")


def _count_frames(path: Path, stream_frames: int) -> int:
    """Frames of the first video stream: the container's count, else packets counted by demuxing."""
    if stream_frames > 0:
        return stream_frames
    av = _av()
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(path, f"cannot demux the video stream: {exc}") from exc


def _check_side(path: Path, width: int, height: int, max_side: int) -> None:
    if width > max_side or height > max_side:
        raise ResolutionTooLargeError(
            path,
            f"resolution {width}x{height} (width x height) is over the cap of {max_side} "
            "pixels a side",
        )


def probe(
    path: Path | str, *, max_side: int = DEFAULT_MAX_SIDE, sampling_fps: float = 2.0
) -> MediaInfo:
    """Check ``path`` and read its kind, frame count, frame rate and size.

    Args:
        path: a video or image file.
        max_side: largest accepted width or height.
        sampling_fps: reported as ``native_fps`` of an image.

    Raises:
        MediaError: one of its subclasses, naming the file and the problem.

    """
    p = Path(path)
    kind = check_media_file(p)
    av = _av()
    with _open(p) as container:
        stream = _video_stream(container, p)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        _check_side(p, width, height, max_side)
        if kind == "image":
            if width <= 0 or height <= 0:
                raise CorruptMediaError(p, f"image has no size ({width}x{height}, width x height)")
            return MediaInfo(p, kind, 1, sampling_fps, width, height)
        try:
            stream_frames = int(stream.frames or 0)
        except (av.error.FFmpegError, TypeError, ValueError):
            stream_frames = 0
    total = _count_frames(p, stream_frames)
    if total == 0:
        raise NoFramesError(p, "the video stream has no frames")
    with _open(p) as container:
        fps = _native_fps(_video_stream(container, p), container, total, p)
    return MediaInfo(p, kind, total, fps, width, height)


def plan_media(info: MediaInfo, settings: WindowSettings | None = None) -> tuple[WindowPlan, ...]:
    """Plan the windows of a probed file: one still-image window, or the video's windows.

    Raises:
        MediaTooShortError: a video with fewer than ``settings.min_frames`` frames.

    """
    s = settings or WindowSettings()
    if info.kind == "image":
        return (image_plan(s),)
    plans = plan_windows(info.total_frames, info.native_fps, s)
    if not plans:
        raise MediaTooShortError(
            info.path,
            f"{info.total_frames} frame(s), fewer than the {s.min_frames} a window needs",
        )
    return plans


def target_size(height: int, width: int, max_pixels: int | None) -> tuple[int, int]:
    """Compute the frame size after the optional resize (:func:`vlmcap.smart_resize`)."""
    if max_pixels is None:
        return height, width
    min_pixels = min(RESIZE_FACTOR * RESIZE_FACTOR * 4, max_pixels)
    return smart_resize(
        height, width, factor=RESIZE_FACTOR, min_pixels=min_pixels, max_pixels=max_pixels
    )


def _to_tensor(frame: Any, width: int, height: int, size: tuple[int, int]) -> torch.Tensor:
    """Convert a decoded frame to uint8 ``(3, h, w)`` at ``size`` (via ``width x height``)."""
    if (frame.width, frame.height) != (width, height):
        array = frame.to_ndarray(format="rgb24", width=width, height=height)
    else:
        array = frame.to_ndarray(format="rgb24")
    chw = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if tuple(chw.shape[1:]) == size:
        return chw.contiguous()
    return resize_frames(chw.unsqueeze(0), size[0], size[1])[0]


def iter_decoded(  # noqa: C901 - one decode loop with its error paths
    info: MediaInfo,
    plans: Sequence[WindowPlan],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    threads: int = 0,
) -> Iterator[DecodedWindow]:
    """Decode ``info.path`` once and yield the frames of each plan, in order.

    Args:
        info: from :func:`probe`.
        plans: windows to decode, sorted by window, from :func:`plan_media` (any subset).
        max_pixels: per-frame pixel budget of the resize; ``None`` keeps the native size.
        max_side: largest accepted frame side.
        threads: decoder threads; 0 lets FFmpeg choose.

    Raises:
        TruncatedMediaError: the decoder stopped before a wanted frame; windows before it were
            yielded already.
        CorruptMediaError: a decoding error.

    """
    targets = [(idx, k) for k, plan in enumerate(plans) for idx in plan.indices]
    if not targets:
        return
    if any(a[0] > b[0] for a, b in itertools.pairwise(targets)):
        raise ConfigError("plans must be sorted by window and must not overlap")
    path = info.path
    av = _av()
    size = target_size(info.height, info.width, max_pixels)
    pos = 0
    current: list[torch.Tensor] = []
    decoded = 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        try:
            for frame in container.decode(stream):
                i = decoded
                decoded += 1
                if targets[pos][0] != i:
                    continue
                _check_side(path, int(frame.width), int(frame.height), max_side)
                tensor = _to_tensor(frame, info.width, info.height, size)
                while pos < len(targets) and targets[pos][0] == i:
                    current.append(tensor)
                    k = targets[pos][1]
                    pos += 1
                    if pos == len(targets) or targets[pos][1] != k:
                        yield _window(path, plans[k], current)
                        current = []
                if pos == len(targets):
                    return
        except av.error.FFmpegError as exc:
            if decoded == 0:
                raise CorruptMediaError(path, f"cannot decode the video stream: {exc}") from exc
            raise TruncatedMediaError(
                path, f"decoding failed after {decoded} of {info.total_frames} frames: {exc}"
            ) from exc
    if decoded == 0:
        raise CorruptMediaError(path, "the decoder produced no frames")
    raise TruncatedMediaError(
        path,
        f"the decoder stopped after {decoded} frames, the container promised "
        f"{info.total_frames} (frame {targets[pos][0]} is needed)",
    )


def _window(path: Path, plan: WindowPlan, frames: list[torch.Tensor]) -> DecodedWindow:
    video = torch.stack(frames)
    metadata = plan.metadata(width=int(video.shape[3]), height=int(video.shape[2]))
    return DecodedWindow(path=path, plan=plan, frames=video, metadata=metadata)


def decode_windows(
    path: Path | str,
    settings: WindowSettings | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> tuple[DecodedWindow, ...]:
    """Probe, plan and decode every window of one file (all in memory; see :func:`iter_decoded`).

    Raises:
        MediaError: one of its subclasses, naming the file and the problem.

    """
    s = settings or WindowSettings()
    info = probe(path, max_side=max_side, sampling_fps=s.sampling_fps)
    return tuple(
        iter_decoded(info, plan_media(info, s), max_pixels=max_pixels, max_side=max_side)
    )


def describe_error(exc: BaseException) -> str:
    """Describe a failure in one line for an error row: ``"<Type> (<kind>): <reason>"``."""
    if isinstance(exc, MediaError):
        return f"{type(exc).__name__} ({exc.kind}): {exc.reason}"
    return f"{type(exc).__name__}: {exc}"

