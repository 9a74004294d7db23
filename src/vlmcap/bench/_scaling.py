"""Scale-out on Ray: the same videos captioned by 1, 2, 4 ... engine actors, all in one run.

Usage (GPU machine with 8 GPUs, vLLM 0.26 and Ray staged, see benchmarks/README.md)::

    python -m benchmarks.bench_scaling --workload W1,W3 --engines 1,2,4,8 --out benchmarks/results

and on CPU (a smoke run: the tiny checkpoint, or fake engines with ``--fake-engine-s``)::

    python -m benchmarks.bench_scaling --workload tiny --engines 2 --out /tmp/bench

Each workload's windows are written as real video files and decoded by decoder actors, then
captioned through :mod:`vlmcap.ray`'s driver and engine actors: the production path, not a
special one. W1 (and W2, tiny) files hold the workload's frames at 2 fps, one window per
``frames`` frames; W3 files are 1080p30 H.264 with motion whose windows are W1's (16 frames
sampled at 2 fps from 8 s, resized to 448x448 pixels), so decoding costs what real footage
costs. Every phase (one per engine count and workload) starts its actors, warms them up on a
few files (engine start and CUDA graphs are not part of the figure), then times the measured
files; the CPU cores busy meanwhile (all processes of the machine, from ``/proc/stat``) are
reported per engine, i.e. per GPU. ``scaling = clips/s(N engines) / clips/s(1 engine)``,
efficiency ``scaling / N``. ``--engines N`` alone means ``1,N``.
"""

import argparse
import datetime as dt
import functools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import torch

import vlmcap
from vlmcap import _vllm_compat
from vlmcap.bench._harness import WORKLOADS, Workload, bench_config, gpu_name, write_results
from vlmcap.plugins.qwen import VllmQwen7B
from vlmcap.video import JobStats, WindowSettings


FPS = 2
SAMPLING_FPS = 2.0


@attrs.frozen
class Source:
    """How one workload's video files are encoded, and which workload's windows they hold."""

    name: str
    windows: str  # the workload (in WORKLOADS) whose window shape and output length apply
    height: int
    width: int
    fps: int
    max_pixels: int | None  # decode-time resize budget; None keeps the files' frames

    def window_size(self, w: Workload) -> int:
        """Native frames per window: ``w.frames`` sampled at 2 fps."""
        return round(w.frames * self.fps / SAMPLING_FPS)


SOURCES = {
    name: Source(name, name, w.height, w.width, FPS, None) for name, w in WORKLOADS.items()
} | {"W3": Source("W3", "W1", 1080, 1920, 30, 448 * 448)}
"""W3: 1080p30 H.264 files cut into W1 windows (the speed issue's end-to-end workload)."""


def _write_one(path: Path, windows: int, source: Source, w: Workload, seed: int) -> Path:
    """Encode ``windows`` windows of moving shapes, a second of frames at a time."""
    import av

    from vlmcap.testing._samples import moving_shapes, video_codec

    total = windows * source.window_size(w)
    tmp = path.with_suffix(".tmp.mp4")
    codec = video_codec()  # libx264, or MPEG-4 Part 2 where this PyAV build lacks it
    options = {"preset": "veryfast", "crf": "23"} if codec == "libx264" else {}
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec, rate=source.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = source.width, source.height, "yuv420p"
        stream.codec_context.thread_count = 1  # one file per process
        for start in range(0, total, source.fps):
            chunk = moving_shapes(
                min(source.fps, total - start), source.height, source.width, seed=seed + start
            )
            for array in chunk.permute(0, 2, 3, 1).contiguous().numpy():
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return tmp.replace(path)


def make_videos(  # noqa: PLR0913 - where, what, how many
    dest: Path,
    source: Source,
    w: Workload,
    files: int,
    windows_per_file: int,
    *,
    seed: int = 0,
) -> list[Path]:
    """``files`` videos of ``windows_per_file`` windows each (written in parallel, kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = [
        dest / f"{source.name}-{windows_per_file}w-{seed}-{i:04d}.mp4" for i in range(files)
    ]
    todo = [(i, p) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        workers = max(1, min(32, (os.cpu_count() or 2) - 1))
        # spawn, not fork: a forked child of a process that has used torch's thread pool can
        # hang in its first torch call (seen here under the full test suite)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(
                pool.map(
                    _write_one,
                    [p for _i, p in todo],
                    [windows_per_file] * len(todo),
                    [source] * len(todo),
                    [w] * len(todo),
                    [seed + i for i, _p in todo],
                )
            )
    return paths


def dummy_engine(config: vlmcap.VllmConfig, extra: dict[str, Any]) -> Any:
    """The plugin's engine with ``extra`` engine arguments (``load_format="dummy"``)."""
    kwargs = VllmQwen7B.engine_kwargs(config) | extra
    return _vllm_compat.build_llm(**kwargs)


