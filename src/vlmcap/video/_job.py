"""The video captioning job: files in, one row per window out, resumable.

:func:`caption_paths` expands its inputs, decodes the files into windows on one background
thread (file after file; at most ``2 * batch_windows`` items queued ahead of the engine), and
streams the windows through :func:`vlmcap.caption_stream`, which tops the engine up to
``max_inflight`` windows as captions finish (it never drains between files). Rows come out in a
deterministic order: inputs in the order given (folders sorted), windows in order; a file's
rows are never split by another file's.

Nothing is dropped silently: a file that cannot be decoded gives an error row (window index
``-1``); a window whose decoding or captioning fails gives an error row of its own; a file
that breaks off mid-way gives its earlier windows' captions and error rows for the rest. A
path that does not exist when the job starts is a usage error (:class:`MissingInputError`),
raised before anything is written; files a folder scan does not take are counted
(:class:`InputScan`).
"""

import collections
import itertools
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
from tqdm import tqdm

from vlmcap._boundary import boundary
from vlmcap._captioner import Captioner, auto_processor, sampling_params, vllm_model
from vlmcap._errors import ConfigError, ModelNotFoundError, VlmcapError
from vlmcap._model_ids import MODEL_IDS
from vlmcap._plugin import call_model_path
from vlmcap._prompts import check_prompt, get_prompt
from vlmcap._quality import REJECTION, Captioned, QualityTally, retry_sampling
from vlmcap._records import CaptionResult, VllmConfig
from vlmcap._registry import get_plugin
from vlmcap.video._decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    MEDIA_EXTENSIONS,
)
from vlmcap.video._results import (
    ResumeIndex,
    WindowCaption,
    describe_changes,
    fingerprint_of,
    fingerprint_settings,
    model_identity,
)
from vlmcap.video._sink import ResultSink, SinkError, open_sink
from vlmcap.video._windows import WindowSettings
from vlmcap.video.items import (
    FileDone,
    FileItem,
    ReadyRow,
    WindowItem,
    budget_or_keep,
    file_items,
    window_inputs,
)


log = logging.getLogger("vlmcap")

LIST_SUFFIX = ".txt"
"""An input with this suffix is a list of paths, one per line."""


class MissingInputError(VlmcapError, FileNotFoundError):
    """Input paths that do not exist when the job starts (a usage error: nothing is written)."""

    def __init__(self, missing: Sequence[Path]) -> None:
        self.missing = tuple(missing)
        shown = "\n  ".join(map(str, self.missing[:20]))
        more = f"\n  ... and {len(self.missing) - 20} more" if len(self.missing) > 20 else ""
        super().__init__(f"{len(self.missing)} input path(s) do not exist:\n  {shown}{more}")


class SettingsChangedError(SinkError):
    """The output holds rows written with other settings (another fingerprint).

    Attributes:
        path: the output.
        fingerprint: this run's fingerprint.
        others: rows per other fingerprint.
        changes: per other fingerprint, what differs (see :func:`describe_changes`).

    """

    def __init__(
        self,
        path: Path,
        fingerprint: str,
        others: Mapping[str, int],
        changes: Mapping[str, str],
        how: str = "pass on_change='alongside' to add this run's rows beside them, "
        "or on_change='replace' to remove them",
    ) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.others = dict(others)
        self.changes = dict(changes)
        lines = "\n  ".join(f"{fp} ({n} rows): {self.changes[fp]}" for fp, n in others.items())
        super().__init__(
            f"{path} holds rows written with other settings than this run's "
            f"(fingerprint {fingerprint}):\n  {lines}\n{how}"
        )


OnChange = Literal["refuse", "alongside", "replace"]
"""What a job does with rows of other fingerprints in its output."""


@attrs.frozen
class InputScan:
    """The files a job's inputs expand to, and what folder scans left out."""

    files: tuple[Path, ...]
    """Absolute paths to caption, in order, each once."""
    skipped: Mapping[str, int] = attrs.field(factory=dict)
    """Files inside folders that are not media, by extension (``"(none)"`` without one)."""
    missing: tuple[Path, ...] = ()
    """Paths given (or listed) that do not exist."""

    def describe_skipped(self) -> str:
        """``"3 files (.txt 2, .json 1)"``, or ``""`` when nothing was skipped."""
        if not self.skipped:
            return ""
        by_count = sorted(self.skipped.items(), key=lambda kn: (-kn[1], kn[0]))
        kinds = ", ".join(f"{k} {n}" for k, n in by_count)
        return f"{sum(self.skipped.values())} files ({kinds})"


