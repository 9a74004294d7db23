"""GPU throughput of the ways to drive vLLM for video captioning, all in one run.

Usage (GPU machine, vLLM 0.26, see benchmarks/README.md)::

    python -m benchmarks.bench_throughput --workload W1 --out benchmarks/results

and on CPU with the tiny checkpoint (a smoke run)::

    python -m benchmarks.bench_throughput --workload tiny --out /tmp/bench

The synchronous modes share one ``LLM``; the ``AsyncLLM`` peer modes (:mod:`vlmcap.bench._peers`)
run after it is shut down, on an engine with the same settings (the ``tuned`` peer on one more).
Every mode captions its own freshly generated clips (different seeds) and the prefix and
multimodal caches are reset between modes, so no mode profits from another's work. Each mode
records vLLM's cache counters, the CPU cores it kept busy and how many requests took their whole
video from the prefix cache. Figures are reported as ratios to ``naive_generate`` of the same run.
"""

import argparse
import datetime as dt
import functools
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

import vlmcap
from vlmcap import _vllm_compat
from vlmcap._driver import as_engine
from vlmcap.bench import _peers
from vlmcap.bench._stats import ModeResult, count_tokens, measured
from vlmcap.plugins.kit import chat_token_ids
from vlmcap.plugins.qwen import VllmQwen7B, block_aligned_ids, video_token_count


SYNC_MODES = (
    "naive_generate",
    "reference_inflight",
    "vlmcap",
    "vlmcap_nochecks",
    "naive_two_stage",
    "naive_two_stage_aligned",
    "vlmcap_two_stage",
    "text_only_sol",
)
"""Modes of the one synchronous ``LLM`` (``prerendered`` and ``vlmcap*@N`` on request)."""

ASYNC_MODES = ("async_llm", "async_llm_two_stage", "async_llm_tuned")
"""``AsyncLLM`` peers; ``async_llm`` and ``async_llm_tuned`` are swept over ``--async-sweep``
(``<mode>@N`` each, the best as ``<mode>``), ``async_llm_two_stage`` runs at the best N of
``async_llm`` (or ``--async-two-stage-n``)."""

MODES = SYNC_MODES + ASYNC_MODES


@attrs.frozen
class Workload:
    """One benchmark workload."""

    name: str
    clips: int
    frames: int
    height: int
    width: int
    output_tokens: int


WORKLOADS = {
    "W1": Workload("W1", 128, 16, 448, 448, 256),
    "W2": Workload("W2", 64, 16, 560, 1008, 512),
    "tiny": Workload("tiny", 6, 4, 112, 112, 8),
}


def make_clips(w: Workload, seed: int) -> list[torch.Tensor]:
    """Distinct random uint8 clips (so caches can only hit within one clip's two stages)."""
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 256, (w.frames, 3, w.height, w.width), dtype=torch.uint8, generator=g)
        for _ in range(w.clips)
    ]


def _md(t: int) -> dict[str, Any]:
    return vlmcap.VideoMetadata.uniform(t, 2.0).to_vllm()


def _naive_inputs(clips: Sequence[torch.Tensor], ids: list[int]) -> list[dict[str, Any]]:
    return [
        {"prompt_token_ids": ids, "multi_modal_data": {"video": (c, _md(int(c.shape[0])))}}
        for c in clips
    ]


def _reset(llm: Any) -> None:
    for name in ("reset_prefix_cache", "reset_mm_cache"):
        fn = getattr(llm, name, None)
        if fn is not None:
            fn()


def stage2_inputs(
    processor: Any, out: Any, inputs: Mapping[str, Any], *, aligned: bool = False
) -> dict[str, Any]:
    """The naive stage-2 request: refine prompt + stage-1 text over the same video.

    Peers do not align; ``aligned`` uses vlmcap's block-aligned layout.
    """
    text = vlmcap.DEFAULT_STAGE2_PROMPT + out.outputs[0].text
    ids = chat_token_ids(processor, text)
    video = inputs["multi_modal_data"]["video"]
    if aligned:
        ids = block_aligned_ids(ids, processor, video_token_count(video, processor))
    return {"prompt_token_ids": ids, "multi_modal_data": {"video": video}}


