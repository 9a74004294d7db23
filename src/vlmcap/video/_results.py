"""Result rows of the video job and the pure bookkeeping of resuming (no I/O).

A row is keyed by ``(source, window_index, fingerprint)``: the absolute path of the file, the
window's index in it (``-1`` for a row about the whole file, e.g. one that cannot be decoded),
and a fingerprint of every setting that changes captions. A re-run with the same settings skips
the keys it finds; a run with other settings (another prompt, model, window size...) captions
everything again under its own fingerprint.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from vlmcap._prompts import get_stage2_prompt
from vlmcap._records import CaptionResult, CaptionStatus, VllmConfig
from vlmcap.video._windows import WindowPlan, WindowSettings


FILE_ROW_INDEX = -1
"""``window_index`` of a row about a whole file that produced no windows (an error)."""

RowKey = tuple[str, int, str]
"""``(source, window_index, fingerprint)``."""


@attrs.frozen
class WindowCaption:
    """The caption (or the error) of one window of one file: one output row.

    ``window_index`` is ``-1`` (:data:`FILE_ROW_INDEX`) for a file that yields no window
    (missing, corrupt, too short...); such a row has ``num_windows == 0``. ``frames`` is how
    many frames the model received (0 when decoding failed). ``resumed`` is true for a row read
    back from the output of an earlier run instead of captioned now; it is not stored.
    """

    source: str
    window_index: int
    num_windows: int
    start_s: float
    end_s: float
    frames: int
    caption: str
    status: CaptionStatus = attrs.field(converter=CaptionStatus)
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    error: str | None
    fingerprint: str
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """True for ``success`` and ``truncated``."""
        return self.status is not CaptionStatus.ERROR

    @property
    def key(self) -> RowKey:
        """``(source, window_index, fingerprint)``: unique in an output."""
        return (self.source, self.window_index, self.fingerprint)

    @classmethod
    def from_result(  # noqa: PLR0913 - a row joins a window and its result
        cls,
        source: str,
        plan: WindowPlan,
        num_windows: int,
        frames: int,
        result: CaptionResult,
        fingerprint: str,
    ) -> "WindowCaption":
        """Build the row of a captioned (or failed) window."""
        return cls(
            source=source,
            window_index=plan.window.index,
            num_windows=num_windows,
            start_s=plan.start_s,
            end_s=plan.end_s,
            frames=frames,
            caption=result.text,
            status=result.status,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            error=result.error,
            fingerprint=fingerprint,
        )

    @classmethod
    def file_error(cls, source: str, error: str, fingerprint: str) -> "WindowCaption":
        """Build the one row of a file that yields no window."""
        return cls(
            source=source,
            window_index=FILE_ROW_INDEX,
            num_windows=0,
            start_s=0.0,
            end_s=0.0,
            frames=0,
            caption="",
            status=CaptionStatus.ERROR,
            finish_reason=None,
            prompt_tokens=0,
            output_tokens=0,
            error=error,
            fingerprint=fingerprint,
        )

    def to_row(self) -> dict[str, Any]:
        """Return the stored form: every field but ``resumed``; ``status`` as a string."""
        row = attrs.asdict(self, filter=lambda a, _v: a.name != "resumed")
        row["status"] = self.status.value
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "WindowCaption":
        """Parse a stored row (marked ``resumed``).

        Raises:
            KeyError, TypeError, ValueError: a malformed row.

        """
        return cls(
            source=str(row["source"]),
            window_index=int(row["window_index"]),
            num_windows=int(row["num_windows"]),
            start_s=float(row["start_s"]),
            end_s=float(row["end_s"]),
            frames=int(row["frames"]),
            caption=str(row["caption"]),
            status=CaptionStatus(row["status"]),
            finish_reason=None if row["finish_reason"] is None else str(row["finish_reason"]),
            prompt_tokens=int(row["prompt_tokens"]),
            output_tokens=int(row["output_tokens"]),
            error=None if row["error"] is None else str(row["error"]),
            fingerprint=str(row["fingerprint"]),
            resumed=True,
        )


ROW_FIELDS: tuple[str, ...] = tuple(
    a.name for a in attrs.fields(WindowCaption) if a.name != "resumed"
)
"""Column names of a stored row, in order."""


def settings_fingerprint(
    config: VllmConfig, prompt: str, settings: WindowSettings, max_pixels: int | None
) -> str:
    """Hash every setting that changes which windows exist or what their captions say.

    Covered: model variant and checkpoint path, prompt, stage-2 flag and prompt, output token
    limit, sampling settings, fp8, where resizing happens, window settings and the resize budget.
    Not covered: engine sizing (``num_gpus``, ``batch_size``, ``max_model_len``...).
    """
    payload = {
        "model_variant": config.model_variant,
        "model_path": None if config.model_path is None else str(config.model_path),
        "prompt": prompt,
        "stage2": get_stage2_prompt(config.stage2_prompt_text) if config.stage2_caption else None,
        "max_output_tokens": config.max_output_tokens,
        "sampling": attrs.asdict(config.sampling),
        "fp8": config.fp8,
        "preprocess": config.preprocess,
        "window": attrs.asdict(settings),
        "max_pixels": max_pixels,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@attrs.frozen
class ResumeIndex:
    """The rows of one fingerprint already in an output, by source and window index."""

    fingerprint: str
    rows: Mapping[str, Mapping[int, WindowCaption]] = attrs.field(factory=dict)

    @classmethod
    def build(cls, rows: Iterable[WindowCaption], fingerprint: str) -> "ResumeIndex":
        """Index the rows of ``fingerprint`` (the first row of a repeated key wins)."""
        by_source: dict[str, dict[int, WindowCaption]] = {}
        for row in rows:
            if row.fingerprint == fingerprint:
                by_source.setdefault(row.source, {}).setdefault(row.window_index, row)
        return cls(fingerprint, by_source)

    def __len__(self) -> int:
        """Rows indexed."""
        return sum(len(v) for v in self.rows.values())

    def get(self, source: str, window_index: int) -> WindowCaption | None:
        """Return the stored row of a window, if any."""
        return self.rows.get(source, {}).get(window_index)

    def complete(self, source: str) -> tuple[WindowCaption, ...] | None:
        """Every row of ``source`` in window order, if the output holds the whole file.

        A file is whole when it has its file-level row (``-1``) or rows ``0..num_windows-1``.
        """
        stored = self.rows.get(source)
        if not stored:
            return None
        if FILE_ROW_INDEX in stored:
            return (stored[FILE_ROW_INDEX],)
        n = next(iter(stored.values())).num_windows
        if n > 0 and all(i in stored for i in range(n)):
            return tuple(stored[i] for i in range(n))
        return None