def _walk(folder: Path, skipped: Counter[str]) -> list[Path]:
    """Media files under ``folder``, recursively, sorted; hidden files and folders skipped.

    Other files are counted in ``skipped`` by extension.
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith("."):
                continue
            suffix = Path(f).suffix.lower()
            if suffix in MEDIA_EXTENSIONS:
                found.append(Path(root) / f)
            else:
                skipped[suffix or "(none)"] += 1
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read_list(list_file: Path) -> list[Path]:
    """Paths listed in a ``.txt`` file; blank lines and ``#`` comments skipped.

    Relative paths are relative to the list file's folder.
    """
    out = []
    for raw in list_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else list_file.parent / p)
    return out


def scan_inputs(inputs: Iterable[Path | str]) -> InputScan:
    """Expand inputs into files (see :func:`expand_inputs`), counting what is left out.

    Never raises for a missing path: it is listed in :attr:`InputScan.missing`.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    skipped: Counter[str] = Counter()
    missing: list[Path] = []

    def add(p: Path) -> None:
        a = Path(os.path.abspath(p))  # noqa: PTH100 - normalise without resolving links
        if a not in seen:
            seen.add(a)
            out.append(a)

    def take(p: Path) -> None:
        if p.is_dir():
            for f in _walk(p, skipped):
                add(f)
        elif not p.exists() and not p.is_symlink():
            missing.append(p)
        else:
            add(p)

    for item in inputs:
        p = Path(item).expanduser()
        if p.suffix.lower() == LIST_SUFFIX and p.is_file():
            for listed in _read_list(p):
                take(listed)
        else:
            take(p)
    return InputScan(tuple(out), dict(skipped), tuple(missing))


def expand_inputs(inputs: Iterable[Path | str]) -> list[Path]:
    """Absolute file paths to caption, in order, each once.

    - a folder: its media files (:data:`~vlmcap.video.MEDIA_EXTENSIONS`), recursively, sorted
      by relative path; hidden files and folders are skipped, other extensions are counted
      (:func:`scan_inputs` reports them);
    - an existing ``.txt`` file: the paths it lists, one per line (folders expanded too);
    - an existing file, as given: an unsupported extension named explicitly becomes an error
      row later, never silently skipped.

    Raises:
        MissingInputError: a path given or listed that does not exist.
    """
    scan = scan_inputs(inputs)
    if scan.missing:
        raise MissingInputError(scan.missing)
    return list(scan.files)


@attrs.define
class JobStats:
    """Counters a running job fills in (mutable, unlike records), for progress and summaries."""

    files: int = 0
    """Input files finished."""
    rows: Counter[str] = attrs.field(factory=Counter)
    """Rows written by this run, by status."""
    resumed: Counter[str] = attrs.field(factory=Counter)
    """Rows found in the output from earlier runs, by status."""
    fingerprint: str = ""
    """This run's settings fingerprint."""
    other_rows: int = 0
    """Rows of other fingerprints in the output (kept alongside; 0 after a replace)."""
    replaced: int = 0
    """Rows of other fingerprints this run removed (``on_change="replace"``)."""
    retried: int = 0
    """Error rows of earlier runs taken out to be captioned again (``retry_errors``)."""
    skipped: str = ""
    """What folder scans left out (:meth:`InputScan.describe_skipped`)."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    windows_captioned: int = 0
    """Windows sent to the engine by this run."""
    engine_start_s: float = 0.0
    """Seconds spent building the engine and processor (0 if given or not needed)."""
    caption_s: float = 0.0
    """Seconds spent in :func:`vlmcap.caption_results`."""
    elapsed_s: float = 0.0
    flag_counts: dict[str, int] = attrs.field(factory=dict)
    """Rows per quality flag over the run's rows (new and resumed), once the run ends."""
    quality_file: str = ""
    """Where the run's quality report went (``<out>.quality.json``), once the run ends."""
    retry_sampling: str = ""
    """The sampling a ``retry_errors`` run used for its windows, when it retried rows."""
    reject: frozenset[str] = frozenset()
    """The quality flags that reject a window (``VllmConfig.quality.reject``)."""
    rejected: int = 0
    """Rows of this run that are errors because of a rejected quality flag."""

    @property
    def errors(self) -> int:
        """Error rows, new and resumed."""
        return self.rows["error"] + self.resumed["error"]

    def add(self, row: WindowCaption) -> None:
        """Count one row."""
        if row.resumed:
            self.resumed[row.status.value] += 1
        else:
            self.rows[row.status.value] += 1
            self.rejected += (row.error or "").startswith(REJECTION)
            self.prompt_tokens += row.prompt_tokens
            self.output_tokens += row.output_tokens


