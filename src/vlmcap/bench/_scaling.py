"""Scale-out on Ray: the same videos captioned by 1 engine actor, then by N, in one run.

Usage (GPU machine with two GPUs, vLLM 0.26 and Ray staged, see benchmarks/README.md)::

    python -m benchmarks.bench_scaling --engines 2 --out benchmarks/results

and on CPU (a smoke run: the tiny checkpoint, or fake engines with ``--fake-engine-s``)::

    python -m benchmarks.bench_scaling --workload tiny --engines 2 --out /tmp/bench

The W1 shape (16 frames of 448x448 per window, 256 output tokens, the Qwen2.5-VL-7B shape with
dummy weights) is written as real video files (one window per 16 frames at 2 fps), decoded by
decoder actors and captioned through :func:`vlmcap.ray` 's driver and engine actors: the
production path, not a special one. Each phase starts its actors, warms them up on a few files
(engine start and CUDA graphs are not part of the figure), then times the measured files.
``scaling = clips/s(N engines) / clips/s(1 engine)``, efficiency ``scaling / N``.
"""

import argparse
import datetime as dt
import functools
import json
import os
import sys
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


def _write_one(path: Path, windows: int, w: Workload, seed: int) -> Path:
    from vlmcap.testing._samples import moving_shapes, write_video

    return write_video(path, moving_shapes(windows * w.frames, w.height, w.width, seed=seed), FPS)


def make_videos(
    dest: Path, w: Workload, files: int, windows_per_file: int, *, seed: int = 0
) -> list[Path]:
    """``files`` videos of ``windows_per_file`` W-shaped windows each (written in parallel)."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = [dest / f"{w.name}-{seed}-{i:04d}.mp4" for i in range(files)]
    with ProcessPoolExecutor(max(1, min(16, (os.cpu_count() or 2) - 1))) as pool:
        list(
            pool.map(
                _write_one,
                paths,
                [windows_per_file] * files,
                [w] * files,
                range(seed, seed + files),
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


@attrs.frozen
class Phase:
    """One measured phase."""

    engines: int
    clips: int
    wall_s: float
    output_tokens: int
    errors: int
    warmup_s: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, with rates."""
        return attrs.asdict(self) | {
            "clips_per_s": self.clips / self.wall_s,
            "output_tokens_per_s": self.output_tokens / self.wall_s,
        }


