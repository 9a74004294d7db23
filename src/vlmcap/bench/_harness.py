"""GPU throughput of the ways to drive vLLM for video captioning, all in one engine and one run.

Usage (GPU machine, vLLM 0.26, see benchmarks/README.md)::

    python -m benchmarks.bench_throughput --workload W1 --out benchmarks/results

and on CPU with the tiny checkpoint (a smoke run, seconds)::

    python -m benchmarks.bench_throughput --workload tiny --out /tmp/bench

Every mode captions its own freshly generated clips (different seeds) and the prefix and
multimodal caches are reset between modes, so no mode profits from another's work. Figures are
reported as ratios to ``naive_generate`` of the same run.
"""

import argparse
import datetime as dt
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

import vlmcap
from vlmcap import _vllm_compat
from vlmcap._captioner import _as_engine
from vlmcap.plugins.qwen import VllmQwen7B, chat_token_ids


MODES = (
    "naive_generate",
    "reference_inflight",
    "vlmcap",
    "naive_two_stage",
    "vlmcap_two_stage",
    "text_only_sol",
)


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


@attrs.frozen
class ModeResult:
    """What one mode achieved."""

    clips: int
    wall_s: float
    prompt_tokens: int
    output_tokens: int
    errors: int
    extra: dict[str, float] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, with rates."""
        return {
            "clips_per_s": self.clips / self.wall_s,
            "prompt_tokens_per_s": self.prompt_tokens / self.wall_s,
            "output_tokens_per_s": self.output_tokens / self.wall_s,
            "wall_s": self.wall_s,
            "clips": self.clips,
            "errors": self.errors,
            **self.extra,
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


def _count(outs: Sequence[Any]) -> tuple[int, int]:
    p = sum(len(o.prompt_token_ids or []) for o in outs)
    o = sum(len(o.outputs[0].token_ids) for o in outs)
    return p, o


def _reset(llm: Any) -> None:
    for name in ("reset_prefix_cache", "reset_mm_cache"):
        fn = getattr(llm, name, None)
        if fn is not None:
            fn()


class Runner:
    """Holds the engine and everything shared by the modes."""

    def __init__(self, llm: Any, processor: Any, config: vlmcap.VllmConfig, w: Workload) -> None:
        self.llm = llm
        self.processor = processor
        self.config = config
        self.w = w
        self.params = vlmcap.sampling_params(config)
        self.prompt = vlmcap.get_prompt()
        self.ids = chat_token_ids(processor, self.prompt)
        self.refine_ids = chat_token_ids(processor, vlmcap.DEFAULT_STAGE2_PROMPT + "x " * 40)
        self.prompt_tokens_per_clip = 0

    def naive_generate(self, clips: list[torch.Tensor]) -> ModeResult:
        inputs = _naive_inputs(clips, self.ids)
        t0 = time.perf_counter()
        outs = self.llm.generate(inputs, self.params, use_tqdm=False)
        wall = time.perf_counter() - t0
        p, o = _count(outs)
        self.prompt_tokens_per_clip = p // len(outs)
        return ModeResult(len(clips), wall, p, o, 0)

    def reference_inflight(self, clips: list[torch.Tensor]) -> ModeResult:
        """cosmos-curate's loop: one ``add_request`` per ``step()``."""
        inputs = _naive_inputs(clips, self.ids)
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
        p, o = _count(done)
        return ModeResult(len(clips), wall, p, o, 0)

    def _vlmcap(self, clips: list[torch.Tensor], *, two_stage: bool, cap: int = 0) -> ModeResult:
        timer = _EngineTimer(_as_engine(self.llm))
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
        )

    def vlmcap(self, clips: list[torch.Tensor], cap: int = 0) -> ModeResult:
        return self._vlmcap(clips, two_stage=False, cap=cap)

    def vlmcap_two_stage(self, clips: list[torch.Tensor], cap: int = 0) -> ModeResult:
        return self._vlmcap(clips, two_stage=True, cap=cap)

    def prerendered(self, clips: list[torch.Tensor]) -> ModeResult:
        """Engine-side cost only: requests rendered before the clock starts, then added."""
        fn = self.llm._preprocess_cmpl_one
        rendered = [fn(inp) for inp in _naive_inputs(clips, self.ids)]
        engine = self.llm.llm_engine
        done: list[Any] = []
        t0 = time.perf_counter()
        for i, r in enumerate(rendered):
            engine.add_request(f"pre-{i}", r, self.params)
        while engine.has_unfinished_requests():
            done += [o for o in engine.step() if o.finished]
        wall = time.perf_counter() - t0
        p, o = _count(done)
        return ModeResult(len(clips), wall, p, o, 0)

    def naive_two_stage(self, clips: list[torch.Tensor]) -> ModeResult:
        inputs = _naive_inputs(clips, self.ids)
        t0 = time.perf_counter()
        outs1 = self.llm.generate(inputs, self.params, use_tqdm=False)
        stage2 = [
            {
                "prompt_token_ids": chat_token_ids(
                    self.processor, vlmcap.DEFAULT_STAGE2_PROMPT + o.outputs[0].text
                ),
                "multi_modal_data": inp["multi_modal_data"],
            }
            for o, inp in zip(outs1, inputs, strict=True)
        ]
        outs2 = self.llm.generate(stage2, self.params, use_tqdm=False)
        wall = time.perf_counter() - t0
        p1, o1 = _count(outs1)
        p2, o2 = _count(outs2)
        return ModeResult(len(clips), wall, p1 + p2, o1 + o2, 0)

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
        p, o = _count(outs)
        return ModeResult(len(clips), wall, p, o, 0)