@attrs.frozen
class _Failed:
    exc: BaseException


class _End:
    """The producer has no more items."""


_END = _End()


class _Producer:
    """Runs the per-file decode on a background thread, feeding a bounded queue, in order."""

    def __init__(self, items: Iterator[FileItem], maxsize: int) -> None:
        self._items = items
        self._queue: queue.Queue[FileItem | _Failed | None] = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vlmcap-decode", daemon=True)
        self._thread.start()

    def _put(self, item: "FileItem | _Failed | None") -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(_Failed(exc))
            return
        self._put(None)

    def __iter__(self) -> Iterator[FileItem]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def poll(self) -> "FileItem | _End | None":
        """The next item if one is ready, ``None`` if not yet, :data:`_END` after the last."""
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            return _END
        if isinstance(item, _Failed):
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the frame it is on) and wait for it."""
        self._stop.set()
        self._thread.join()


class _Captioner:
    """Captions the job's windows through one :class:`vlmcap.Captioner`, built on first use.

    The :class:`~vlmcap.Captioner` owns the engine (the one engine owner of the library, the
    file job and the Ray engine actor): it builds it, replaces it when it is lost, and shuts
    down what it built; a caller's engine stays the caller's.
    """

    def __init__(  # noqa: PLR0913 - the job's engine settings
        self,
        config: VllmConfig,
        prompt: str,
        llm: Any,
        processor: Any,
        stats: JobStats,
        fingerprint: str,
    ) -> None:
        self.config = config
        self.prompt = prompt
        self._llm = llm
        self._processor = processor
        self.stats = stats
        self.fingerprint = fingerprint
        self.engine: Captioner | None = None
        """Built when the first window needs it: a fully resumed run starts no engine."""
        self.retry = False
        """Sample as a retry (:func:`vlmcap._quality.retry_sampling`): a temperature bump."""

    def _ensure_engine(self) -> Captioner:
        if self.engine is not None:
            return self.engine
        t0 = time.monotonic()
        config = self.config
        if self.retry:
            config = attrs.evolve(config, sampling=retry_sampling(config.sampling, config.quality))
            s = config.sampling
            self.stats.retry_sampling = f"temperature {s.temperature}, top-p {s.top_p}"
        processor = self._processor if self._processor is not None else auto_processor(config)
        self.engine = Captioner(
            self.config,
            llm=self._llm,
            processor=processor,
            sampling_params=sampling_params(config),
            build=self._build,
            owns_engine=self._llm is None,
        )
        self.stats.engine_start_s += time.monotonic() - t0
        return self.engine

    def _build(self) -> Any:
        """A new engine for the job (the first one, or one to replace a lost engine)."""
        return vllm_model(self.config)

    @property
    def processor(self) -> Any:
        """The engine's processor (the engine is built first)."""
        return self._ensure_engine().processor

    def shutdown(self) -> None:
        """Stop the engine if this job built it (a caller's engine is the caller's)."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def _inputs(self, w: WindowItem) -> dict[str, Any] | CaptionResult:
        return window_inputs(w, self.config, self.processor, self.prompt)

    def _row(self, w: WindowItem, result: CaptionResult) -> WindowCaption:
        return WindowCaption.from_result(
            w.source,
            w.decoded.plan,
            w.num_windows,
            int(w.decoded.frames.shape[0]),
            result,
            self.fingerprint,
            self.config.quality,
        )

    def stream(
        self, first: WindowItem, producer: _Producer, order: "_InOrder", max_inflight: int
    ) -> Iterator[WindowCaption]:
        """Caption ``first`` and every later window of ``producer`` through one stream.

        The engine is topped up to ``max_inflight`` windows as captions finish, so it never
        drains between files or batches; rows leave through ``order`` in input order.
        """
        engine = self._ensure_engine()
        order.bar.unpause()  # the rate and ETA leave the engine's start-up out
        owners: dict[int, _Slot] = {}  # stream index -> the window's place in the output
        fed = itertools.count()  # the stream numbers its inputs 0, 1, ... as they are fed

        def feed() -> Iterator[dict[str, Any] | None]:
            item: FileItem | _End | None = first
            while not isinstance(item, _End):
                if item is None:
                    yield None  # nothing decoded yet: the engine keeps stepping
                elif not isinstance(item, WindowItem):
                    order.add(item)
                else:
                    item = budget_or_keep(item, self.config, self.processor)  # rows: frames kept
                    made = self._inputs(item)
                    if isinstance(made, CaptionResult):
                        order.add(item, self._row(item, made))
                    else:
                        owners[next(fed)] = order.add(item)
                        yield made
                item = producer.poll()

        t0 = time.monotonic()
        try:
            for index, result in engine.stream(feed(), max_inflight):
                slot = owners.pop(index)
                assert isinstance(slot.item, WindowItem)  # noqa: S101 - owners hold windows only
                slot.row, slot.item = self._row(slot.item, result), None
                self.stats.windows_captioned += 1
                yield from order.ready()
        finally:
            self.stats.caption_s += time.monotonic() - t0


@attrs.define
class _Slot:
    """One item's place in the output order; ``row`` once it is known."""

    item: FileItem | None
    """``None`` once the row is known (the window's frames are not kept for the wait)."""
    row: WindowCaption | None = None

    @property
    def done(self) -> bool:
        return self.row is not None or isinstance(self.item, FileDone)