class Runner:
    """Holds the synchronous engine and everything shared by the modes."""

    def __init__(self, llm: Any, processor: Any, config: vlmcap.VllmConfig, w: Workload) -> None:
        self.llm = llm
        self.processor = processor
        self.config = config
        self.w = w
        self.params = vlmcap.sampling_params(config)
        self.prompt = vlmcap.get_prompt()
        self.ids = chat_token_ids(processor, self.prompt)
        self.prompt_tokens_per_clip = 0

    def naive_inputs(self, clips: Sequence[torch.Tensor], *, aligned: bool = False) -> list[Any]:
        """uint8 frames + metadata and the chat prompt's ids (the way peers send clips)."""
        inputs = _naive_inputs(clips, self.ids)
        if aligned:
            for inp in inputs:
                video = inp["multi_modal_data"]["video"]
                n = video_token_count(video, self.processor)
                inp["prompt_token_ids"] = block_aligned_ids(self.ids, self.processor, n)
        return inputs

    def naive_generate(self, clips: list[torch.Tensor]) -> ModeResult:
        inputs = self.naive_inputs(clips)
        t0 = time.perf_counter()
        outs = self.llm.generate(inputs, self.params, use_tqdm=False)
        wall = time.perf_counter() - t0
        p, o = count_tokens(outs)
        self.prompt_tokens_per_clip = p // len(outs)
        return ModeResult(len(clips), wall, p, o, 0, outputs=outs)

    def reference_inflight(self, clips: list[torch.Tensor]) -> ModeResult:
        """cosmos-curate's loop: one ``add_request`` per ``step()``."""
        inputs = self.naive_inputs(clips)
        engine = self.llm.llm_engine
        queue = list(enumerate(inputs))
        done: list[Any] = []
        t0 = time.perf_counter()
        while len(done) < len(inputs):
            if queue:
                i, inp = queue.pop(0)
                engine.add_request(f"ref-{i}", inp, self.params)
            done += [o for o in engine.step() if o.finished]
        wall = time.perf_counter() - t0
        p, o = count_tokens(done)
        return ModeResult(len(clips), wall, p, o, 0, outputs=done)

    def _vlmcap(self, clips: list[torch.Tensor], *, two_stage: bool, cap: int = 0) -> ModeResult:
        timer = _EngineTimer(as_engine(self.llm))
        t0 = time.perf_counter()
        inputs = vlmcap.make_model_inputs(clips, self.config, self.processor, self.prompt)
        t_inputs = time.perf_counter() - t0
        stage2 = [vlmcap.DEFAULT_STAGE2_PROMPT] * len(clips) if two_stage else None
        res = vlmcap.caption_results(
            inputs, timer, self.processor, self.params, self.config, cap, stage2_prompts=stage2
        )
        wall = time.perf_counter() - t0
        own = wall - timer.engine_s
        return ModeResult(
            len(clips),
            wall,
            sum(r.prompt_tokens for r in res),
            sum(r.output_tokens for r in res),
            sum(not r.ok for r in res),
            {
                "vlmcap_own_s": own,
                "vlmcap_own_fraction": own / wall,
                "make_model_inputs_s": t_inputs,
                "engine_add_s": timer.add_s,
                "engine_step_s": timer.step_s,
            },
            timer.outputs,
        )

    def vlmcap(self, clips: list[torch.Tensor], cap: int = 0) -> ModeResult:
        return self._vlmcap(clips, two_stage=False, cap=cap)

    def vlmcap_nochecks(self, clips: list[torch.Tensor], cap: int = 0) -> ModeResult:
        """``vlmcap`` with jaxtyping's runtime shape checks off (restored after)."""
        with _jaxtyping_disabled() as state:
            res = self._vlmcap(clips, two_stage=False, cap=cap)
        return attrs.evolve(res, extra={**res.extra, "jaxtyping_disable": state})

    def vlmcap_two_stage(self, clips: list[torch.Tensor], cap: int = 0) -> ModeResult:
        return self._vlmcap(clips, two_stage=True, cap=cap)

    def prerendered(self, clips: list[torch.Tensor]) -> ModeResult:
        """Engine-side cost only: requests rendered before the clock starts, then added."""
        fn = self.llm._preprocess_cmpl_one
        rendered = [fn(inp) for inp in self.naive_inputs(clips)]
        engine = self.llm.llm_engine
        done: list[Any] = []
        t0 = time.perf_counter()
        for i, r in enumerate(rendered):
            engine.add_request(f"pre-{i}", r, self.params)
        while engine.has_unfinished_requests():
            done += [o for o in engine.step() if o.finished]
        wall = time.perf_counter() - t0
        p, o = count_tokens(done)
        return ModeResult(len(clips), wall, p, o, 0, outputs=done)

    def naive_two_stage(self, clips: list[torch.Tensor], *, aligned: bool = False) -> ModeResult:
        inputs = self.naive_inputs(clips, aligned=aligned)
        t0 = time.perf_counter()
        outs1 = self.llm.generate(inputs, self.params, use_tqdm=False)
        t1 = time.perf_counter()
        stage2 = [
            stage2_inputs(self.processor, o, inp, aligned=aligned)
            for o, inp in zip(outs1, inputs, strict=True)
        ]
        outs2 = self.llm.generate(stage2, self.params, use_tqdm=False)
        wall = time.perf_counter() - t0
        p1, o1 = count_tokens(outs1)
        p2, o2 = count_tokens(outs2)
        # stage 2 alone bounds what any driver can reach with two stages: 1 / (1/r1 + 1/r2)
        split = {"stage1_s": t1 - t0, "stage2_s": wall - (t1 - t0)}
        return ModeResult(len(clips), wall, p1 + p2, o1 + o2, 0, split, [*outs1, *outs2])

    def naive_two_stage_aligned(self, clips: list[torch.Tensor]) -> ModeResult:
        """``naive_two_stage`` with vlmcap's block-aligned prompt layout (the layout alone)."""
        return self.naive_two_stage(clips, aligned=True)

    def text_only_sol(self, clips: list[torch.Tensor]) -> ModeResult:
        n = self.prompt_tokens_per_clip or len(self.ids)
        g = torch.Generator().manual_seed(len(clips))
        tokenizer = self.processor.tokenizer
        # ordinary ids only: below the first special token that sits above them
        high = min([s for s in tokenizer.all_special_ids if s > 100] or [len(tokenizer)])
        prompts = [
            {"prompt_token_ids": torch.randint(10, high, (n,), generator=g).tolist()} for _ in clips
        ]
        t0 = time.perf_counter()
        outs = self.llm.generate(prompts, self.params, use_tqdm=False)
        wall = time.perf_counter() - t0
        p, o = count_tokens(outs)
        return ModeResult(len(clips), wall, p, o, 0)


