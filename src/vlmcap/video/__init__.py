"""Caption real video files: windowing, decoding, the resumable job and its outputs.

- Pure core: :func:`compute_windows`, :func:`sample_indices`, :func:`window_metadata`,
  :func:`plan_windows` over frozen records (:class:`Window`, :class:`WindowSettings`,
  :class:`WindowPlan`); :class:`WindowCaption` rows and the resume bookkeeping.
- I/O edges: :func:`probe` / :func:`iter_decoded` / :func:`decode_windows` (PyAV, one pass per
  file) and :func:`open_sink` (JSON Lines file or Parquet folder, durable and resumable).
- The job: :func:`caption_paths`, used by ``vlmcap caption``.
"""

from vlmcap.video._decode import (
    DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE as DEFAULT_MAX_SIDE,
    MEDIA_EXTENSIONS as MEDIA_EXTENSIONS,
    DecodedWindow as DecodedWindow,
    MediaInfo as MediaInfo,
    decode_windows as decode_windows,
    iter_decoded as iter_decoded,
    plan_media as plan_media,
    probe as probe,
)
from vlmcap.video._errors import (
    CorruptMediaError as CorruptMediaError,
    EmptyMediaError as EmptyMediaError,
    MediaError as MediaError,
    MediaNotFoundError as MediaNotFoundError,
    MediaTooShortError as MediaTooShortError,
    NoFramesError as NoFramesError,
    NoVideoStreamError as NoVideoStreamError,
    ResolutionTooLargeError as ResolutionTooLargeError,
    TruncatedMediaError as TruncatedMediaError,
    UnsupportedMediaError as UnsupportedMediaError,
)
from vlmcap.video._job import (
    JobStats as JobStats,
    MissingInputError as MissingInputError,
    SettingsChangedError as SettingsChangedError,
    caption_paths as caption_paths,
    expand_inputs as expand_inputs,
    scan_inputs as scan_inputs,
)
from vlmcap.video._results import (
    FILE_ROW_INDEX as FILE_ROW_INDEX,
    ROW_DOCS as ROW_DOCS,
    WindowCaption as WindowCaption,
)
from vlmcap.video._sink import (
    JsonlSink as JsonlSink,
    ParquetSink as ParquetSink,
    ResultSink as ResultSink,
    SinkError as SinkError,
    open_sink as open_sink,
    read_rows as read_rows,
)
from vlmcap.video._windows import (
    WINDOW_MAX_FRAMES as WINDOW_MAX_FRAMES,
    WINDOW_MIN_FRAMES as WINDOW_MIN_FRAMES,
    Window as Window,
    WindowPlan as WindowPlan,
    WindowSettings as WindowSettings,
    compute_windows as compute_windows,
    plan_windows as plan_windows,
    sample_indices as sample_indices,
    window_metadata as window_metadata,
)


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "FILE_ROW_INDEX",
    "MEDIA_EXTENSIONS",
    "ROW_DOCS",
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
    "MissingInputError",
    "NoFramesError",
    "NoVideoStreamError",
    "ParquetSink",
    "ResolutionTooLargeError",
    "ResultSink",
    "SettingsChangedError",
    "SinkError",
    "TruncatedMediaError",
    "UnsupportedMediaError",
    "Window",
    "WindowCaption",
    "WindowPlan",
    "WindowSettings",
    "caption_paths",
    "compute_windows",
    "decode_windows",
    "expand_inputs",
    "iter_decoded",
    "open_sink",
    "plan_media",
    "plan_windows",
    "probe",
    "read_rows",
    "sample_indices",
    "scan_inputs",
    "window_metadata",
]
