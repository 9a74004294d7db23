"""Result rows of the video job and the pure bookkeeping of resuming (no I/O).

A row is keyed by ``(source, window_index, fingerprint)``: the absolute path of the file, the
window's index in it (``-1`` for a row about the whole file, e.g. one that cannot be decoded),
and a fingerprint of every setting that changes captions (:func:`fingerprint_settings`). A
re-run with the same settings skips the keys it finds. Rows of another fingerprint in the same
output are the job's business (it refuses, writes alongside or replaces them; see
:func:`vlmcap.caption_paths`); :func:`describe_changes` says which settings differ.
"""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from vlmcap._prompts import get_stage2_prompt
from vlmcap._quality import QualitySettings, rejected_by, rejection_error, row_flags
from vlmcap._records import CaptionResult, CaptionStatus, TokenCounts, VllmConfig
from vlmcap.video._windows import WindowPlan, WindowSettings


FILE_ROW_INDEX = -1
"""``window_index`` of a row about a whole file that produced no windows (an error)."""
TIME_DECIMALS = 6
"""``start_s`` and ``end_s`` are rounded to microseconds (no ``4.0040000000000004``)."""

RowKey = tuple[str, int, str]
"""``(source, window_index, fingerprint)``."""


def _seconds(value: float) -> float:
    return round(float(value), TIME_DECIMALS)


def _flags(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@attrs.frozen
class WindowCaption:
    """The caption (or the error) of one window of one file: one output row.

    ``window_index`` is ``-1`` (:data:`FILE_ROW_INDEX`) for a file that yields no window
    (missing, corrupt, too short...); such a row has ``num_windows == 0``. ``frames`` is how
    many frames the model received (0 when decoding failed). ``caption`` is ``None`` for an
    error row. ``resumed`` is true for a row read back from the output of an earlier run instead
    of captioned now; it is not stored. See :data:`ROW_DOCS` for every stored column.
    """

    source: str
    window_index: int
    num_windows: int
    start_s: float = attrs.field(converter=_seconds)
    end_s: float = attrs.field(converter=_seconds)
    frames: int
    caption: str | None
    status: CaptionStatus = attrs.field(converter=CaptionStatus)
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    error: str | None
    fingerprint: str
    flags: tuple[str, ...] = attrs.field(default=(), converter=_flags)
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
        quality: QualitySettings | None = None,
    ) -> "WindowCaption":
        """Build the row of a captioned (or failed) window, with its row flags.

        A caption flagged with one of ``quality.reject`` becomes an error row naming the flags.
        """
        flags = row_flags(None if not result.ok else result.text, result.finish_reason, quality)
        rejected = rejected_by(flags, quality) if quality is not None else ()
        if rejected:
            result = CaptionResult.failure(
                rejection_error(rejected),
                TokenCounts(result.prompt_tokens, result.output_tokens),
                result.stages,
            )
        return cls(
            source=source,
            window_index=plan.window.index,
            num_windows=num_windows,
            start_s=plan.start_s,
            end_s=plan.end_s,
            frames=frames,
            caption=None if result.status is CaptionStatus.ERROR else result.text,
            status=result.status,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            error=result.error,
            fingerprint=fingerprint,
            flags=flags,
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
            caption=None,
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
            caption=None if row["caption"] is None else str(row["caption"]),
            status=CaptionStatus(row["status"]),
            finish_reason=None if row["finish_reason"] is None else str(row["finish_reason"]),
            prompt_tokens=int(row["prompt_tokens"]),
            output_tokens=int(row["output_tokens"]),
            error=None if row["error"] is None else str(row["error"]),
            fingerprint=str(row["fingerprint"]),
            flags=row.get("flags") or (),  # rows written before flags existed: none
            resumed=True,
        )


ROW_FIELDS: tuple[str, ...] = tuple(
    a.name for a in attrs.fields(WindowCaption) if a.name != "resumed"
)
"""Column names of a stored row, in order."""

ROW_DOCS: dict[str, str] = {
    "source": "absolute path of the input file",
    "window_index": "the window's index in its file, from 0; -1 for a row about the whole "
    "file (a file that yields no window: missing at decode time, corrupt, too short...)",
    "num_windows": "windows of the file (0 on a file-level error row)",
    "start_s": "where the window starts in the video, in seconds (microsecond precision)",
    "end_s": "where the window ends, in seconds (a still image: 0 and 0)",
    "frames": "frames the model received for the window: sampled at --sampling-fps, an "
    "even count in [4, 768] (2 for an image); 0 when decoding failed",
    "caption": "the caption; with --stage2, the refined (stage-2) caption only; null on an "
    "error row",
    "status": "success; truncated (the caption hit --max-tokens); error (see error)",
    "finish_reason": "vLLM's reason of the last stage: stop (end of text), length (token "
    "limit); null on an error row",
    "prompt_tokens": "prompt tokens, summed over both stages with --stage2",
    "output_tokens": "generated tokens, summed over both stages with --stage2",
    "error": "why the row failed ('<ErrorType> (<kind>): <reason>'); null on success",
    "fingerprint": "hash of the settings that change captions (model files, prompt, "
    "windowing, sampling, token limit, stage 2); rows are keyed by source, window_index "
    "and fingerprint",
    "flags": "quality flags of the caption known when the row is written: repetition (a "
    "loop of a repeated word or n-gram), truncated (finish_reason length); [] if none (and "
    "in rows of vlmcap before flags). The flags that compare captions (too_short, too_long, "
    "near_duplicate) and all counts are in <out>.quality.json, written when the run ends",
}
"""What each stored column holds (the README and ``vlmcap caption --help`` print it)."""


