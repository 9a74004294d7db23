"""Caption real video files: windowing, decoding, the resumable job and its outputs.

- Pure core: :func:`compute_windows`, :func:`sample_indices`, :func:`window_metadata`,
  :func:`plan_windows` over frozen records (:class:`Window`, :class:`WindowSettings`,
  :class:`WindowPlan`); :class:`WindowCaption` rows and :class:`ResumeIndex` bookkeeping.
- I/O edges: :func:`probe` / :func:`iter_decoded` / :func:`decode_windows` (PyAV, one pass per
  file) and :func:`open_sink` (JSON Lines file or Parquet folder, durable and resumable).
- The job: :func:`caption_paths`, used by ``vlmcap caption``.
"""

from vlmcap.video._decode import (
    DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS,
)
from vlmcap.video._decode import (
    DEFAULT_MAX_SIDE as DEFAULT_MAX_SIDE,
)
from vlmcap.video._decode import (
    IMAGE_EXTENSIONS as IMAGE_EXTENSIONS,
)
from vlmcap.video._decode import (
    MEDIA_EXTENSIONS as MEDIA_EXTENSIONS,
)
from vlmcap.video._decode import (
    VIDEO_EXTENSIONS as VIDEO_EXTENSIONS,
)
from vlmcap.video._decode import (
    DecodedWindow as DecodedWindow,
)
from vlmcap.video._decode import (
    MediaInfo as MediaInfo,
)
from vlmcap.video._decode import (
    check_media_file as check_media_file,
)
from vlmcap.video._decode import (
    decode_windows as decode_windows,
)
from vlmcap.video._decode import (
    describe_error as describe_error,
)
from vlmcap.video._decode import (
    iter_decoded as iter_decoded,
)
from vlmcap.video._decode import (
    media_kind as media_kind,
)
from vlmcap.video._decode import (
    plan_media as plan_media,
)
from vlmcap.video._decode import (
    probe as probe,
)
from vlmcap.video._decode import (
    target_size as target_size,
)
from vlmcap.video._errors import (
    CorruptMediaError as CorruptMediaError,
)
from vlmcap.video._errors import (
    EmptyMediaError as EmptyMediaError,
)
from vlmcap.video._errors import (
    MediaError as MediaError,
)
from vlmcap.video._errors import (
    MediaNotFoundError as MediaNotFoundError,
)
from vlmcap.video._errors import (
    MediaTooShortError as MediaTooShortError,
)
from vlmcap.video._errors import (
    NoFramesError as NoFramesError,
)
from vlmcap.video._errors import (
    NoVideoStreamError as NoVideoStreamError,
)
from vlmcap.video._errors import (
    ResolutionTooLargeError as ResolutionTooLargeError,
)
from vlmcap.video._errors import (
    TruncatedMediaError as TruncatedMediaError,
)
from vlmcap.video._errors import (
    UnsupportedMediaError as UnsupportedMediaError,
)
from vlmcap.video._job import (
    JobStats as JobStats,
)
from vlmcap.video._job import (
    caption_paths as caption_paths,
)
from vlmcap.video._job import (
    expand_inputs as expand_inputs,
)
from vlmcap.video._results import (
    FILE_ROW_INDEX as FILE_ROW_INDEX,
)
from vlmcap.video._results import (
    ResumeIndex as ResumeIndex,
)
from vlmcap.video._results import (
    WindowCaption as WindowCaption,
)
from vlmcap.video._results import (
    settings_fingerprint as settings_fingerprint,
)
from vlmcap.video._sink import (
    JsonlSink as JsonlSink,
)
from vlmcap.video._sink import (
    ParquetSink as ParquetSink,
)
from vlmcap.video._sink import (
    ResultSink as ResultSink,
)
from vlmcap.video._sink import (
    SinkError as SinkError,
)
from vlmcap.video._sink import (
    open_sink as open_sink,
)
from vlmcap.video._sink import (
    read_rows as read_rows,
)
from vlmcap.video._windows import (
    WINDOW_MAX_FRAMES as WINDOW_MAX_FRAMES,
)
from vlmcap.video._windows import (
    WINDOW_MIN_FRAMES as WINDOW_MIN_FRAMES,
)
from vlmcap.video._windows import (
    Window as Window,
)
from vlmcap.video._windows import (
    WindowPlan as WindowPlan,
)
from vlmcap.video._windows import (
    WindowSettings as WindowSettings,
)
from vlmcap.video._windows import (
    compute_windows as compute_windows,
)
from vlmcap.video._windows import (
    image_plan as image_plan,
)
from vlmcap.video._windows import (
    plan_window as plan_window,
)
from vlmcap.video._windows import (
    plan_windows as plan_windows,
)
from vlmcap.video._windows import (
    sample_count as sample_count,
)
from vlmcap.video._windows import (
    sample_indices as sample_indices,
)
from vlmcap.video._windows import (
    sampled_fps as sampled_fps,
)
from vlmcap.video._windows import (
    window_metadata as window_metadata,
)
from vlmcap.video._windows import (
    window_seconds as window_seconds,
)


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "FILE_ROW_INDEX",
    "IMAGE_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "WINDOW_MAX_FRAMES",
    "WINDOW_MIN_FRAMES",
    "CorruptMediaError",
    "DecodedWindow",
    "EmptyMediaError",
    "JobStats",
    "JsonlSink",
    "MediaError",
    "MediaInfo",
    "MediaNotFoundError",
    "MediaTooShortError",
    "NoFramesError",
    "NoVideoStreamError",
    "ParquetSink",
    "ResolutionTooLargeError",
    "ResultSink",
    "ResumeIndex",
    "SinkError",
    "TruncatedMediaError",
    "UnsupportedMediaError",
    "Window",
    "WindowCaption",
    "WindowPlan",
    "WindowSettings",
    "caption_paths",
    "check_media_file",
    "compute_windows",
    "decode_windows",
    "describe_error",
    "expand_inputs",
    "image_plan",
    "iter_decoded",
    "media_kind",
    "open_sink",
    "plan_media",
    "plan_window",
    "plan_windows",
    "probe",
    "read_rows",
    "sample_count",
    "sample_indices",
    "sampled_fps",
    "settings_fingerprint",
    "target_size",
    "window_metadata",
    "window_seconds",
]