class _InOrder:
    """Rows leave in input order once every row before them is known: stored, then yielded."""

    def __init__(self, sink: ResultSink | None, stats: JobStats, bar: Any) -> None:
        self.sink = sink
        self.stats = stats
        self.bar = bar
        self.slots: collections.deque[_Slot] = collections.deque()

    def add(self, item: FileItem, row: WindowCaption | None = None) -> _Slot:
        """Queue ``item`` (a resumed row is known at once; a known row's item is not kept)."""
        known = item.row if isinstance(item, ReadyRow) else row
        slot = _Slot(item if known is None else None, known)
        self.slots.append(slot)
        return slot

    def ready(self) -> Iterator[WindowCaption]:
        """Store the known rows at the front durably, then yield them (and count files)."""
        front: list[_Slot] = []
        while self.slots and self.slots[0].done:
            front.append(self.slots.popleft())
        if not front:
            return
        rows = [s.row for s in front if s.row is not None]
        if self.sink is not None:
            self.sink.append([r for r in rows if not r.resumed])
        for slot in front:
            if slot.row is not None:
                self.stats.add(slot.row)
                yield slot.row
                continue
            self.stats.files += 1
            self.bar.update(1)
            self.bar.set_postfix(
                windows=sum(self.stats.rows.values()) + sum(self.stats.resumed.values()),
                errors=self.stats.errors,
                refresh=False,
            )


@attrs.frozen
class JobPlan:
    """A job's checked arguments: what it captions and how its rows are keyed."""

    prompt: str
    settings: WindowSettings
    fingerprint: str
    fingerprint_settings: Mapping[str, Any]
    """The settings behind :attr:`fingerprint` (see :func:`fingerprint_settings`)."""
    scan: InputScan

    @property
    def files(self) -> list[Path]:
        """The input files, in order."""
        return list(self.scan.files)