def fake_engine(_config: vlmcap.VllmConfig, seconds: float) -> Any:
    """A fake engine taking ``seconds`` per caption on its own (CPU smoke runs)."""
    from vlmcap.testing._fake import FakeEngine, default_text

    def text(inputs: Any) -> str:
        time.sleep(seconds)
        return default_text(inputs)

    return FakeEngine(text=text)


def cpu_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


@attrs.frozen
class Phase:
    """One measured phase."""

    engines: int
    decoders: int
    clips: int
    wall_s: float
    output_tokens: int
    errors: int
    warmup_s: float
    cpu_busy_cores: float | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, with rates."""
        per_gpu = None if self.cpu_busy_cores is None else self.cpu_busy_cores / self.engines
        return attrs.asdict(self) | {
            "clips_per_s": self.clips / self.wall_s,
            "output_tokens_per_s": self.output_tokens / self.wall_s,
            "cpu_busy_cores_per_engine": per_gpu,
        }


def run_phase(  # noqa: PLR0913 - one phase's layout
    options: Any,
    config: vlmcap.VllmConfig,
    warm: Sequence[Path],
    measured: Sequence[Path],
    *,
    build: Callable[[vlmcap.VllmConfig], Any],
    settings: WindowSettings,
    batch_windows: int,
    max_pixels: int | None,
) -> Phase:
    """Start the actors of ``options``, warm them up on ``warm``, time ``measured``."""
    from vlmcap.ray._actors import DecodeOptions
    from vlmcap.ray._job import Driver
    from vlmcap.video._job import job_setup

    text, s, fingerprint, _files = job_setup(
        [*warm, *measured], config, None, settings, max_pixels=max_pixels,
        batch_windows=batch_windows,
    )
    decode = DecodeOptions(config, text, s, fingerprint, max_pixels, 4096, batch_windows)

    class _Bar:
        def update(self, _n: int) -> None:
            pass

    driver = Driver(options, decode, build, None, JobStats(), _Bar())
    try:
        t0 = time.perf_counter()
        list(driver.run([(str(p), ()) for p in warm]))
        warmup_s = time.perf_counter() - t0
        busy0 = cpu_busy_s()
        t0 = time.perf_counter()
        rows = list(driver.run([(str(p), ()) for p in measured]))
        wall = time.perf_counter() - t0
        busy1 = cpu_busy_s()
    finally:
        driver.close()
    busy = None if busy0 is None or busy1 is None else (busy1 - busy0) / wall
    return Phase(
        options.engines,
        options.decoders,
        len(rows),
        wall,
        sum(r.output_tokens for r in rows),
        sum(not r.ok for r in rows),
        warmup_s,
        busy,
    )


def _engine_counts(text: str) -> list[int]:
    """``"1,2,4,8"`` as given; a single ``"N"`` means ``1,N``."""
    counts = [int(x) for x in text.split(",") if x.strip()]
    if len(counts) == 1 and counts[0] != 1:
        counts = [1, counts[0]]
    if not counts or min(counts) < 1:
        raise SystemExit(f"--engines: positive counts, got {text!r}")
    return counts


@attrs.frozen
class Prepared:
    """One workload's files and settings, made before Ray starts (no fork under Ray)."""

    source: Source
    workload: Workload
    clips: int
    files: int
    config: vlmcap.VllmConfig
    videos: list[Path]
    warm: list[Path]
    videos_s: float
    settings: WindowSettings