_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "chat_template.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SAMPLE_BYTES = 1 << 20


def _sampled_digest(path: Path, size: int) -> str:
    """Hash of a weight file's size and three 1 MiB samples (start, middle, end).

    Cheap, and different for a fine-tune of the same shape (reading 15 GB per run would not be).
    """
    h = hashlib.sha256(str(size).encode())
    middle = max(0, size // 2 - _SAMPLE_BYTES // 2)
    with path.open("rb") as f:
        for offset in sorted({0, middle, max(0, size - _SAMPLE_BYTES)}):
            f.seek(offset)
            h.update(f.read(_SAMPLE_BYTES))
    return h.hexdigest()[:16]


def model_identity(folder: Path | str, revision: str | None = None) -> str:
    """Identify a checkpoint folder by what it holds, not by how its path is spelled.

    Hashes the config, tokenizer, processor and chat-template files, every weight file's name,
    size and sampled content (:func:`_sampled_digest`), and ``revision`` when known. The same
    folder reached by a relative path, an absolute path or a symlink gets the same identity;
    a copy of it too.
    """
    root = Path(folder)
    h = hashlib.sha256(f"revision={revision}\n".encode())
    for name in _MODEL_FILES:
        p = root / name
        if p.is_file():
            h.update(f"{name}\n".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    weights = sorted(
        (p for p in root.rglob("*") if p.suffix in _WEIGHT_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    for p in weights:
        size = os.stat(p).st_size  # noqa: PTH116 - follows links like open() does
        h.update(f"{p.relative_to(root).as_posix()}:{_sampled_digest(p, size)}\n".encode())
    return h.hexdigest()[:16]


def fingerprint_settings(
    config: VllmConfig,
    prompt: str,
    settings: WindowSettings,
    max_pixels: int | None,
    model: str | None = None,
) -> dict[str, Any]:
    """Every setting that changes which windows exist or what their captions say, as JSON.

    Covered: model variant and identity (``model``, from :func:`model_identity`; without it the
    ``model_path`` string stands in), prompt, stage-2 flag and prompt, output token limit,
    sampling settings, fp8, where resizing happens, window settings, the resize budget and the
    visual token budget (``max_video_tokens``, when set).
    Not covered: engine sizing (``num_gpus``, ``batch_size``, ``max_model_len``...).
    """
    fallback = None if config.model_path is None else str(config.model_path)
    return {
        "model_variant": config.model_variant,
        "model": model if model is not None else fallback,
        "prompt": prompt,
        "stage2": get_stage2_prompt(config.stage2_prompt_text) if config.stage2_caption else None,
        "max_output_tokens": config.max_output_tokens,
        "sampling": attrs.asdict(config.sampling),
        "fp8": config.fp8,
        "preprocess": config.preprocess,
        "window": attrs.asdict(settings),
        "max_pixels": max_pixels,
        # only when set, so outputs written before the budget existed keep their fingerprint
        **({} if (n := config.max_video_tokens) is None else {"max_video_tokens": n}),
    }


def fingerprint_of(payload: Mapping[str, Any]) -> str:
    """The 16-hex-digit hash of :func:`fingerprint_settings`' payload."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def settings_fingerprint(
    config: VllmConfig,
    prompt: str,
    settings: WindowSettings,
    max_pixels: int | None,
    model: str | None = None,
) -> str:
    """Hash every setting that changes captions (see :func:`fingerprint_settings`)."""
    return fingerprint_of(fingerprint_settings(config, prompt, settings, max_pixels, model))


def _flatten(payload: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def describe_changes(ours: Mapping[str, Any], theirs: Mapping[str, Any] | None) -> str:
    """Say which settings differ between two :func:`fingerprint_settings` payloads.

    ``theirs`` is ``None`` when the settings behind the other fingerprint are not known.
    """
    if theirs is None:
        return "settings not recorded (written by an older vlmcap)"
    a, b = _flatten(theirs), _flatten(ours)
    changed = [
        f"{k} {_short(a.get(k))} -> {_short(b.get(k))}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]
    if not changed:
        return "same settings, another vlmcap version"
    return "; ".join("model (its files differ)" if c.startswith("model ") else c for c in changed)


@attrs.frozen
class ResumeIndex:
    """The rows of one fingerprint already in an output, by source and window index."""

    fingerprint: str
    rows: Mapping[str, Mapping[int, WindowCaption]] = attrs.field(factory=dict)

    @classmethod
    def build(
        cls, rows: Iterable[WindowCaption], fingerprint: str, *, retry_errors: bool = False
    ) -> "ResumeIndex":
        """Index the rows of ``fingerprint`` (the first row of a repeated key wins).

        With ``retry_errors`` error rows are left out, so their windows are captioned again.
        """
        by_source: dict[str, dict[int, WindowCaption]] = {}
        for row in rows:
            if row.fingerprint == fingerprint and (row.ok or not retry_errors):
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
