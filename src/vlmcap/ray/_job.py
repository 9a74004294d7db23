"""The video job on a Ray cluster: decoder actors feed long-lived engine actors; the driver writes.

Flow: the driver expands the inputs and opens the output (the main job's resumable sink); each
of ``decoders`` :class:`~vlmcap.ray._actors.DecodeWorker` actors streams one file at a time as
batches (a Ray streaming generator with backpressure); the driver hands batch references to the
``engines`` :class:`~vlmcap.ray._actors.EngineWorker` actors (at most ``inflight_per_engine``
each; an engine streams the windows of all its batches through one continuous batch, so it
never drains between batches) and writes each batch's rows as soon as it comes back. At most
``max_queued_batches`` decoded batches wait for an engine; decoders pause when the driver stops
pulling, so memory stays bounded however large the dataset.

Faults: an engine actor that dies is restarted by Ray (``max_restarts``) and its unfinished
batches are retried there (``max_task_retries``); once an actor is gone for good, the driver
sends its unfinished batches to the others. A decoder actor that dies mid-file (or a decoded
batch lost with its node) ends that file's decode pass early: once the pass's batches are back,
a fresh decoder decodes only the windows still missing (``file_attempts`` passes at most, then
error rows). The driver keeps each unfinished file's delivered window indices and writes a
window's row only once; the sink also refuses a second row for a key, so nothing is doubled.
"""

import collections
import logging
import sys
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import ray
from ray.exceptions import ActorDiedError, RayActorError, RayError
from tqdm import tqdm

from vlmcap._errors import ConfigError, VlmcapError
from vlmcap._records import VllmConfig
from vlmcap.ray._actors import DecodeOptions, DecodeWorker, EngineFactory, EngineWorker
from vlmcap.video._decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, plan_media, probe
from vlmcap.video._job import JobStats, OnChange, open_output, plan_job
from vlmcap.video._results import ResumeIndex, WindowCaption
from vlmcap.video._sink import ResultSink
from vlmcap.video._windows import WindowSettings
from vlmcap.video.items import error_row


log = logging.getLogger("vlmcap")


class ClusterError(VlmcapError, RuntimeError):
    """Every engine actor is gone while work remains."""


def _at_least(minimum: float) -> Any:
    def check(_inst: object, attr: "attrs.Attribute[Any]", value: float | None) -> None:
        if value is not None and value < minimum:
            raise ConfigError(f"{attr.name} must be >= {minimum}, got {value}")

    return check