def _model_identity(config: VllmConfig, *, required: bool) -> str | None:
    """Identity of the checkpoint the plugin will load (:func:`model_identity`).

    Raises:
        ModelNotFoundError: ``required`` and the checkpoint cannot be found.
    """
    variant = config.model_variant
    plugin = get_plugin(variant)
    try:
        folder = call_model_path(plugin, config)
    except ModelNotFoundError:
        if required:
            raise
        return None
    except Exception:
        log.debug("model_path() of %s failed", variant, exc_info=True)
        return None
    if not folder.is_dir():
        if required:
            raise ModelNotFoundError(variant, "?", [f"model_path {folder} (not a folder)"])
        return None
    entry = MODEL_IDS.get(variant)
    revision = entry.revision if entry is not None and config.model_path is None else None
    return model_identity(folder, revision)


@boundary
def plan_job(  # noqa: PLR0913 - the job's arguments, checked once for both jobs
    paths: str | Path | Iterable[str | Path],
    config: VllmConfig,
    prompt: str | None,
    settings: WindowSettings | None,
    *,
    max_pixels: int | None,
    batch_windows: int,
    max_inflight: int = 1,
    model_required: bool = False,
) -> JobPlan:
    """Check a job's arguments before any work; shared by :func:`caption_paths` and the Ray job.

    Args:
        paths: as :func:`caption_paths` takes them.
        config: the model.
        prompt: the caption prompt, or ``None`` for the config's.
        settings: windowing, or ``None`` for the config's sampling rate.
        max_pixels: per-frame pixel budget (part of the fingerprint).
        batch_windows: checked >= 1.
        max_inflight: checked >= 1.
        model_required: the job builds its engine, so the checkpoint must be found now (not
            after the progress bar started).

    Raises:
        ConfigError, PromptError: bad arguments.
        MissingInputError: an input path does not exist.
        ModelNotFoundError: ``model_required`` and no checkpoint is found.
    """
    if batch_windows < 1:
        raise ConfigError(f"batch_windows must be >= 1, got {batch_windows}")
    if max_inflight < 1:
        raise ConfigError(f"max_inflight must be >= 1, got {max_inflight}")
    if max_pixels is not None and max_pixels < 1:
        raise ConfigError(f"max_pixels must be >= 1 or None, got {max_pixels}")
    text = (
        check_prompt(prompt)
        if prompt is not None
        else get_prompt(config.prompt_variant, config.prompt_text)
    )
    s = settings or WindowSettings(sampling_fps=config.sampling_fps)
    scan = scan_inputs([paths] if isinstance(paths, str | Path) else paths)
    if scan.missing:
        raise MissingInputError(scan.missing)
    model = _model_identity(config, required=model_required)
    payload = fingerprint_settings(config, text, s, max_pixels, model)
    return JobPlan(text, s, fingerprint_of(payload), payload, scan)


def job_setup(  # noqa: PLR0913 - the job's arguments, checked once for both jobs
    paths: str | Path | Iterable[str | Path],
    config: VllmConfig,
    prompt: str | None,
    settings: WindowSettings | None,
    *,
    max_pixels: int | None,
    batch_windows: int,
    max_inflight: int = 1,
) -> tuple[str, WindowSettings, str, list[Path]]:
    """:func:`plan_job` as a tuple: (prompt, window settings, fingerprint, input files)."""
    plan = plan_job(
        paths,
        config,
        prompt,
        settings,
        max_pixels=max_pixels,
        batch_windows=batch_windows,
        max_inflight=max_inflight,
    )
    return plan.prompt, plan.settings, plan.fingerprint, plan.files


