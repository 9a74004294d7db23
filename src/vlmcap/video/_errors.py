"""Typed errors for media files that cannot be captioned.

Every error derives from :class:`MediaError`, itself a :class:`~vlmcap.VlmcapError` and a
``ValueError``; :class:`MediaNotFoundError` is also a ``FileNotFoundError``. Each names the file
(``path``) and says what is wrong with it (``reason``); ``kind`` is a short stable label, the same
for every instance of a class, for grouping error rows.
"""

from pathlib import Path
from typing import ClassVar

from vlmcap._errors import VlmcapError


class MediaError(VlmcapError, ValueError):
    """A media file that cannot be decoded into windows of frames.

    Attributes:
        path: the file.
        reason: what is wrong, in words.

    """

    kind: ClassVar[str] = "media"

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The path does not exist, or is not a regular file."""

    kind = "missing"


class EmptyMediaError(MediaError):
    """The file has zero bytes."""

    kind = "empty"


class UnsupportedMediaError(MediaError):
    """The file's extension is not a video or image format that vlmcap decodes."""

    kind = "unsupported"


class CorruptMediaError(MediaError):
    """The container or its video stream cannot be decoded."""

    kind = "corrupt"


class TruncatedMediaError(CorruptMediaError):
    """The decoder stopped before a frame that the container promised (cut-off or damaged file)."""

    kind = "truncated"


class NoVideoStreamError(MediaError):
    """The container has no video stream (audio-only or data-only file)."""

    kind = "no_video"


class NoFramesError(MediaError):
    """The video stream holds zero frames."""

    kind = "no_frames"


class MediaTooShortError(MediaError):
    """The video has fewer frames than the smallest window (4 by default)."""

    kind = "too_short"


class ResolutionTooLargeError(MediaError):
    """A side of the video is over the configured cap (8192 pixels by default)."""

    kind = "too_large"