def _resources(value: Mapping[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in value.items()}


@attrs.frozen
class RayOptions:
    """How a Ray run is laid out on the cluster.

    Args:
        engines: engine actors, each holding one :class:`vlmcap.Captioner` for the whole run.
        decoders: decoder actors (CPU): probe, decode and preprocess files, one at a time each.
        gpus_per_engine: GPUs reserved per engine actor; ``None``: 1 when the cluster has GPUs,
            else 0 (CPU engines are then placed by ``cpus_per_engine``).
        cpus_per_engine: CPUs reserved per engine actor.
        cpus_per_decoder: CPUs reserved per decoder actor.
        max_queued_batches: decoded batches waiting for an engine; default ``2 * engines``.
        inflight_per_engine: batches handed to one engine at once; their windows share the
            engine's continuous batch, so ``inflight_per_engine * batch_windows`` is what an
            engine can work on (keep it at or above the engine's batch size on a GPU).
        max_inflight_per_engine: windows in one engine at once (stage 2 included).
        max_restarts: times Ray restarts a dead engine actor (its unfinished batches are retried
            there); ``-1`` forever. After that the other engines take its batches.
        file_attempts: decode passes per file. A pass that stops early (its decoder actor died,
            or a decoded batch was lost with its node) is followed by one that decodes only
            the windows still missing, on a fresh decoder, after a pause (1 s, then 4 s, 16 s...);
            after ``file_attempts`` passes the missing windows get error rows.
        engine_resources: custom Ray resources each engine actor reserves (placement: e.g.
            ``{"vlmcap_engine": 1}`` with ``ray start --resources '{"vlmcap_engine": 8}'`` on GPU
            nodes).
        decoder_resources: custom Ray resources each decoder actor reserves (e.g. CPU-only
            decode nodes).
        name: prefix of the actors' names (``{name}-engine-{i}``, ``{name}-decode-{i}``).
    """

    engines: int = attrs.field(default=1, validator=_at_least(1))
    decoders: int = attrs.field(default=1, validator=_at_least(1))
    gpus_per_engine: float | None = attrs.field(default=None, validator=_at_least(0))
    cpus_per_engine: float = attrs.field(default=1.0, validator=_at_least(0))
    cpus_per_decoder: float = attrs.field(default=1.0, validator=_at_least(0))
    max_queued_batches: int | None = attrs.field(default=None, validator=_at_least(1))
    inflight_per_engine: int = attrs.field(default=16, validator=_at_least(1))
    max_inflight_per_engine: int = attrs.field(default=256, validator=_at_least(1))
    max_restarts: int = attrs.field(default=3, validator=_at_least(-1))
    file_attempts: int = attrs.field(default=4, validator=_at_least(1))
    engine_resources: Mapping[str, float] = attrs.field(factory=dict, converter=_resources)
    decoder_resources: Mapping[str, float] = attrs.field(factory=dict, converter=_resources)
    name: str = "vlmcap"

    @property
    def queued_batches(self) -> int:
        """The bound on decoded batches waiting for an engine."""
        return self.max_queued_batches or 2 * self.engines

    @property
    def cpus(self) -> float:
        """CPUs the actors reserve in all."""
        return self.engines * self.cpus_per_engine + self.decoders * self.cpus_per_decoder


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Connect to the cluster at ``address``, or start a local one (no dashboard) without it.

    Does nothing when Ray is initialised already.
    """
    if ray.is_initialized():
        return
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    else:
        ray.init(address=address)


def default_engines() -> int:
    """One engine per GPU of the cluster, or 1 on a cluster without GPUs (starts Ray if needed)."""
    if not ray.is_initialized():
        ray.init()
    return int(ray.cluster_resources().get("GPU", 0)) or 1


def _needs(options: RayOptions, gpus: float) -> dict[str, float]:
    """Every resource the actors reserve in all."""
    need = {"CPU": options.cpus, "GPU": options.engines * gpus}
    for count, resources in (
        (options.engines, options.engine_resources),
        (options.decoders, options.decoder_resources),
    ):
        for key, value in resources.items():
            need[key] = need.get(key, 0.0) + count * value
    return need


def _check_fits(options: RayOptions, gpus: float, have: dict[str, float]) -> None:
    """Refuse a layout the cluster can never place (Ray would wait for it forever)."""
    need = _needs(options, gpus)
    short = {k: v for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}
    if short:
        wants = ", ".join(f"{v:g} {k}" for k, v in short.items())
        has = ", ".join(f"{have.get(k, 0.0):g} {k}" for k in short)
        raise ConfigError(
            f"the actors need {wants} but the cluster has {has} in all "
            f"({options.engines} engine(s) x {options.cpus_per_engine:g} CPU, {gpus:g} GPU"
            f"{_extra(options.engine_resources)}; {options.decoders} decoder(s) x "
            f"{options.cpus_per_decoder:g} CPU{_extra(options.decoder_resources)}); "
            "use fewer actors or smaller reservations"
        )


def _extra(resources: Mapping[str, float]) -> str:
    return "".join(f", {v:g} {k}" for k, v in resources.items())


@attrs.define
class _Engine:
    handle: Any
    name: str
    inflight: int = 0
    alive: bool = True


@attrs.define(eq=False)
class _File:
    """One file's progress across decode passes (a pass ends early if its decoder dies)."""

    source: str
    stored: tuple[WindowCaption, ...]
    delivered: dict[int, WindowCaption] = attrs.field(factory=dict)  # window index -> row
    batches: int = 0  # pulled from a pass, not yet back from an engine
    passes: int = 0
    streaming: bool = False
    waiting: bool = True  # in the driver's to-do queue
    redo: bool = False  # a pass lost windows: decode the rest again once nothing is pending
    error: str = ""  # why the last pass lost windows
    not_before: float = 0.0  # monotonic time before which no pass starts (a retry's pause)


class Driver:
    """The event loop of one run: feeds decoders and engines, writes and yields rows."""

    def __init__(  # noqa: PLR0913 - the run's state, passed once
        self,
        options: RayOptions,
        decode: DecodeOptions,
        build: EngineFactory | None,
        sink: ResultSink | None,
        stats: JobStats,
        bar: Any,
    ) -> None:
        self.options = options
        self.decode = decode
        self.sink = sink
        self.stats = stats
        self.bar = bar
        gpus = options.gpus_per_engine
        have = ray.cluster_resources()
        if gpus is None:
            gpus = 1.0 if have.get("GPU", 0) >= 1 else 0.0
        _check_fits(options, gpus, have)
        engine_cls = ray.remote(EngineWorker)
        self.engines = [
            _Engine(
                engine_cls.options(
                    name=f"{options.name}-engine-{i}",
                    num_gpus=gpus,
                    num_cpus=options.cpus_per_engine,
                    resources=dict(options.engine_resources),
                    max_restarts=options.max_restarts,
                    max_task_retries=-1,
                    max_concurrency=options.inflight_per_engine + 2,  # + pid() and close()
                ).remote(decode.config, decode.fingerprint, build, options.max_inflight_per_engine),
                f"{options.name}-engine-{i}",
            )
            for i in range(options.engines)
        ]
        self.decoders = [
            self._decoder(f"{options.name}-decode-{i}") for i in range(options.decoders)
        ]
        self.replaced = 0
        self.idle = collections.deque(self.decoders)
        self.todo: collections.deque[_File] = collections.deque()
        self.streams: dict[Any, tuple[Any, _File]] = {}  # a pass's batch generator -> decoder, file
        self.queued: collections.deque[tuple[Any, _File]] = collections.deque()  # decoded batches
        self.inflight: dict[Any, tuple[_Engine, Any, _File]] = {}  # result -> engine, batch, file

    def _decoder(self, name: str) -> Any:
        o = self.options
        return (
            ray.remote(DecodeWorker)
            .options(
                name=name,
                num_cpus=o.cpus_per_decoder,
                resources=dict(o.decoder_resources),
                max_concurrency=2,  # one file at a time, plus where() while it runs
            )
            .remote(self.decode)
        )

    def close(self, timeout_s: float = 30.0) -> None:
        """Shut the engines down (waiting up to ``timeout_s``), then stop every actor."""
        closing = [e.handle.close.remote() for e in self.engines if e.alive]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=timeout_s)
        for engine in self.engines:
            ray.kill(engine.handle, no_restart=True)
        for decoder in self.decoders:
            ray.kill(decoder, no_restart=True)

    def _dispatch(self) -> None:
        limit = self.options.inflight_per_engine
        while self.queued:
            alive = [e for e in self.engines if e.alive and e.inflight < limit]
            if not alive:
                if not any(e.alive for e in self.engines):
                    raise ClusterError("every engine actor died; the output can be resumed")
                return
            engine = min(alive, key=lambda e: e.inflight)
            batch, file = self.queued.popleft()
            self.inflight[engine.handle.caption.remote(batch)] = (engine, batch, file)
            engine.inflight += 1

    def _start(self) -> float | None:
        """Start a decode pass for each waiting file an idle decoder can take.

        Returns the seconds until a file held back (a retry's pause) may start, if any.
        """
        now = time.monotonic()
        held: list[_File] = []
        while self.todo and self.idle:
            file = self.todo.popleft()
            if file.not_before > now:
                held.append(file)
                continue
            decoder = self.idle.popleft()
            file.waiting, file.streaming = False, True
            file.passes += 1
            stream = decoder.file.options(_generator_backpressure_num_objects=2).remote(
                file.source, file.stored, tuple(file.delivered.values())
            )
            self.streams[stream] = (decoder, file)
        self.todo.extendleft(reversed(held))
        return min((f.not_before - now for f in held), default=None)

    def _pull(self, stream: Any) -> list[WindowCaption]:
        decoder, file = self.streams[stream]
        try:
            ref = next(stream)
        except StopIteration:
            del self.streams[stream]
            self.idle.append(decoder)
            file.streaming = False
            return self._settle(file)
        if ref == stream.completed():  # the pass failed: Ray surfaces the task's error here
            del self.streams[stream]
            file.streaming = False
            return self._pass_failed(decoder, file, ref)
        self.queued.append((ref, file))
        file.batches += 1
        return []

    def _pass_failed(self, decoder: Any, file: _File, ref: Any) -> list[WindowCaption]:
        """A decode pass ended with an error: replace its decoder if it died; redo the file."""
        try:
            ray.get(ref)
        except RayActorError as exc:
            error = f"decoder actor died ({type(exc).__name__}: {_first_line(exc)})"
            self.replaced += 1
            fresh = self._decoder(f"{self.options.name}-decode-r{self.replaced}")
            self.decoders[self.decoders.index(decoder)] = fresh
            ray.kill(decoder, no_restart=True)
            decoder = fresh
        except Exception as exc:  # noqa: BLE001 - any failure of a pass is retried, bounded
            error = f"decode: {type(exc).__name__}: {exc}"
        else:
            error = "decode pass ended without its end marker"
        self.idle.append(decoder)
        log.warning(
            "%s: decode pass %d lost the file after %d of its rows (%s); decoding the rest again",
            file.source, file.passes, len(file.delivered), error,
        )
        file.redo, file.error = True, error
        return self._settle(file)

    def _settle(self, file: _File) -> list[WindowCaption]:
        """Once nothing of ``file`` is pending: decode its missing windows again, or count it done.

        Returns rows to yield (error rows for windows still missing after the last pass).
        """
        if file.streaming or file.batches or file.waiting:
            return []
        rows: list[WindowCaption] = []
        if file.redo:
            file.redo = False
            if file.passes < self.options.file_attempts:
                # a pause before the next pass (1, 4, 16 s...): a decoder killed for want of
                # memory, or by a node going down, is not replaced straight into the same fate
                file.not_before = time.monotonic() + min(60.0, 4.0 ** (file.passes - 1))
                file.waiting = True
                self.todo.appendleft(file)
                return []
            rows = self._accept(file, self._missing_rows(file))
        self.stats.files += 1
        self.bar.update(1)
        return rows

    def _missing_rows(self, file: _File) -> list[WindowCaption]:
        """Error rows for the windows of ``file`` no pass delivered."""
        d = self.decode
        error = f"decode: gave up after {file.passes} passes; last: {file.error}"
        log.error("%s: %s", file.source, error)
        try:
            info = probe(
                Path(file.source), max_side=d.max_side, sampling_fps=d.settings.sampling_fps
            )
            plans = plan_media(info, d.settings)
        except Exception:  # noqa: BLE001 - the row says why; the probe's own error adds nothing
            plans = ()
        if plans:
            return [
                error_row(file.source, p, len(plans), error, d.fingerprint)
                for p in plans
                if p.window.index not in file.delivered
            ]
        if file.delivered:
            return []
        return [WindowCaption.file_error(file.source, error, d.fingerprint)]

    def _accept(self, file: _File, rows: list[WindowCaption]) -> list[WindowCaption]:
        """The rows of ``file`` not delivered before (each window once), now delivered."""
        fresh = [r for r in rows if r.window_index not in file.delivered]
        for row in fresh:
            file.delivered[row.window_index] = row
        return fresh

    def _store(self, rows: list[WindowCaption]) -> None:
        """Write ``rows`` (one append: one ``fsync`` for a JSONL output) and count them."""
        new = [r for r in rows if not r.resumed]
        if self.sink is not None:
            self.sink.append(new)
        self.stats.windows_captioned += sum(r.frames > 0 for r in new)
        for row in rows:
            self.stats.add(row)

    def _finish(self, ref: Any) -> list[WindowCaption]:
        engine, batch, file = self.inflight.pop(ref)
        engine.inflight -= 1
        try:
            rows: list[WindowCaption] = ray.get(ref)
        except RayActorError as exc:
            if _actor_hex(exc) in (None, engine.handle._actor_id.hex()):  # noqa: SLF001
                if isinstance(exc, ActorDiedError):
                    engine.alive = False
                log.warning("engine actor %s lost a batch (%s); retrying it", engine.name, exc)
                self.queued.appendleft((batch, file))
                return []
            return self._lost(file, f"batch lost: {type(exc).__name__}")
        except RayError as exc:  # the batch itself is gone (its node died) or failed
            return self._lost(file, f"batch lost: {type(exc).__name__}: {exc}")
        file.batches -= 1
        return self._accept(file, rows) + self._settle(file)

    def _lost(self, file: _File, error: str) -> list[WindowCaption]:
        log.warning("%s: %s; decoding its missing windows again", file.source, error)
        file.batches -= 1
        file.redo, file.error = True, error
        return self._settle(file)

    def run(
        self, files: Iterable[tuple[str, tuple[WindowCaption, ...]]]
    ) -> Iterator[WindowCaption]:
        """Caption ``(source, stored rows)`` files; yield rows as their batches finish.

        The rows of every batch found finished at once are written together (one append), so
        the store's per-write cost is shared when rows come faster than it writes.
        """
        self.todo.extend(_File(source, stored) for source, stored in files)
        while self.todo or self.streams or self.queued or self.inflight:
            pause = self._start()
            self._dispatch()
            waitables = list(self.inflight)
            if len(self.queued) < self.options.queued_batches:
                waitables.extend(self.streams)
            if not waitables:
                if pause is not None:
                    time.sleep(pause)
                continue
            ready, _ = ray.wait(waitables, num_returns=1, timeout=pause)
            if not ready:
                continue
            if len(waitables) > 1:  # all that is done by now goes into one write
                ready = ray.wait(waitables, num_returns=len(waitables), timeout=0)[0] or ready
            rows: list[WindowCaption] = []
            for done in ready:
                if done in self.inflight:
                    rows += self._finish(done)
                elif len(self.queued) < self.options.queued_batches:
                    rows += self._pull(done)
            self._store(rows)
            yield from rows