def open_output(  # noqa: PLR0913 - the output's policy, in one place for both jobs
    out: Path | str,
    plan: JobPlan,
    stats: JobStats,
    *,
    resume: bool = True,
    on_change: OnChange = "refuse",
    retry_errors: bool = False,
    reject: frozenset[str] = frozenset(),
) -> ResultSink:
    """Open a job's output and apply its policy for rows of earlier runs.

    Rows of other fingerprints: ``"refuse"`` raises :class:`SettingsChangedError` (naming what
    changed), ``"alongside"`` keeps them and adds this run's rows beside them, ``"replace"``
    removes them. ``retry_errors`` removes this fingerprint's error rows so their windows are
    captioned again, and with them the rows flagged with one of ``reject`` (quality flags that
    now reject a window). Fills ``stats.fingerprint``, ``other_rows``, ``replaced``, ``retried``.

    Raises:
        SettingsChangedError: ``on_change="refuse"`` and the output holds other fingerprints.
        SinkError: the output is locked or unreadable.
        ConfigError: an unknown ``on_change``.
    """
    if on_change not in ("refuse", "alongside", "replace"):
        raise ConfigError(f"on_change must be refuse, alongside or replace, got {on_change!r}")
    sink = open_sink(out, resume=resume)
    try:
        fp = plan.fingerprint
        others = Counter(r.fingerprint for r in sink.existing if r.fingerprint != fp)
        if others and on_change == "refuse":
            changes = {
                other: describe_changes(plan.fingerprint_settings, sink.settings.get(other))
                for other in others
            }
            raise SettingsChangedError(sink.path, fp, others, changes)  # noqa: TRY301
        if others and on_change == "replace":
            stats.replaced = sink.remove(lambda r: r.fingerprint != fp)
        if retry_errors:
            stats.retried = sink.remove(
                lambda r: r.fingerprint == fp and (not r.ok or bool(reject & set(r.flags)))
            )
        stats.other_rows = sum(1 for r in sink.existing if r.fingerprint != fp)
        stats.fingerprint = fp
        sink.record_settings(fp, plan.fingerprint_settings)
    except BaseException:
        sink.close()
        raise
    return sink


@boundary
def caption_paths(  # noqa: PLR0913 - the job's one entry point
    paths: Iterable[Path | str] | Path | str,
    config: VllmConfig,
    *,
    prompt: str | None = None,
    llm: Any = None,
    processor: Any = None,
    out: Path | str | None = None,
    resume: bool = True,
    on_change: OnChange = "refuse",
    retry_errors: bool = False,
    progress: bool = True,
    settings: WindowSettings | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    batch_windows: int = 32,
    stats: JobStats | None = None,
    max_inflight: int = 128,
) -> Generator[WindowCaption, None, None]:
    """Caption every window of every input file; yield one row per window, in order.

    A generator: nothing happens until it is iterated (``list(...)`` or a ``for`` loop).

    Args:
        paths: files, folders (searched recursively for media files) and ``.txt`` lists of
            paths (see :func:`expand_inputs`). A single path may be passed bare.
        config: the model; ``stage2_caption`` adds the refinement stage.
        prompt: the caption prompt; default ``get_prompt(config.prompt_variant,
            config.prompt_text)``.
        llm: an engine from :func:`vlmcap.vllm_model`; built on first use when ``None`` (so a
            fully resumed run never starts one) and shut down when the job ends.
        processor: from :func:`vlmcap.auto_processor`; loaded on first use when ``None``.
        out: a ``.jsonl`` file or ``.parquet`` folder to add rows to (see
            :func:`~vlmcap.video.open_sink`); ``None`` keeps nothing. A run that finishes
            also writes ``<out>.quality.json`` (:func:`quality_path`): every quality flag,
            those that compare captions included, over the rows of its inputs.
        resume: skip windows whose row (same settings fingerprint) is in ``out`` already; those
            rows are yielded again with ``resumed=True``. ``False`` starts ``out`` afresh.
        on_change: rows of *other* settings in ``out``: ``"refuse"`` (raise
            :class:`SettingsChangedError`, naming what changed), ``"alongside"`` (keep them) or
            ``"replace"`` (remove them).
        retry_errors: caption the windows of earlier error rows again (those rows are
            removed from ``out`` first).
        progress: show a progress bar on stderr.
        settings: windowing and sampling; default ``WindowSettings(sampling_fps=
            config.sampling_fps)``.
        max_pixels: per-frame pixel budget of the client resize; ``None`` keeps native frames.
        max_side: largest accepted source side; larger files give error rows.
        batch_windows: decoded items (windows and known rows) waiting ahead of the engine are
            at most ``2 * batch_windows``.
        stats: filled in while the job runs.
        max_inflight: windows in the engine at once (queued or running, stage 2 included);
            raise it to the engine's batch size on a GPU. Rows are stored as soon as every
            row before them is known.

    Yields:
        :class:`WindowCaption` rows: every window of every input, or one error row (window
        ``-1``) for an input that yields no window. A JSONL row is durable in ``out`` before it
        is yielded; Parquet rows are buffered (see :class:`~vlmcap.video.ParquetSink`) and all
        stored when the generator finishes or is closed. Closing the generator early stops
        the decoding thread, shuts down the engine it built and releases ``out``.

    Raises:
        ConfigError, PromptError: bad arguments (before any work).
        MissingInputError: an input path does not exist (before any work).
        ModelNotFoundError: ``llm`` is ``None`` and no checkpoint is found (before any work).
        SettingsChangedError: ``out`` holds rows of other settings and ``on_change="refuse"``.
        SinkError: ``out`` is locked or unreadable.
    """
    plan = plan_job(
        paths,
        config,
        prompt,
        settings,
        max_pixels=max_pixels,
        batch_windows=batch_windows,
        max_inflight=max_inflight,
        model_required=llm is None,
    )
    st = stats if stats is not None else JobStats()
    st.fingerprint = plan.fingerprint
    st.skipped = plan.scan.describe_skipped()
    st.reject = config.quality.reject
    t_start = time.monotonic()
    sink: ResultSink | None = None
    if out is not None:
        sink = open_output(
            out,
            plan,
            st,
            resume=resume,
            on_change=on_change,
            retry_errors=retry_errors,
            reject=config.quality.reject,
        )
    captioner = _Captioner(config, plan.prompt, llm, processor, st, plan.fingerprint)
    captioner.retry = st.retried > 0
    tally = QualityTally(config.quality)
    try:
        yield from _tallied(tally, _run_job(
            plan.files,
            captioner,
            sink,
            plan.settings,
            max_pixels=max_pixels,
            max_side=max_side,
            batch_windows=batch_windows,
            progress=progress,
            max_inflight=max_inflight,
        ))
        report = tally.report()
        st.flag_counts = dict(report["flag_counts"])
        if out is not None:
            st.quality_file = str(write_quality_file(out, report))
    finally:
        try:
            if sink is not None:
                sink.close()
        finally:
            captioner.shutdown()
            st.elapsed_s = time.monotonic() - t_start