class _jaxtyping_disabled:  # noqa: N801 - used as a context manager
    """Turns jaxtyping's runtime checks off inside ``with``; restores the previous setting."""

    def __enter__(self) -> str:
        try:
            import jaxtyping
        except ImportError:
            self._prev: bool | None = None
            return "jaxtyping not installed"
        self._prev = bool(jaxtyping.config.jaxtyping_disable)
        jaxtyping.config.update("jaxtyping_disable", True)
        return "disabled"

    def __exit__(self, *_exc: object) -> None:
        if self._prev is not None:
            import jaxtyping

            jaxtyping.config.update("jaxtyping_disable", self._prev)


class _EngineTimer:
    """Wraps the engine adapter to time what the engine itself takes."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.add_s = 0.0
        self.step_s = 0.0
        self.outputs: list[Any] = []
        """vLLM ``RequestOutput``s of the finished requests."""

    @property
    def engine_s(self) -> float:
        return self.add_s + self.step_s

    def add(self, engine_id: str, inputs: Any, params: Any) -> None:
        t = time.perf_counter()
        try:
            self._engine.add(engine_id, inputs, params)
        finally:
            self.add_s += time.perf_counter() - t

    def add_many(self, items: Any, params: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._engine.add_many(items, params)
        finally:
            self.add_s += time.perf_counter() - t

    def step(self) -> Any:
        t = time.perf_counter()
        try:
            done = self._engine.step()
        finally:
            self.step_s += time.perf_counter() - t
        self.outputs += [f.output for f in done if f.output is not None]
        return done

    def abort(self, ids: Any) -> None:
        self._engine.abort(ids)

    def close(self) -> None:
        self._engine.close()


def render_seconds_per_clip(llm: Any, clips: list[torch.Tensor], ids: list[int]) -> float:
    """Frontend (HF processor) time of one request, single-threaded."""
    fn = getattr(llm, "_preprocess_cmpl_one", None)
    if fn is None:
        return float("nan")
    inputs = _naive_inputs(clips, ids)
    t0 = time.perf_counter()
    for inp in inputs:
        fn(inp)
    return (time.perf_counter() - t0) / len(inputs)


def render_pool_seconds_per_clip(
    llm: Any, clips: list[torch.Tensor], ids: list[int], workers: int
) -> float:
    """Frontend rendering throughput with a pool of ``workers`` threads (seconds per clip)."""
    from concurrent.futures import ThreadPoolExecutor

    fn = llm._preprocess_cmpl_one
    inputs = _naive_inputs(clips, ids)
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(fn, inputs))
        return (time.perf_counter() - t0) / len(inputs)


def gpu_name() -> str:
    """The accelerator, or the CPU for smoke runs."""
    if torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def bench_config(
    w: Workload, model_dir: Path, *, max_model_len: int | None, disable_mmcache: bool = False
) -> tuple[vlmcap.VllmConfig, str]:
    """The benchmark's config (greedy, pinned output length) and load format.

    The ``tiny`` workload uses the tiny checkpoint with its weights; the others the 7B shape
    written to ``model_dir`` with dummy weights.
    """
    if w.name == "tiny":
        from vlmcap.testing import tiny_checkpoint

        path, load_format = tiny_checkpoint("qwen"), "auto"
    else:
        from vlmcap.bench._shape import build

        path, load_format = build(model_dir), "dummy"
    config = vlmcap.VllmConfig(
        model_variant="qwen",
        model_path=path,
        max_output_tokens=w.output_tokens,
        disable_mmcache=disable_mmcache,
        max_model_len=max_model_len,
        sampling=vlmcap.VllmSamplingConfig(
            temperature=0.0, top_p=1.0, min_tokens=0, ignore_eos=True
        ),
    )
    return config, load_format


def _base(mode: str) -> str:
    return mode.partition("@")[0]


def mode_list(requested: Sequence[str]) -> list[str]:
    """The modes to run: :data:`MODES` order, then extra ``<mode>@N`` ones.

    ``naive_generate``, the baseline of every ratio, is always run.
    """
    extra = [m for m in requested if m not in MODES and m != "all"]
    modes = list(MODES) + extra
    if "all" not in requested:
        modes = [m for m in modes if m in requested]
    if "naive_generate" not in modes:
        modes.insert(0, "naive_generate")
    return modes


def _print(mode: str, res: ModeResult) -> None:
    d = res.as_dict()
    print(
        f"{mode:26} {d['clips_per_s']:6.2f} clips/s  ({res.wall_s:.1f} s, "
        f"{d['cpu_cores_busy']:.1f} cores busy, "
        f"{d.get('requests_video_from_prefix_cache', 0)} video from prefix cache)",
        file=sys.stderr,
        flush=True,
    )


def _sync_phase(  # noqa: PLR0913 - one engine's worth of modes
    args: argparse.Namespace,
    kwargs: dict[str, Any],
    runner: Runner,
    modes: Sequence[str],
    vision_end_id: int,
    report: Callable[[str, ModeResult], None],
) -> dict[str, Any]:
    """Start the ``LLM``, warm it up, run ``modes`` on it, shut it down; diagnostics."""
    w = runner.w
    t0 = time.perf_counter()
    llm = _vllm_compat.build_llm(**kwargs)
    start_s = time.perf_counter() - t0
    runner.llm = llm
    try:
        runner.naive_generate(make_clips(attrs.evolve(w, clips=min(8, w.clips)), seed=999))
        diagnostics: dict[str, Any] = {"torch_num_threads": torch.get_num_threads()}
        if args.render_scaling:
            for k, workers in enumerate((1, 4, 16)):
                _reset(llm)
                some = make_clips(attrs.evolve(w, clips=16), seed=500 + k)
                s = render_pool_seconds_per_clip(llm, some, runner.ids, workers)
                diagnostics[f"render_pool_{workers}_s_per_clip"] = s
        fresh = make_clips(attrs.evolve(w, clips=min(4, w.clips)), seed=998)  # in no cache
        diagnostics |= {
            "engine_start_s": start_s,
            "render_s_per_clip_single_thread": render_seconds_per_clip(llm, fresh, runner.ids),
            "render_workers": _vllm_compat.render_workers(),
        }
        for k, mode in enumerate(modes):
            _reset(llm)
            clips = make_clips(w, seed=k)
            name, _, cap = mode.partition("@")
            fn: Callable[..., ModeResult] = getattr(runner, name)
            args_ = (clips, int(cap)) if cap else (clips,)
            res = measured(functools.partial(fn, *args_), vision_end_id)
            del clips, args_
            gc.collect()
            report(mode, res)
    finally:
        runner.llm = None
        _vllm_compat.shutdown_llm(llm)
        del llm
        gc.collect()
        _wait_for_free_gpu()
    return diagnostics


def _wait_for_free_gpu(fraction: float = 0.9, timeout_s: float = 60.0) -> None:
    """Wait until the stopped engine's GPU memory is back, so that the next engine can start."""
    if not torch.cuda.is_available():
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        free, total = torch.cuda.mem_get_info()
        if free >= fraction * total:
            return
        time.sleep(1.0)


