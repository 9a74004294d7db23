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
sends its unfinished batches to the others. A batch's rows are written only from the one call
that returned them, and the sink refuses a second row for a key, so nothing is doubled.
"""

import collections
import importlib
import logging
import sys
import time
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import ray
from ray.exceptions import ActorDiedError, RayActorError

from vlmcap._errors import ConfigError, VlmcapError
from vlmcap._records import VllmConfig
from vlmcap.ray._actors import DecodeOptions, DecodeWorker, EngineFactory, EngineWorker
from vlmcap.video._decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from vlmcap.video._job import JobStats, job_setup
from vlmcap.video._results import ResumeIndex, WindowCaption
from vlmcap.video._sink import ResultSink, open_sink
from vlmcap.video._windows import WindowSettings


log = logging.getLogger("vlmcap")


class ClusterError(VlmcapError, RuntimeError):
    """Every engine actor is gone while work remains."""


def _at_least(minimum: float) -> Any:
    def check(_inst: object, attr: "attrs.Attribute[Any]", value: float | None) -> None:
        if value is not None and value < minimum:
            raise ConfigError(f"{attr.name} must be >= {minimum}, got {value}")

    return check


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


def _check_fits(options: RayOptions, gpus: float, have: dict[str, float]) -> None:
    """Refuse a layout the cluster can never place (Ray would wait for it forever)."""
    need = {"CPU": options.cpus, "GPU": options.engines * gpus}
    short = {k: v for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}
    if short:
        wants = ", ".join(f"{v:g} {k}" for k, v in short.items())
        has = ", ".join(f"{have.get(k, 0.0):g} {k}" for k in short)
        raise ConfigError(
            f"the actors need {wants} but the cluster has {has} in all "
            f"({options.engines} engine(s) x {options.cpus_per_engine:g} CPU, {gpus:g} GPU; "
            f"{options.decoders} decoder(s) x {options.cpus_per_decoder:g} CPU); "
            "use fewer actors or smaller reservations"
        )


@attrs.define
class _Engine:
    handle: Any
    name: str
    inflight: int = 0
    alive: bool = True


class _Driver:
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
        self.sink = sink
        self.stats = stats
        self.bar = bar
        gpus = options.gpus_per_engine
        have = ray.cluster_resources()
        if gpus is None:
            gpus = 1.0 if have.get("GPU", 0) >= 1 else 0.0
        _check_fits(options, gpus, have)
        engine_cls = ray.remote(EngineWorker)
        decode_cls = ray.remote(DecodeWorker)
        self.engines = [
            _Engine(
                engine_cls.options(
                    name=f"{options.name}-engine-{i}",
                    num_gpus=gpus,
                    num_cpus=options.cpus_per_engine,
                    max_restarts=options.max_restarts,
                    max_task_retries=-1,
                    max_concurrency=options.inflight_per_engine + 2,  # + pid() and close()
                ).remote(decode.config, decode.fingerprint, build, options.max_inflight_per_engine),
                f"{options.name}-engine-{i}",
            )
            for i in range(options.engines)
        ]
        self.decoders = [
            decode_cls.options(
                name=f"{options.name}-decode-{i}", num_cpus=options.cpus_per_decoder
            ).remote(decode)
            for i in range(options.decoders)
        ]
        self.idle = collections.deque(self.decoders)
        self.streams: dict[Any, Any] = {}  # file's batch generator -> its decoder
        self.queued: collections.deque[Any] = collections.deque()  # refs of decoded batches
        self.inflight: dict[Any, tuple[_Engine, Any]] = {}  # result ref -> (engine, batch ref)

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
            batch = self.queued.popleft()
            self.inflight[engine.handle.caption.remote(batch)] = (engine, batch)
            engine.inflight += 1

    def _pull(self, stream: Any) -> None:
        try:
            ref = next(stream)
        except StopIteration:
            self.idle.append(self.streams.pop(stream))
            self.stats.files += 1
            self.bar.update(1)
            return
        self.queued.append(ref)

    def _finish(self, ref: Any) -> list[WindowCaption]:
        engine, batch = self.inflight.pop(ref)
        engine.inflight -= 1
        try:
            rows: list[WindowCaption] = ray.get(ref)
        except RayActorError as exc:
            if isinstance(exc, ActorDiedError):
                engine.alive = False
            log.warning("engine actor %s lost a batch (%s); retrying it", engine.name, exc)
            self.queued.appendleft(batch)
            return []
        new = [r for r in rows if not r.resumed]
        if self.sink is not None:
            self.sink.append(new)
        self.stats.windows_captioned += sum(r.frames > 0 for r in new)
        for row in rows:
            self.stats.add(row)
        return rows

    def run(
        self, files: Iterable[tuple[str, tuple[WindowCaption, ...]]]
    ) -> Iterator[WindowCaption]:
        """Caption ``(source, stored rows)`` files; yield rows as their batches finish."""
        todo = collections.deque(files)
        while todo or self.streams or self.queued or self.inflight:
            while todo and self.idle:
                decoder = self.idle.popleft()
                path, stored = todo.popleft()
                stream = decoder.file.options(_generator_backpressure_num_objects=2).remote(
                    path, stored
                )
                self.streams[stream] = decoder
            self._dispatch()
            waitables = list(self.inflight)
            if len(self.queued) < self.options.queued_batches:
                waitables.extend(self.streams)
            if not waitables:
                continue
            ready, _ = ray.wait(waitables, num_returns=1)
            for done in ready:
                if done in self.inflight:
                    yield from self._finish(done)
                else:
                    self._pull(done)


def caption_paths_ray(  # noqa: PLR0913 - mirrors vlmcap.caption_paths
    paths: Iterable[Path | str] | Path | str,
    config: VllmConfig,
    *,
    options: RayOptions | None = None,
    prompt: str | None = None,
    out: Path | str | None = None,
    resume: bool = True,
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
        progress: show a per-file progress bar on stderr.
        settings: windowing; default ``WindowSettings(sampling_fps=config.sampling_fps)``.
        max_pixels: per-frame pixel budget; ``None`` keeps native frames.
        max_side: largest accepted source side.
        batch_windows: windows per engine call (and per decoded batch).
        build: makes each engine actor's engine from the config (default
            :func:`vlmcap.vllm_model`); must pickle. Tests pass a fake engine.
        stats: filled in while the job runs (``caption_s`` and ``engine_start_s`` stay 0).

    Yields:
        One :class:`~vlmcap.WindowCaption` per window (or per undecodable file), each durable in
        ``out`` before it is yielded.

    Raises:
        ConfigError, PromptError: bad arguments (before any work).
        SinkError: ``out`` is locked or unreadable.
        ClusterError: every engine actor died for good.
    """
    opts = options or RayOptions()
    text, s, fingerprint, files = job_setup(
        paths, config, prompt, settings, max_pixels=max_pixels, batch_windows=batch_windows
    )
    st = stats if stats is not None else JobStats()
    t_start = time.monotonic()
    sink: ResultSink | None = open_sink(out, resume=resume) if out is not None else None
    bar = importlib.import_module("tqdm").tqdm(
        total=len(files), unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True
    )
    driver: _Driver | None = None
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
            driver = _Driver(opts, decode, build, sink, st, bar)
            yield from driver.run(todo)
    finally:
        if driver is not None:
            driver.close()
        bar.close()
        if sink is not None:
            sink.close()
        st.elapsed_s = time.monotonic() - t_start