class _EngineTimer:
    """Wraps the engine adapter to time what the engine itself takes."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.add_s = 0.0
        self.step_s = 0.0

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
            return self._engine.step()
        finally:
            self.step_s += time.perf_counter() - t

    def abort(self, ids: Any) -> None:
        self._engine.abort(ids)


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen modes and return the results document."""
    import vllm

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
    kwargs = VllmQwen7B.engine_kwargs(config)
    kwargs["load_format"] = load_format
    kwargs.update(json.loads(args.engine_json))
    t0 = time.perf_counter()
    llm = _vllm_compat.build_llm(**kwargs)
    start_s = time.perf_counter() - t0
    processor = vlmcap.auto_processor(config)
    runner = Runner(llm, processor, config, w)
    warm = make_clips(attrs.evolve(w, clips=min(8, w.clips)), seed=999)
    runner.naive_generate(warm)
    diagnostics_pre: dict[str, Any] = {"torch_num_threads": torch.get_num_threads()}
    fresh = make_clips(attrs.evolve(w, clips=min(4, w.clips)), seed=998)  # not in any cache
    if args.render_scaling:
        for k, workers in enumerate((1, 4, 16)):
            _reset(llm)
            some = make_clips(attrs.evolve(w, clips=16), seed=500 + k)
            s = render_pool_seconds_per_clip(llm, some, runner.ids, workers)
            print(f"render pool {workers:2} threads: {s * 1000:.1f} ms/clip", file=sys.stderr)
            diagnostics_pre[f"render_pool_{workers}_s_per_clip"] = s
    diagnostics = {
        **diagnostics_pre,
        "engine_start_s": start_s,
        "render_s_per_clip_single_thread": render_seconds_per_clip(llm, fresh, runner.ids),
        "render_workers": _vllm_compat.render_workers(),
    }
    # "vlmcap_two_stage@64": the vlmcap modes with max_inflight_requests=64
    modes = list(MODES) + [m for m in args.modes if m not in MODES and m != "all"]
    if "all" not in args.modes:
        modes = [m for m in modes if m in args.modes]
    if "text_only_sol" in modes and "naive_generate" not in modes:
        modes.insert(0, "naive_generate")
    results: dict[str, dict[str, Any]] = {}
    for k, mode in enumerate(modes):
        _reset(llm)
        clips = make_clips(w, seed=k)
        name, _, cap = mode.partition("@")
        fn = getattr(runner, name)
        res: ModeResult = fn(clips, int(cap)) if cap else fn(clips)
        del clips
        gc.collect()
        results[mode] = res.as_dict()
        print(
            f"{mode:20} {res.as_dict()['clips_per_s']:.2f} clips/s  ({res.wall_s:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    base = results.get("naive_generate", {}).get("clips_per_s")
    if base:
        for r in results.values():
            r["ratio_to_naive_generate"] = r["clips_per_s"] / base
    if "vlmcap" in results and "vlmcap_two_stage" in results:
        diagnostics["vlmcap_two_stage_over_vlmcap"] = (
            results["vlmcap_two_stage"]["clips_per_s"] / results["vlmcap"]["clips_per_s"]
        )
    engine_settings = {k: v for k, v in kwargs.items() if k != "model"}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": gpu_name(),
        "vllm_version": vllm.__version__,
        "torch_version": torch.__version__,
        "label": args.label,
        "workload": attrs.asdict(w) | {"prompt_tokens_per_clip": runner.prompt_tokens_per_clip},
        "engine": engine_settings,
        "jaxtyping_disable": os.environ.get("JAXTYPING_DISABLE", ""),
        "modes": results,
        "diagnostics": diagnostics,
    }


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
    p = argparse.ArgumentParser(prog="vlmcap bench", description=__doc__)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="W1")
    p.add_argument("--modes", nargs="+", default=["all"])
    p.add_argument("--clips", type=int, default=0)
    p.add_argument("--output-tokens", type=int, default=0)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--disable-mmcache", action="store_true")
    p.add_argument("--engine-json", default="{}", help="extra LLM(...) kwargs as JSON")
    p.add_argument("--model-dir", default="/tmp/qwen7b-shape")
    p.add_argument("--label", default="")
    p.add_argument("--render-scaling", action="store_true", help="measure render threads 1/4/16")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.workload == "tiny" and args.max_model_len is None:
        args.max_model_len = 4096
    doc = run(args)
    path = write_results(doc, Path(args.out), label=args.label)
    emit(json.dumps(doc["modes"], indent=1))
    emit(str(path))
    return doc


if __name__ == "__main__":
    main()