def _async_runs(
    args: argparse.Namespace, modes: Sequence[str], results: Mapping[str, Mapping[str, Any]]
) -> Iterator[tuple[str, int, bool]]:
    """``(result name, semaphore, two_stage)`` of the peer modes, lazily.

    The two-stage peer runs at the best semaphore of the ``async_llm`` sweep run before it.
    """
    for mode in modes:
        name, _, n = mode.partition("@")
        two = name.endswith("two_stage")
        if n:
            yield mode, int(n), two
        elif two:
            sweep = {
                int(k.partition("@")[2]): v["clips_per_s"]
                for k, v in results.items()
                if k.startswith("async_llm@")
            }
            best = max(sweep, key=lambda n: sweep[n]) if sweep else max(args.async_sweep)
            yield name, args.async_two_stage_n or best, True
        else:
            for limit in args.async_sweep:
                yield f"{name}@{limit}", limit, False


def _best_of_sweeps(results: dict[str, dict[str, Any]]) -> None:
    """``async_llm`` / ``async_llm_tuned``: the best of their ``@N`` runs."""
    for name in ("async_llm", "async_llm_tuned"):
        runs = {k: v for k, v in results.items() if k.startswith(f"{name}@")}
        if runs and name not in results:
            best = max(runs, key=lambda k: runs[k]["clips_per_s"])
            results[name] = {**runs[best], "best_of": sorted(runs)}


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each mode's ratio to ``naive_generate``, and the issue's target ratios."""
    rate = {k: v["clips_per_s"] for k, v in results.items()}
    if rate.get("naive_generate"):
        for r in results.values():
            r["ratio_to_naive_generate"] = r["clips_per_s"] / rate["naive_generate"]
    out: dict[str, float] = {}
    pairs = {
        "vlmcap_over_naive_generate": ("vlmcap", "naive_generate"),
        "vlmcap_over_text_only_sol": ("vlmcap", "text_only_sol"),
        "vlmcap_two_stage_over_vlmcap": ("vlmcap_two_stage", "vlmcap"),
        "vlmcap_nochecks_over_vlmcap": ("vlmcap_nochecks", "vlmcap"),
        "naive_two_stage_aligned_over_naive_two_stage": (
            "naive_two_stage_aligned",
            "naive_two_stage",
        ),
        "vlmcap_two_stage_over_async_llm_two_stage": ("vlmcap_two_stage", "async_llm_two_stage"),
    }
    for key, (a, b) in pairs.items():
        if rate.get(a) and rate.get(b):
            out[key] = rate[a] / rate[b]
    peers = [rate[k] for k in ("reference_inflight", "async_llm", "async_llm_tuned") if k in rate]
    if "vlmcap" in rate and peers:
        out["vlmcap_over_best_peer"] = rate["vlmcap"] / max(peers)
    if "vlmcap" in results and "vlmcap_nochecks" in results:
        checked, unchecked = results["vlmcap"], results["vlmcap_nochecks"]
        out["runtime_checks_own_s"] = checked["vlmcap_own_s"] - unchecked["vlmcap_own_s"]
        out["runtime_checks_fraction_of_wall"] = out["runtime_checks_own_s"] / checked["wall_s"]
    return out


def run(
    args: argparse.Namespace, checkpoint: Callable[[dict[str, Any]], object] = lambda _d: None
) -> dict[str, Any]:
    """Run the chosen modes and return the results document (``checkpoint``-ed after each)."""
    w = WORKLOADS[args.workload]
    w = attrs.evolve(
        w, clips=args.clips or w.clips, output_tokens=args.output_tokens or w.output_tokens
    )
    config, load_format = bench_config(
        w,
        Path(args.model_dir),
        max_model_len=args.max_model_len,
        disable_mmcache=args.disable_mmcache,
    )
    if args.no_compile_mm_encoder:
        config = attrs.evolve(config, compile_mm_encoder=False)
    kwargs = VllmQwen7B.engine_kwargs(config)
    kwargs["load_format"] = load_format
    kwargs["disable_log_stats"] = False  # vLLM's counters, read per mode
    kwargs.update(json.loads(args.engine_json))
    processor = vlmcap.auto_processor(config)
    vision_end_id = int(processor.tokenizer.convert_tokens_to_ids("<|vision_end|>"))
    runner = Runner(None, processor, config, w)
    modes = mode_list(args.modes)
    results: dict[str, dict[str, Any]] = {}
    diagnostics: dict[str, Any] = {}
    doc: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": gpu_name(),
        "vllm_version": _vllm_compat.vllm_version_string(),
        "torch_version": torch.__version__,
        "label": args.label,
        "workload": attrs.asdict(w),
        "engine": {k: v for k, v in kwargs.items() if k != "model"},
        "peer_tuned_engine": _peers.TUNED,
        "modes": results,
        "diagnostics": diagnostics,
    }

    def report(mode: str, res: ModeResult) -> None:
        results[mode] = res.as_dict()
        _print(mode, res)
        doc["workload"]["prompt_tokens_per_clip"] = runner.prompt_tokens_per_clip
        diagnostics.update(_ratios(results))
        checkpoint(doc)

    sync = [m for m in modes if _base(m) not in ASYNC_MODES]
    peers = [m for m in modes if _base(m) in ASYNC_MODES]
    diagnostics.update(_sync_phase(args, kwargs, runner, sync, vision_end_id, report))

    def make_inputs(k: int) -> list[dict[str, Any]]:
        n = min(8, w.clips) if k < 0 else w.clips
        return runner.naive_inputs(make_clips(attrs.evolve(w, clips=n), seed=100 + k))

    def refine(out: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return stage2_inputs(processor, out, inputs)

    for engine, extra in (("async_llm", {}), ("async_llm_tuned", _peers.TUNED)):
        chosen = [m for m in peers if (_base(m) == "async_llm_tuned") == bool(extra)]
        if chosen:
            diagnostics[f"{engine}_engine_start_s"] = _peers.run_phase(
                {**kwargs, **extra},
                _async_runs(args, chosen, results),
                make_inputs,
                runner.params,
                refine,
                vision_end_id,
                report,
            )
    _best_of_sweeps(results)
    diagnostics.update(_ratios(results))
    checkpoint(doc)
    return doc


def write_results(doc: dict[str, Any], out: Path, *, label: str = "", kind: str = "") -> Path:
    """Write ``doc`` as ``<out>/<date>-<kind><workload>-<gpu>[-<label>].json``; its path."""
    out.mkdir(parents=True, exist_ok=True)
    gpu = doc["gpu"].split(" (")[0].replace(" ", "_")
    stamp = doc["date"][:19].replace(":", "")
    suffix = f"-{label}" if label else ""
    path = out / f"{stamp}-{kind}{doc['workload']['name']}-{gpu}{suffix}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def main(
    argv: Sequence[str] | None = None, *, emit: Callable[[str], None] = print
) -> dict[str, Any]:
    """Parse arguments, run, write ``<out>/<date>-<workload>-<gpu>.json``."""
    p = argparse.ArgumentParser(
        prog="vlmcap bench",
        description="GPU throughput of the ways to drive vLLM for video captioning, all in one "
        "run, on the real Qwen2.5-VL-7B shape with dummy weights (see benchmarks/README.md).",
    )
    p.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="W1",
        help="clip shape and counts (tiny: a CPU smoke run) (default: %(default)s)",
    )
    p.add_argument(
        "--modes",
        nargs="+",
        default=["all"],
        metavar="MODE",
        help=f"modes to run: all, or some of {', '.join(MODES)} (default: all)",
    )
    p.add_argument(
        "--clips", type=int, default=0, help="clips per mode (default 0: the workload's)"
    )
    p.add_argument(
        "--output-tokens",
        type=int,
        default=0,
        help="output tokens per clip and stage (default 0: the workload's)",
    )
    p.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="engine context length (default: the workload's)",
    )
    p.add_argument(
        "--disable-mmcache", action="store_true", help="turn vLLM's multimodal processor cache off"
    )
    p.add_argument("--engine-json", default="{}", help="extra LLM(...) kwargs as JSON")
    p.add_argument(
        "--model-dir",
        default="/tmp/qwen7b-shape",
        help="where the dummy-weight checkpoint is written (default: %(default)s)",
    )
    p.add_argument("--label", default="", help="a label stored in the result file")
    p.add_argument("--render-scaling", action="store_true", help="measure render threads 1/4/16")
    p.add_argument(
        "--out",
        default="benchmarks/results",
        help="folder of the result JSON (default: %(default)s)",
    )
    p.add_argument(
        "--async-sweep",
        type=int,
        nargs="+",
        default=[64, 128, 256],
        help="semaphore sizes of the AsyncLLM peers (best reported)",
    )
    p.add_argument(
        "--async-two-stage-n",
        type=int,
        default=0,
        help="semaphore of async_llm_two_stage (default: the best of the async_llm sweep)",
    )
    p.add_argument(
        "--no-compile-mm-encoder",
        action="store_true",
        help="VllmConfig.compile_mm_encoder=False (the vision encoder is not compiled)",
    )
    args = p.parse_args(argv)
    if args.workload == "tiny" and args.max_model_len is None:
        args.max_model_len = 4096
    out = Path(args.out)
    doc = run(args, lambda d: write_results(d, out, label=args.label))
    path = write_results(doc, out, label=args.label)
    emit(json.dumps(doc["modes"], indent=1))
    emit(str(path))
    return doc


if __name__ == "__main__":
    main()
