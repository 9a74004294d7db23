"""One file as the caption jobs see it: resumed rows, decoded windows, error rows, in order.

The file job (:mod:`vlmcap.video._job`) and the Ray job's decoder actors
(:mod:`vlmcap.ray._actors`) both read files through :func:`file_items` and turn a window into
its engine input with :func:`window_inputs`, fitted first to the visual token budget
(:func:`budget_window`).
"""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from vlmcap._budget import apply_budget, patch_spec
from vlmcap._captioner import make_model_inputs
from vlmcap._records import CaptionResult, VllmConfig
from vlmcap.video._decode import DecodedWindow, describe_error, iter_decoded, plan_media, probe
from vlmcap.video._errors import TruncatedMediaError
from vlmcap.video._results import ResumeIndex, WindowCaption
from vlmcap.video._windows import WindowPlan, WindowSettings


__all__ = [
    "FileDone",
    "FileItem",
    "ReadyRow",
    "WindowItem",
    "budget_or_keep",
    "budget_window",
    "error_row",
    "file_items",
    "window_inputs",
]

log = logging.getLogger("vlmcap")


@attrs.frozen
class ReadyRow:
    """A row that needs no engine: resumed from an earlier run, or an error row."""

    row: WindowCaption


@attrs.frozen
class WindowItem:
    """A decoded window of ``source`` (one of its ``num_windows``), to caption."""

    decoded: DecodedWindow
    source: str
    num_windows: int


@attrs.frozen
class FileDone:
    """Every item of ``source`` came before this one."""

    source: str


FileItem = ReadyRow | WindowItem | FileDone
"""What :func:`file_items` yields."""


def file_items(  # noqa: PLR0913 - the decode settings travel together
    path: Path,
    index: ResumeIndex,
    settings: WindowSettings,
    *,
    max_pixels: int | None,
    max_side: int,
    fingerprint: str,
) -> Iterator[FileItem]:
    """Rows and windows of one file, in window order; resumed rows are read back, not redone."""
    source = str(path)
    done = index.complete(source)
    if done is not None:
        yield from (ReadyRow(r) for r in done)
        yield FileDone(source)
        return
    try:
        info = probe(path, max_side=max_side, sampling_fps=settings.sampling_fps)
        plans = plan_media(info, settings)
    except Exception as exc:
        if not isinstance(exc, ValueError | OSError):
            log.exception("unexpected failure probing %s", path)
        yield ReadyRow(WindowCaption.file_error(source, describe_error(exc), fingerprint))
        yield FileDone(source)
        return
    n = len(plans)
    todo = [p for p in plans if index.get(source, p.window.index) is None]
    decoded = iter_decoded(info, todo, max_pixels=max_pixels, max_side=max_side)
    failure: str | None = None
    for plan in plans:
        stored = index.get(source, plan.window.index)
        if stored is not None:
            yield ReadyRow(stored)
            continue
        if failure is None:
            window = next_window(decoded, path)
            if isinstance(window, DecodedWindow):
                yield WindowItem(window, source, n)
                continue
            failure = window
        yield ReadyRow(error_row(source, plan, n, failure, fingerprint))
    yield FileDone(source)


def next_window(decoded: Iterator[DecodedWindow], path: Path) -> DecodedWindow | str:
    """Return the next decoded window, or the description of why there is none."""
    try:
        return next(decoded)
    except StopIteration:
        return describe_error(
            TruncatedMediaError(path, "the decoder yielded fewer windows than planned")
        )
    except Exception as exc:
        if not isinstance(exc, ValueError | OSError):
            log.exception("unexpected failure decoding %s", path)
        return describe_error(exc)


def error_row(
    source: str, plan: WindowPlan, num_windows: int, error: str, fingerprint: str
) -> WindowCaption:
    """The error row of one planned window."""
    return WindowCaption.from_result(
        source, plan, num_windows, 0, CaptionResult.failure(error), fingerprint
    )


def budget_window(w: WindowItem, config: VllmConfig, processor: Any) -> WindowItem:
    """Fit ``w`` within ``config.max_video_tokens`` visual tokens; as is without a budget.

    Smaller frames, and if needed fewer (:func:`vlmcap._budget.fit_window`, with the patch
    sizes of the processor).

    Raises:
        VideoBudgetError: the budget is below the model's minimum for the window.
    """
    if config.max_video_tokens is None:
        return w
    d = w.decoded
    frames, metadata, _fit = apply_budget(
        d.frames, d.metadata, config.max_video_tokens, patch_spec(processor)
    )
    return attrs.evolve(w, decoded=attrs.evolve(d, frames=frames, metadata=metadata))


def budget_or_keep(w: WindowItem, config: VllmConfig, processor: Any) -> WindowItem:
    """:func:`budget_window`, or ``w`` as is if it fails (:func:`window_inputs` says why)."""
    try:
        return budget_window(w, config, processor)
    except Exception:  # noqa: BLE001 - the window's error row is made by window_inputs
        return w


def window_inputs(
    w: WindowItem, config: VllmConfig, processor: Any, prompt: str
) -> dict[str, Any] | CaptionResult:
    """The window's engine input (the plugin's), or the failure that stands for it.

    The window is fitted to ``config.max_video_tokens`` first (:func:`budget_window`).
    """
    try:
        w = budget_window(w, config, processor)
        (inp,) = make_model_inputs(
            [w.decoded.frames], config, processor, prompt, metadata=[w.decoded.metadata]
        )
    except Exception as exc:  # noqa: BLE001 - one bad window never sinks the job
        return CaptionResult.failure(f"inputs: {type(exc).__name__}: {exc}")
    return inp