def run_phase(  # noqa: PLR0913 - one phase's layout
    engines: int,
    config: vlmcap.VllmConfig,
    warm: Sequence[Path],
    measured: Sequence[Path],
    options: "Any",
    *,
    build: Callable[[vlmcap.VllmConfig], Any],
    settings: WindowSettings,
    batch_windows: int,
) -> Phase:
    """Start ``engines`` engine actors, warm them up on ``warm``, time ``measured``."""
    from vlmcap.ray._actors import DecodeOptions
    from vlmcap.ray._job import _Driver
    from vlmcap.video._job import job_setup

    opts = attrs.evolve(options, engines=engines)
    text, s, fingerprint, files = job_setup(
        [*warm, *measured], config, None, settings, max_pixels=None, batch_windows=batch_windows
    )
    decode = DecodeOptions(config, text, s, fingerprint, None, 4096, batch_windows)

    class _Bar:
        def update(self, _n: int) -> None:
            pass

    driver = _Driver(opts, decode, build, None, JobStats(), _Bar())
    try:
        t0 = time.perf_counter()
        list(driver.run([(str(p), ()) for p in warm]))
        warmup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = list(driver.run([(str(p), ()) for p in measured]))
        wall = time.perf_counter() - t0
    finally:
        driver.close()
    del files
    return Phase(
        engines,
        len(rows),
        wall,
        sum(r.output_tokens for r in rows),
        sum(not r.ok for r in rows),
        warmup_s,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both phases; the results document."""
    import ray

    from vlmcap.ray import RayOptions

    w = WORKLOADS[args.workload]
    w = attrs.evolve(w, output_tokens=args.output_tokens or w.output_tokens)
    clips = args.clips or 4 * w.clips
    files = max(1, clips // args.windows_per_file)
    config, load_format = bench_config(w, Path(args.model_dir), max_model_len=args.max_model_len)
    extra = {"load_format": load_format} | json.loads(args.engine_json)
    build: Callable[[vlmcap.VllmConfig], Any]
    if args.fake_engine_s:
        build = functools.partial(fake_engine, seconds=args.fake_engine_s)
    else:
        build = functools.partial(dummy_engine, extra=extra)
    t0 = time.perf_counter()
    videos = make_videos(Path(args.videos), w, files, args.windows_per_file)
    warm = make_videos(Path(args.videos), w, 2 * args.engines, 1, seed=10_000)
    videos_s = time.perf_counter() - t0
    settings = WindowSettings(window_size=w.frames, remainder_threshold=w.frames // 2)
    gpus = torch.cuda.device_count()
    options = RayOptions(
        decoders=args.decoders,
        gpus_per_engine=1.0 if gpus else 0.0,
        cpus_per_engine=args.cpus_per_engine,
        inflight_per_engine=args.inflight_per_engine,
        max_inflight_per_engine=args.max_inflight,
    )
    cpus = max(os.cpu_count() or 1, attrs.evolve(options, engines=args.engines).cpus)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=int(cpus + 1), include_dashboard=False, log_to_driver=True)
    phases: dict[str, dict[str, Any]] = {}
    try:
        for k in (1, args.engines):
            ph = run_phase(
                k,
                config,
                warm,
                videos,
                options,
                build=build,
                settings=settings,
                batch_windows=args.batch_windows,
            )
            phases[f"engines_{k}"] = ph.as_dict()
            print(
                f"{k} engine(s): {ph.clips / ph.wall_s:.2f} clips/s ({ph.wall_s:.1f} s, "
                f"{ph.errors} errors, warm-up {ph.warmup_s:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            if args.partial:
                Path(args.partial).write_text(json.dumps(phases, indent=1) + "\n")
    finally:
        if started:
            ray.shutdown()
    one = phases["engines_1"]["clips_per_s"]
    many = phases[f"engines_{args.engines}"]["clips_per_s"]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": gpu_name(),
        "gpus": gpus,
        "vllm_version": _vllm_version(),
        "ray_version": ray.__version__,
        "torch_version": torch.__version__,
        "label": args.label,
        "workload": attrs.asdict(w)
        | {"clips": clips, "files": files, "windows_per_file": args.windows_per_file},
        "engine": extra | {"fake_engine_s": args.fake_engine_s},
        "ray_options": attrs.asdict(options) | {"batch_windows": args.batch_windows},
        "phases": phases,
        "scaling": many / one,
        "efficiency": many / one / args.engines,
        "diagnostics": {"videos_s": videos_s, "cpus": os.cpu_count()},
    }


def _vllm_version() -> str:
    import vllm

    return str(vllm.__version__)


def main(
    argv: Sequence[str] | None = None, *, emit: Callable[[str], None] = print
) -> dict[str, Any]:
    """Parse arguments, run, write ``<out>/<date>-scaling-<workload>-<gpu>.json``."""
    p = argparse.ArgumentParser(prog="bench_scaling", description=__doc__)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="W1")
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--clips", type=int, default=0, help="windows to caption (default 4x W's)")
    p.add_argument("--windows-per-file", type=int, default=8)
    p.add_argument("--output-tokens", type=int, default=0)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--decoders", type=int, default=8)
    p.add_argument("--cpus-per-engine", type=float, default=6.0)
    p.add_argument("--batch-windows", type=int, default=16)
    p.add_argument("--inflight-per-engine", type=int, default=16)
    p.add_argument("--max-inflight", type=int, default=256)
    p.add_argument("--engine-json", default="{}", help="extra LLM(...) kwargs as JSON")
    p.add_argument("--fake-engine-s", type=float, default=0.0, help="fake engines (smoke)")
    p.add_argument("--model-dir", default="/tmp/qwen7b-shape")
    p.add_argument("--videos", default="/tmp/vlmcap-scaling-videos")
    p.add_argument("--partial", default="", help="write each phase here as it ends")
    p.add_argument("--label", default="")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.workload == "tiny" and args.max_model_len is None:
        args.max_model_len = 4096
    doc = run(args)
    path = write_results(doc, Path(args.out), label=args.label, kind="scaling-")
    emit(json.dumps({"phases": doc["phases"], "scaling": doc["scaling"]}, indent=1))
    emit(str(path))
    return doc


if __name__ == "__main__":
    main()