def prepare(name: str, args: argparse.Namespace, counts: Sequence[int]) -> Prepared:
    """Write (or find) the workload's measured and warm-up files."""
    source = SOURCES[name]
    w = WORKLOADS[source.windows]
    w = attrs.evolve(w, output_tokens=args.output_tokens or w.output_tokens)
    clips = args.clips or 4 * w.clips
    files = max(1, clips // args.windows_per_file)
    config, _load_format = bench_config(w, Path(args.model_dir), max_model_len=args.max_model_len)
    t0 = time.perf_counter()
    videos = make_videos(Path(args.videos), source, w, files, args.windows_per_file)
    warm = make_videos(Path(args.videos), source, w, 2 * max(counts), 1, seed=10_000)
    size = source.window_size(w)
    settings = WindowSettings(
        window_size=size, remainder_threshold=size // 2, sampling_fps=SAMPLING_FPS
    )
    return Prepared(
        source, w, clips, files, config, videos, warm, time.perf_counter() - t0, settings
    )


def run_workload(  # noqa: PLR0913 - one workload's phases
    p: Prepared,
    args: argparse.Namespace,
    counts: Sequence[int],
    build: Callable[[vlmcap.VllmConfig], Any],
    options: Any,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Every phase of one workload; its part of the results document."""
    name, source, w = p.source.name, p.source, p.workload
    phases: dict[str, dict[str, Any]] = {}
    for k in counts:
        decoders = args.decoders or args.decoders_per_engine * k
        ph = run_phase(
            attrs.evolve(options, engines=k, decoders=decoders),
            p.config,
            p.warm,
            p.videos,
            build=build,
            settings=p.settings,
            batch_windows=args.batch_windows,
            max_pixels=source.max_pixels,
        )
        phases[f"engines_{k}"] = ph.as_dict()
        busy = "" if ph.cpu_busy_cores is None else f", {ph.cpu_busy_cores / k:.1f} CPU cores/GPU"
        emit(
            f"{name} {k} engine(s), {decoders} decoder(s): {ph.clips / ph.wall_s:.2f} clips/s "
            f"({ph.wall_s:.1f} s, {ph.errors} errors, warm-up {ph.warmup_s:.0f} s{busy})"
        )
        if args.partial:
            Path(args.partial).write_text(json.dumps({name: phases}, indent=1) + "\n")
    one = phases[f"engines_{counts[0]}"]["clips_per_s"] / counts[0]
    scaling = {k: phases[f"engines_{k}"]["clips_per_s"] / one for k in counts}
    return {
        "workload": {
            "name": name,
            "window_shape": attrs.asdict(w),  # what the model gets per window
            "files_encoded": attrs.asdict(source),  # what the decoders read
            "clips": p.clips,
            "files": p.files,
            "windows_per_file": args.windows_per_file,
        },
        "phases": phases,
        "scaling_by_engines": {f"engines_{k}": v for k, v in scaling.items()},
        "efficiency_by_engines": {f"engines_{k}": v / k for k, v in scaling.items()},
        "scaling": scaling[counts[-1]],
        "efficiency": scaling[counts[-1]] / counts[-1],
        "diagnostics": {"videos_s": p.videos_s},
    }


def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> dict[str, Any]:
    """Every phase of every workload, in one Ray instance; the results document."""
    import ray

    from vlmcap.ray import RayOptions

    counts = _engine_counts(args.engines)
    names = [n.strip() for n in args.workload.split(",") if n.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise SystemExit(f"--workload: one or more of {sorted(SOURCES)}, got {args.workload!r}")
    extra = json.loads(args.engine_json)
    build: Callable[[vlmcap.VllmConfig], Any]
    if args.fake_engine_s:
        build = functools.partial(fake_engine, seconds=args.fake_engine_s)
        load_format = "fake"
    else:
        load_format = "auto" if names == ["tiny"] else "dummy"
        extra = {"load_format": load_format} | extra
        build = functools.partial(dummy_engine, extra=extra)
    gpus = torch.cuda.device_count()
    options = RayOptions(
        gpus_per_engine=1.0 if gpus else 0.0,
        cpus_per_engine=args.cpus_per_engine,
        cpus_per_decoder=args.cpus_per_decoder,
        inflight_per_engine=args.inflight_per_engine,
        max_inflight_per_engine=args.max_inflight,
    )
    most = max(counts)
    biggest = attrs.evolve(
        options, engines=most, decoders=args.decoders or args.decoders_per_engine * most
    )
    prepared = [prepare(name, args, counts) for name in names]
    started = not ray.is_initialized()
    if started:
        cpus = max(os.cpu_count() or 1, biggest.cpus)
        ray.init(num_cpus=int(cpus + 1), include_dashboard=False, log_to_driver=True)
    runs: dict[str, dict[str, Any]] = {}
    try:
        for p in prepared:
            runs[p.source.name] = run_workload(p, args, counts, build, options, emit)
    finally:
        if started:
            ray.shutdown()
    first = runs[names[0]]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": gpu_name(),
        "gpus": gpus,
        "vllm_version": _vllm_version(),
        "ray_version": ray.__version__,
        "torch_version": torch.__version__,
        "label": args.label,
        "engine_counts": counts,
        # the first workload's figures at the top (older results have one workload only)
        "workload": first["workload"] | {"name": "+".join(names)},
        "phases": first["phases"],
        "scaling": first["scaling"],
        "efficiency": first["efficiency"],
        "workloads": runs,
        "engine": extra | {"fake_engine_s": args.fake_engine_s},
        "ray_options": attrs.asdict(options)
        | {
            "batch_windows": args.batch_windows,
            "decoders": args.decoders or f"{args.decoders_per_engine} per engine",
        },
        "diagnostics": {"cpus": os.cpu_count()},
    }


def _vllm_version() -> str:
    from vlmcap._vllm_compat import vllm_version_string

    return vllm_version_string()


def chart(doc: dict[str, Any], path: Path) -> Path:
    """Clips/s against engines per workload, with the linear ideal; written to ``path``."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    counts = doc["engine_counts"]
    for name, part in doc["workloads"].items():
        rates = [part["phases"][f"engines_{k}"]["clips_per_s"] for k in counts]
        (line,) = ax.plot(counts, rates, marker="o", label=name)
        one = rates[0] / counts[0]
        ax.plot(counts, [one * k for k in counts], ls=":", color=line.get_color())
    ax.set_xlabel("engine actors (one GPU each)")
    ax.set_ylabel("clips/s")
    ax.set_xticks(counts)
    ax.set_title(f"Ray scale-out, {doc['gpu']} (dotted: linear)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(
    argv: Sequence[str] | None = None, *, emit: Callable[[str], None] = print
) -> dict[str, Any]:
    """Parse arguments, run, write ``<out>/<date>-scaling-<workloads>-<gpu>.json`` (and .png)."""
    p = argparse.ArgumentParser(prog="bench_scaling", description=__doc__)
    p.add_argument("--workload", default="W1", help=f"comma-separated, of {sorted(SOURCES)}")
    p.add_argument("--engines", default="2", help="engine counts, e.g. 1,2,4,8 (N alone: 1,N)")
    p.add_argument("--clips", type=int, default=0, help="windows to caption (default 4x W's)")
    p.add_argument("--windows-per-file", type=int, default=8)
    p.add_argument("--output-tokens", type=int, default=0)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--decoders", type=int, default=0, help="decoder actors (fixed count)")
    p.add_argument("--decoders-per-engine", type=int, default=4)
    p.add_argument("--cpus-per-engine", type=float, default=6.0)
    p.add_argument("--cpus-per-decoder", type=float, default=1.0)
    p.add_argument("--batch-windows", type=int, default=16)
    p.add_argument("--inflight-per-engine", type=int, default=16)
    p.add_argument("--max-inflight", type=int, default=256)
    p.add_argument("--engine-json", default="{}", help="extra LLM(...) kwargs as JSON")
    p.add_argument("--fake-engine-s", type=float, default=0.0, help="fake engines (smoke)")
    p.add_argument("--model-dir", default="/tmp/qwen7b-shape")
    p.add_argument("--videos", default="/tmp/vlmcap-scaling-videos")
    p.add_argument("--partial", default="", help="write each phase here as it ends")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--chart-from", default="", help="only draw the chart of this results file")
    p.add_argument("--label", default="")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.chart_from:
        source = Path(args.chart_from)
        stored: dict[str, Any] = json.loads(source.read_text())
        emit(str(chart(stored, source.with_suffix(".png"))))
        return stored
    if "tiny" in args.workload and args.max_model_len is None:
        args.max_model_len = 4096
    doc = run(args, emit)
    path = write_results(doc, Path(args.out), label=args.label, kind="scaling-")
    if not args.no_chart:
        try:
            chart(doc, path.with_suffix(".png"))
        except ImportError:  # the GPU bundle has no matplotlib: draw it where the JSON lands
            emit(f"no matplotlib here: python -m benchmarks.bench_scaling --chart-from {path}")
    emit(json.dumps({name: part["scaling_by_engines"] for name, part in doc["workloads"].items()}))
    emit(str(path))
    return doc


if __name__ == "__main__":
    main()