def quality_path(out: Path | str) -> Path:
    """Where a run writes its quality report: ``<out>.quality.json`` beside the output."""
    p = Path(out)
    return p.with_name(f"{p.name}.quality.json")


def write_quality_file(out: Path | str, report: Mapping[str, Any]) -> Path:
    """Write ``report`` (:meth:`~vlmcap._quality.QualityTally.report`) to :func:`quality_path`.

    Atomic (a temporary file renamed over it); returns the path.
    """
    target = quality_path(out)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


def _tallied(
    tally: QualityTally, rows: Iterator[WindowCaption]
) -> Generator[WindowCaption, None, None]:
    """Yield ``rows``, adding each to ``tally``; a file's captions are dropped once it ends."""
    current: str | None = None
    for row in rows:
        if row.source != current:
            if current is not None:
                tally.end_file(current)
            current = row.source
        tally.add(
            Captioned(row.source, row.window_index, row.caption, row.finish_reason, row.flags)
        )
        yield row


def _run_job(  # noqa: PLR0913 - the job's state, passed once
    files: Sequence[Path],
    captioner: _Captioner,
    sink: ResultSink | None,
    settings: WindowSettings,
    *,
    max_pixels: int | None,
    max_side: int,
    batch_windows: int,
    progress: bool,
    max_inflight: int,
) -> Generator[WindowCaption, None, None]:
    """Decode, caption, store and yield (the body of :func:`caption_paths`)."""
    fingerprint = captioner.fingerprint
    index = ResumeIndex.build(sink.existing if sink is not None else (), fingerprint)

    def items() -> Iterator[FileItem]:
        for path in files:
            yield from file_items(
                path,
                index,
                settings,
                max_pixels=max_pixels,
                max_side=max_side,
                fingerprint=fingerprint,
            )

    bar = tqdm(
        total=len(files), unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True
    )
    order = _InOrder(sink, captioner.stats, bar)
    producer = _Producer(items(), maxsize=2 * batch_windows)
    try:
        first: WindowItem | None = None
        for item in producer:  # until the first window: a fully resumed run starts no engine
            if isinstance(item, WindowItem):
                first = item
                break
            order.add(item)
            yield from order.ready()
        if first is not None:
            yield from captioner.stream(first, producer, order, max_inflight)
        yield from order.ready()
    finally:
        producer.close()
        bar.close()