def _first_line(exc: BaseException) -> str:
    return next(iter(str(exc).strip().splitlines()), "")


def _actor_hex(exc: RayActorError) -> str | None:
    """The id of the actor an error is about, when Ray says."""
    actor_id = getattr(exc, "actor_id", None)
    return None if actor_id is None else str(actor_id)


def caption_paths_ray(  # noqa: PLR0913 - mirrors vlmcap.caption_paths
    paths: Iterable[Path | str] | Path | str,
    config: VllmConfig,
    *,
    options: RayOptions | None = None,
    prompt: str | None = None,
    out: Path | str | None = None,
    resume: bool = True,
    on_change: OnChange = "refuse",
    retry_errors: bool = False,
    progress: bool = True,
    settings: WindowSettings | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    batch_windows: int = 8,
    build: EngineFactory | None = None,
    stats: JobStats | None = None,
) -> Generator[WindowCaption, None, None]:
    """Caption every window of every input across a Ray cluster; yield rows as they finish.

    The arguments, the rows and the output are those of :func:`vlmcap.caption_paths` (the same
    fingerprint, so either job resumes the other's output); rows come in completion order, not
    input order. Ray must be initialised (see :func:`init_ray`), or ``ray.init()`` runs with
    its defaults.

    Args:
        paths: files, folders and ``.txt`` lists (see :func:`vlmcap.video.expand_inputs`).
        config: the model.
        options: actors and bounds (:class:`RayOptions`).
        prompt: the caption prompt; default from ``config``.
        out: a ``.jsonl`` file or ``.parquet`` folder, written only by this process.
        resume: skip windows already in ``out`` (yielded again with ``resumed=True``).
        on_change: rows of other settings in ``out``: refuse, alongside or replace (as in
            :func:`vlmcap.caption_paths`).
        retry_errors: caption the windows of earlier error rows again.
        progress: show a per-file progress bar on stderr.
        settings: windowing; default ``WindowSettings(sampling_fps=config.sampling_fps)``.
        max_pixels: per-frame pixel budget; ``None`` keeps native frames.
        max_side: largest accepted source side.
        batch_windows: windows per engine call (and per decoded batch).
        build: makes each engine actor's engine from the config (default
            :func:`vlmcap.vllm_model`); must pickle. Tests pass a fake engine.
        stats: filled in while the job runs (``caption_s`` and ``engine_start_s`` stay 0).

    Yields:
        One :class:`~vlmcap.video.WindowCaption` per window (or per undecodable file), each
        durable in ``out`` before it is yielded.

    Raises:
        ConfigError, PromptError: bad arguments (before any work).
        SinkError: ``out`` is locked or unreadable.
        ClusterError: every engine actor died for good.
    """
    opts = options or RayOptions()
    plan = plan_job(
        paths, config, prompt, settings, max_pixels=max_pixels, batch_windows=batch_windows
    )
    text, s, fingerprint, files = plan.prompt, plan.settings, plan.fingerprint, plan.files
    st = stats if stats is not None else JobStats()
    st.fingerprint, st.skipped = fingerprint, plan.scan.describe_skipped()
    t_start = time.monotonic()
    sink: ResultSink | None = None
    if out is not None:
        sink = open_output(
            out, plan, st, resume=resume, on_change=on_change, retry_errors=retry_errors
        )
    bar = tqdm(
        total=len(files), unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True
    )
    driver: Driver | None = None
    try:
        index = ResumeIndex.build(sink.existing if sink is not None else (), fingerprint)
        todo: list[tuple[str, tuple[WindowCaption, ...]]] = []
        for path in files:
            source = str(path)
            done = index.complete(source)
            if done is None:
                todo.append((source, tuple(index.rows.get(source, {}).values())))
                continue
            for row in done:
                st.add(row)
                yield row
            st.files += 1
            bar.update(1)
        if todo:
            decode = DecodeOptions(
                config, text, s, fingerprint, max_pixels, max_side, batch_windows
            )
            driver = Driver(opts, decode, build, sink, st, bar)
            yield from driver.run(todo)
    finally:
        if driver is not None:
            driver.close()
        bar.close()
        if sink is not None:
            sink.close()
        st.elapsed_s = time.monotonic() - t_start
