"""The ``vlmcap`` command: caption, check, bench, demo, download, plugins, prompts, tiny-checkpoint.

Logging: vLLM's, transformers' and torch's logs go to stderr, errors only (``-v``: warnings and
INFO, ``-vv``: DEBUG); Python warnings are hidden unless ``-v``; stdout carries only what a
command prints as its result. This is set up here, in the command, before vLLM is imported
(vLLM reads its logging settings at import time); the library itself never reconfigures a
caller's logging.
"""

import argparse
import importlib
import importlib.metadata
import logging
import math
import os
import signal
import sys
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tqdm import tqdm

from vlmcap._errors import ConfigError, ModelNotFoundError, UnknownVariantError, VlmcapError
from vlmcap._model_ids import MODEL_IDS
from vlmcap._plugin import pins_no_model, plugin_model_id
from vlmcap._prompts import PROMPTS
from vlmcap._quality import ROW_FLAGS, QualitySettings, counts_line
from vlmcap._records import VllmConfig
from vlmcap._registry import available_variants, get_plugin
from vlmcap.video import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    ROW_DOCS,
    JobStats,
    SettingsChangedError,
    WindowCaption,
    WindowSettings,
    caption_paths,
    scan_inputs,
)
from vlmcap.video._reaper import start_reaper


DEFAULT_MAX_TOKENS = 512
"""``vlmcap caption --max-tokens`` default: a few paragraphs; a longer caption is ``truncated``."""

_LEVELS = {0: "ERROR", 1: "INFO"}


def quiet_third_party(verbose: int) -> None:
    """Route vLLM, transformers, torch and Python warnings for this command (before vLLM loads).

    Default: their errors only (a CPU build alone makes vLLM, torch and transformers print
    two dozen warnings a user cannot act on); ``-v``: their warnings and INFO; ``-vv``: DEBUG.
    Always on stderr. Environment variables reach vLLM's engine processes too; a variable the
    user set wins unless ``-v`` was given.
    """
    level = _LEVELS.get(verbose, "DEBUG")
    put = os.environ.__setitem__ if verbose else os.environ.setdefault
    put("VLLM_LOGGING_LEVEL", level)
    os.environ["VLLM_LOGGING_STREAM"] = "ext://sys.stderr"  # never on stdout
    put("TRANSFORMERS_VERBOSITY", level.lower())
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if not verbose:
        os.environ.setdefault("TORCH_LOGS", "-torch")
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        warnings.simplefilter("ignore")
    logging.basicConfig(
        level="WARNING" if not verbose else level,
        stream=sys.stderr,
        format="vlmcap: %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for name in ("vllm", "transformers", "torch"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _cmd_plugins(_args: argparse.Namespace) -> int:
    lines = []
    for variant in available_variants():
        where = "?"
        try:
            plugin = get_plugin(variant)
            where = f"{plugin.__module__}:{plugin.__qualname__}"
            model_id = (
                "(no pinned model: give its checkpoint with --model-path DIR)"
                if pins_no_model(plugin)
                else plugin_model_id(plugin)
            )
        except ConfigError as exc:  # a plugin that pins no model (chat) says what it takes
            model_id = f"({exc})"
        except VlmcapError as exc:
            model_id = f"(unavailable: {exc})"
        lines.append((variant, where, model_id))
    width = max((len(w) for _v, w, _m in lines), default=0)
    for variant, where, model_id in lines:
        print(f"{variant:16} {where:{width}}  {model_id}")
    return 0


def _cmd_prompts(_args: argparse.Namespace) -> int:
    for name, text in PROMPTS.items():
        print(f"{name}:\n  {text}\n")
    return 0


def _cmd_tiny(args: argparse.Namespace) -> int:
    from vlmcap.testing import tiny_checkpoint

    print(tiny_checkpoint(args.variant, args.dest, seed=args.seed))
    return 0


def _download_plan(variant: str, dest: str | None) -> tuple[str, str | None, Path | None]:
    """(repo id, pinned revision, target folder or ``None`` for the Hugging Face cache)."""
    entry = MODEL_IDS.get(variant)
    if entry is None:
        raise UnknownVariantError(variant, MODEL_IDS, what="model id")
    root = dest or os.environ.get("VLMCAP_MODEL_DIR")
    return entry.repo_id, entry.revision, Path(root) / entry.repo_id if root else None


def _how_caption_finds(variant: str, target: Path | None) -> str:
    if target is None:
        return (
            f"`vlmcap caption --model {variant}` finds it in the Hugging Face cache at the "
            "pinned revision (no --model-path needed)"
        )
    root = target.parents[len(Path(MODEL_IDS[variant].repo_id).parts) - 1]
    if os.environ.get("VLMCAP_MODEL_DIR") == str(root):
        return f"`vlmcap caption --model {variant}` finds it through $VLMCAP_MODEL_DIR"
    return (
        f"`vlmcap caption --model {variant}` finds it with VLMCAP_MODEL_DIR={root} in the "
        f"environment, or pass --model-path {target}"
    )


def _cmd_download(args: argparse.Namespace) -> int:
    repo, revision, target = _download_plan(args.variant, args.dest)
    where = target or "the Hugging Face cache ($HF_HOME/hub)"
    print(f"{args.variant}: {repo}@{revision or 'main'} -> {where}")
    print(f"then: {_how_caption_finds(args.variant, target)}")
    if args.dry_run:
        return 0
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo, revision=revision, local_dir=target)
    except Exception as exc:  # noqa: BLE001 - network, auth, offline: one clear message
        print(f"vlmcap: error: download of {repo} failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    print("done")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The README's first command: the main job on sample videos with the tiny model."""
    from vlmcap.testing import sample_image, sample_videos, tiny_checkpoint

    samples = Path(args.samples)
    videos = sample_videos(samples, n=args.videos)
    sample_image(samples / "still.png")
    model = tiny_checkpoint("qwen")
    print(f"sample media: {len(videos)} videos and 1 image in {samples}", file=sys.stderr)
    print(f"tiny checkpoint: {model}", file=sys.stderr)
    argv = [
        "caption", str(samples), "--model", "qwen", "--model-path", str(model),
        "--out", args.out, "--max-tokens", str(args.max_tokens), "--max-model-len", "4096",
        "--window-size", "48", "--replace",
    ]
    if args.stage2:
        argv.append("--stage2")
    code = main(argv)
    out = Path(args.out)
    if out.is_file():
        print(f"\nfirst rows of {out}:", file=sys.stderr)
        for line in out.read_text().splitlines()[:3]:
            print(line)
    return code


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _flag_list(text: str) -> frozenset[str]:
    """An argparse type: comma-separated quality flags that can reject a window."""
    try:
        return QualitySettings(reject=text.split(",")).reject
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _quality_lines(stats: JobStats) -> list[str]:
    """The summary's lines about quality flags, rejections and the retry's sampling."""
    lines = []
    if stats.retry_sampling:
        lines.append(f"  retry sampling (a temperature bump, no seed): {stats.retry_sampling}")
    if stats.quality_file:
        lines.append(f"  quality flags: {counts_line(stats.flag_counts)}; in {stats.quality_file}")
    if stats.rejected:
        lines.append(
            f"  rejected: {stats.rejected} windows flagged {'/'.join(sorted(stats.reject))} are "
            "error rows; --retry-errors captions them again with a temperature bump "
            "(temperature >= 0.7, top-p >= 0.95, no fixed seed)"
        )
    return lines


def _caption_summary(stats: JobStats, out: str) -> str:
    """Describe a finished ``caption`` run in a few lines."""
    new = sum(stats.rows.values())
    resumed = sum(stats.resumed.values())

    def counts(c: Counter[str]) -> str:
        return ", ".join(f"{k} {c[k]}" for k in ("success", "truncated", "error"))

    def rate(n: float, seconds: float) -> str:
        return f"{n / seconds:.2f}" if seconds > 0 else "n/a"

    lines = [
        (
            f"vlmcap caption: {new + resumed} windows from {stats.files} files "
            f"in {stats.elapsed_s:.1f} s (engine start {stats.engine_start_s:.1f} s); "
            f"fingerprint {stats.fingerprint}"
        ),
        f"  this run: {counts(stats.rows)}; from earlier runs: {resumed} ({counts(stats.resumed)})",
    ]
    if stats.windows_captioned:
        lines.append(
            f"  captioning: {rate(stats.windows_captioned, stats.caption_s)} clips (windows)/s, "
            f"{rate(stats.output_tokens, stats.caption_s)} output tokens/s over "
            f"{stats.caption_s:.1f} s in the engine; overall {rate(stats.files, stats.elapsed_s)} "
            "files/s"
        )
    elif resumed:
        lines.append("  nothing left to caption: every window's row was in the output already")
    if stats.replaced:
        lines.append(f"  replaced: {stats.replaced} rows of other settings removed (--replace)")
    if stats.other_rows:
        lines.append(
            f"  other settings: {stats.other_rows} rows of other fingerprints kept beside "
            "this run's (filter on the fingerprint column)"
        )
    if stats.retried:
        lines.append(
            f"  retried: {stats.retried} earlier error rows (and rows with a --reject-flags "
            "flag) captioned again"
        )
    lines.extend(_quality_lines(stats))
    if stats.errors:
        lines.append(
            f"  error rows: {stats.errors} in the output (see their error column); "
            "re-run with --retry-errors to caption them again"
        )
    if stats.skipped:
        lines.append(f"  not media, skipped in folders: {stats.skipped}")
    lines.append(f"  rows in {out}")
    return "\n".join(lines)


def _ray_rows(
    args: argparse.Namespace, config: VllmConfig, settings: WindowSettings, stats: JobStats
) -> Iterator[WindowCaption]:
    """``caption --ray``: start or join a Ray cluster and run the job there."""
    try:
        from vlmcap.ray import RayOptions, caption_paths_ray, default_engines, init_ray
    except ImportError as exc:
        raise ConfigError("--ray needs Ray: pip install 'vlmcap[ray]'") from exc
    engines = args.ray_engines
    per_engine = args.ray_decoders_per_engine
    local_cpus = None
    if args.address is None:
        local = RayOptions(engines=engines or 1, decoders=(engines or 1) * per_engine)
        local_cpus = max(os.cpu_count() or 1, local.cpus)
    init_ray(args.address, num_cpus=None if local_cpus is None else math.ceil(local_cpus))
    engines = engines or default_engines()
    return caption_paths_ray(
        args.inputs,
        config,
        options=RayOptions(
            engines=engines,
            decoders=engines * per_engine,
            max_inflight_per_engine=args.max_inflight,
        ),
        **_job_kwargs(args, settings, stats),
    )


def _job_kwargs(
    args: argparse.Namespace, settings: WindowSettings, stats: JobStats
) -> dict[str, Any]:
    """The arguments the file job and the Ray job share."""
    return {
        "out": args.out,
        "resume": args.resume,
        "on_change": "alongside" if args.alongside else "replace" if args.replace else "refuse",
        "retry_errors": args.retry_errors,
        "progress": args.progress,
        "settings": settings,
        "max_pixels": args.max_pixels or None,
        "max_side": args.max_side,
        "batch_windows": args.batch_windows,
        "stats": stats,
    }


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so the job stops the same clean way as on Ctrl-C."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Terminated


def _import_from_cwd() -> None:
    """Let ``pkg.module:Class`` plugin specs import from the current folder.

    ``PYTHONPATH`` carries it to the engine's processes and to the Ray workers a local cluster
    starts.
    """
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if cwd not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([cwd, *filter(None, paths)])


def _caption_config(args: argparse.Namespace) -> tuple[VllmConfig, WindowSettings]:
    if not args.ray and (
        args.address is not None
        or args.ray_engines is not None
        or args.ray_decoders_per_engine != 1
    ):
        raise ConfigError("--address, --ray-engines and --ray-decoders-per-engine need --ray")
    if ":" in args.model:
        _import_from_cwd()  # `--model mymodule:Class` works from the project folder
    get_plugin(args.model)  # an unknown variant is a usage error, before any work
    if args.model_path is not None and not Path(args.model_path).is_dir():
        raise ConfigError(f"--model-path {args.model_path} is not a folder")
    config = VllmConfig(
        model_variant=args.model,
        model_path=args.model_path,
        stage2_caption=args.stage2,
        prompt_variant=args.prompt_variant or "default",
        prompt_text=args.prompt,
        max_output_tokens=args.max_tokens,
        max_model_len=args.max_model_len,
        sampling_fps=args.sampling_fps,
        quality=QualitySettings(
            repeat_max_ngram=args.repeat_max_ngram,
            repeat_min_times=args.repeat_min_times,
            length_z=args.length_z,
            duplicate_jaccard=args.duplicate_jaccard,
            reject=args.reject_flags,
        ),
        max_video_tokens=args.max_video_tokens,
    )
    if args.ray and config.quality.reject:
        raise ConfigError("--reject-flags is not supported with --ray yet")
    settings = WindowSettings(
        window_size=args.window_size,
        remainder_threshold=(
            args.remainder_threshold
            if args.remainder_threshold is not None
            else max(1, args.window_size // 2)
        ),
        sampling_fps=args.sampling_fps,
    )
    return config, settings


def _cmd_caption(args: argparse.Namespace) -> int:
    config, settings = _caption_config(args)
    scan = scan_inputs(args.inputs)
    if not scan.files and not scan.missing:
        raise ConfigError("no input files: the folders and lists given hold no media files")
    if scan.skipped:
        print(f"vlmcap: skipping what is not media in the folders: {scan.describe_skipped()}",
              file=sys.stderr)
    stats = JobStats()
    rows = _ray_rows(args, config, settings, stats) if args.ray else caption_paths(
        args.inputs,
        config,
        max_inflight=args.max_inflight,
        **_job_kwargs(args, settings, stats),
    )
    try:
        for row in rows:
            if not row.ok and not row.resumed:
                msg = f"error: {row.source} window {row.window_index}: {row.error}"
                tqdm.write(msg, file=sys.stderr)
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        close = getattr(rows, "close", None)
        if close is not None:
            close()
        saved = sum(stats.rows.values())
        print(f"\nvlmcap caption: interrupted; {saved} rows saved in {args.out}; "
              "re-run the same command to resume", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
    print(_caption_summary(stats, args.out), file=sys.stderr)
    return 0 if stats.errors == 0 else 1


def _caption_epilog() -> str:
    width = max(map(len, ROW_DOCS))
    columns = "\n".join(
        textwrap.fill(
            text, 88, initial_indent=f"  {name:{width}}  ", subsequent_indent=" " * (width + 4)
        )
        for name, text in ROW_DOCS.items()
    )
    return (
        f"output columns (one row per window):\n{columns}\n\n"
        "exit status: 0 every window succeeded; 1 some row is an error (the summary says how\n"
        "many; --retry-errors redoes them); 2 usage error (bad option, missing input path or\n"
        "model, --out holding other settings), nothing written; 130 interrupted (Ctrl-C),\n"
        "143 terminated (SIGTERM): the rows so far are saved, re-run to resume."
    )


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="show vLLM/transformers/torch warnings and INFO logs (-vv: DEBUG); "
                        "default: their errors only")


def _add_caption_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "caption",
        help="caption video and image files, one row per window (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Caption video/image files window by window. Rows go to --out (.jsonl file or\n"
            ".parquet folder); re-running the same command skips windows already written\n"
            "(rows are keyed by file, window and the settings' fingerprint). Rows written with\n"
            "other settings make the run stop and say what changed, unless --alongside or\n"
            "--replace is given."
        ),
        epilog=_caption_epilog(),
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="a video/image file, a folder (searched recursively) or a .txt list of paths",
    )
    p.add_argument("--model", required=True, metavar="VARIANT",
                   help="plugin variant (e.g. qwen), or pkg.module:Class for a plugin of your "
                        "own that is not installed")
    p.add_argument("--model-path", type=Path, default=None, metavar="DIR",
                   help="local checkpoint folder (default: $VLMCAP_MODEL_DIR/<hf id>, then the "
                        "Hugging Face cache; see `vlmcap download`)")
    p.add_argument("--stage2", action="store_true", help="refine each caption in a second stage")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=None, metavar="TEXT", help="the caption prompt")
    prompt.add_argument("--prompt-variant", default=None, metavar="NAME",
                        choices=sorted(PROMPTS),
                        help=f"a named prompt: {', '.join(PROMPTS)} (default: default; "
                             "`vlmcap prompts` prints them)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output: FILE.jsonl, or FILE.parquet (a folder of part files)")
    p.add_argument("--max-tokens", type=_positive_int, default=DEFAULT_MAX_TOKENS, metavar="N",
                   help="output token limit per caption and stage; a caption that reaches it "
                        "has status truncated (default: %(default)s)")
    p.add_argument("--window-size", type=_positive_int, default=256, metavar="N",
                   help="native frames per window (default: %(default)s)")
    p.add_argument("--remainder-threshold", type=_positive_int, default=None, metavar="N",
                   help="a shorter tail joins the last window (default: window size / 2)")
    p.add_argument("--sampling-fps", type=_positive_float, default=2.0, metavar="F",
                   help="frames sampled per second of video (default: %(default)s)")
    p.add_argument("--max-pixels", type=_non_negative_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="per-frame pixel budget of the resize; 0 keeps native size "
                        "(default: %(default)s)")
    p.add_argument("--max-side", type=_positive_int, default=DEFAULT_MAX_SIDE, metavar="N",
                   help="files with a larger width or height are errors (default: %(default)s)")
    p.add_argument("--batch-windows", type=_positive_int, default=32, metavar="N",
                   help="windows decoded ahead of the engine (x2); with --ray, windows per "
                        "decoded batch (default: %(default)s)")
    p.add_argument("--max-inflight", type=_positive_int, default=128, metavar="N",
                   help="windows in an engine at once, topped up as captions finish; raise "
                        "it to the engine's batch size on a GPU (default: %(default)s)")
    p.add_argument("--max-model-len", type=_positive_int, default=None, metavar="N",
                   help="engine context length (default: the plugin's; use e.g. 4096 on CPU)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip windows already in --out (default: on); --no-resume starts afresh "
                        "(every row of --out is removed)")
    change = p.add_mutually_exclusive_group()
    change.add_argument("--alongside", action="store_true",
                        help="--out holds rows of other settings: keep them and add this run's "
                             "rows beside them (tell them apart by the fingerprint column)")
    change.add_argument("--replace", action="store_true",
                        help="--out holds rows of other settings: remove them")
    p.add_argument("--retry-errors", action="store_true",
                   help="caption the windows of earlier error rows again (their rows are "
                        "replaced), and of rows flagged with a --reject-flags flag; such a run "
                        "samples with a temperature bump (temperature >= 0.7, top-p >= 0.95, "
                        "no fixed seed), so a looping caption is drawn anew")
    p.add_argument("--reject-flags", type=_flag_list, default=frozenset(), metavar="FLAGS",
                   help=f"comma-separated quality flags ({', '.join(ROW_FLAGS)}) that turn a "
                        "window into an error row naming the flag, so --retry-errors redoes it")
    p.add_argument("--max-video-tokens", type=_positive_int, default=None, metavar="N",
                   help="visual token budget per window: smaller frames, and if needed fewer, "
                        "within the model's patch and merge sizes and its minimum frame "
                        "(default: the model's own frame size)")
    p.add_argument("--repeat-min-times", type=_int_at_least(2), default=4, metavar="K",
                   help="flag repetition: an n-gram repeated back to back K times "
                        "(default: %(default)s)")
    p.add_argument("--repeat-max-ngram", type=_positive_int, default=6, metavar="N",
                   help="flag repetition: longest looping n-gram, in words (default: %(default)s)")
    p.add_argument("--length-z", type=_positive_float, default=3.5, metavar="Z",
                   help="flag too_short/too_long: modified z-score of the caption's length in "
                        "words beyond Z (median and MAD of the run; default: %(default)s)")
    p.add_argument("--duplicate-jaccard", type=_positive_float, default=0.8, metavar="J",
                   help="flag near_duplicate: Jaccard of word 3-shingles >= J with another "
                        "window of the same file (default: %(default)s)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar on stderr (default: on)")
    p.add_argument("--ray", action="store_true",
                   help="run on a Ray cluster: one engine actor per GPU, decoder actors, rows "
                        "written here as they finish (needs the ray extra)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="with --ray: the cluster to join (default: start a local one)")
    p.add_argument("--ray-engines", type=_positive_int, default=None, metavar="N",
                   help="with --ray: engine actors (default: the cluster's GPUs, or 1)")
    p.add_argument("--ray-decoders-per-engine", type=_positive_int, default=1, metavar="N",
                   help="with --ray: decoder actors (1 CPU each) per engine actor (default 1; "
                        "raise it for high-resolution sources)")
    _add_verbose(p)
    p.set_defaults(func=_cmd_caption)


def _cmd_check(args: argparse.Namespace) -> int:
    """Run the conformance suite on a plugin; exit 0 only if every check passes."""
    import importlib.util

    from vlmcap.testing._checks import (
        checkpoint_for,
        load_plugin,
        plugin_checks,
        plugin_name,
        run_check,
    )
    from vlmcap.testing._report import ContractFailure, SkippedCheck

    if importlib.util.find_spec("hypothesis") is None:
        raise ConfigError("vlmcap check needs Hypothesis: pip install hypothesis")
    _import_from_cwd()  # `vlmcap check mymodule:Class` works from the project folder
    plugin = load_plugin(args.plugin)
    if args.model_path is not None and not Path(args.model_path).is_dir():
        raise ConfigError(f"--model-path {args.model_path} is not a folder")
    print(f"vlmcap check {plugin_name(plugin)}", flush=True)
    checkpoint = checkpoint_for(plugin, args.model_path)
    if checkpoint is not None:
        print(f"checked with {checkpoint.describe()}", flush=True)
    failed = ran = skipped = 0
    for check in plugin_checks(
        plugin, model_path=args.model_path, max_examples=args.max_examples, engine=args.engine
    ):
        ran += 1
        outcome = run_check(check, plugin)
        if isinstance(outcome, ContractFailure):
            failed += 1
            print(f"FAIL {outcome.contract_id} {check.name}: {outcome.message}", flush=True)
        elif isinstance(outcome, SkippedCheck):
            skipped += 1
            print(f"skip {check.contract_id} {check.name}: {outcome.reason}", flush=True)
        else:
            print(f"ok   {check.contract_id} {check.name}", flush=True)
    verdict = "conforms" if failed == 0 else "does NOT conform"
    print(f"{plugin_name(plugin)} {verdict}: {ran} checks, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


def _add_check_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "check",
        help="run the plugin conformance suite on a plugin class",
        description=(
            "Check a plugin against the vlmcap plugin contract (one ID per rule). Prints each "
            "check with its contract ID. Exit status: 0 if every check passes, 1 if any fails, "
            "2 for usage errors (e.g. the plugin cannot be imported)."
        ),
    )
    p.add_argument("plugin", metavar="PLUGIN",
                   help="pkg.module:Class (the current folder is importable), or a variant name")
    p.add_argument("--model-path", type=Path, default=None, metavar="DIR",
                   help="checkpoint folder for processor() (default: a tiny checkpoint)")
    p.add_argument("--engine", action="store_true",
                   help="also caption through a real vLLM engine, stage 1 and 2 (C-ENGINE-001)")
    p.add_argument("--max-examples", type=_positive_int, default=20, metavar="N",
                   help="Hypothesis examples per property check (default: %(default)s)")
    p.set_defaults(func=_cmd_check)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="vlmcap",
        description="Caption video clips with vision-language models served by vLLM.",
    )
    parser.add_argument("--version", action="version", version=f"vlmcap {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show vLLM/transformers/torch warnings and INFO logs (-vv: DEBUG)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_caption_parser(sub)
    _add_check_parser(sub)
    sub.add_parser(  # listed for --help; main() hands its arguments to vlmcap.bench.main
        "bench", help="GPU throughput of vLLM driven naively, by the reference loop and by vlmcap "
        "(`vlmcap bench --help` lists its options)"
    )
    p = sub.add_parser(
        "demo", help="caption generated sample videos with the embedded tiny model (main job)"
    )
    p.add_argument("--videos", type=_positive_int, default=3, help="sample videos to generate")
    p.add_argument("--samples", default="out/samples", help="folder for the sample media")
    p.add_argument("--max-tokens", type=_positive_int, default=32,
                   help="output token limit per caption (default: %(default)s)")
    p.add_argument("--stage2", action=argparse.BooleanOptionalAction, default=True,
                   help="refine each caption in a second stage (default: on)")
    p.add_argument("--out", default="out/demo.jsonl", help="output (default: %(default)s)")
    _add_verbose(p)
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser(
        "download", help="fetch a variant's checkpoint at its pinned revision (huggingface_hub)"
    )
    p.add_argument("variant", help="a variant of `vlmcap plugins` with a pinned model id")
    p.add_argument("--dest", default=None, metavar="DIR",
                   help="root folder: the checkpoint goes to DIR/<hf id> (default: "
                        "$VLMCAP_MODEL_DIR, else the Hugging Face cache)")
    p.add_argument("--dry-run", action="store_true",
                   help="print where it would go and how `vlmcap caption` finds it; fetch nothing")
    p.set_defaults(func=_cmd_download)
    p = sub.add_parser("plugins", help="list plugin variants, their classes and model ids")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("prompts", help="list the named prompts of --prompt-variant")
    p.set_defaults(func=_cmd_prompts)
    p = sub.add_parser(
        "tiny-checkpoint",
        help="build a tiny checkpoint for a variant",
        description=(
            "Build (offline, deterministic, a few MB) a checkpoint of a recipe's real architecture "
            "with random weights and a tokenizer trained on a small corpus, whose greedy output is "
            "visible words; print its folder. A folder that already holds the same build is "
            "reused. For an architecture with no recipe, build one from its transformers config "
            "and processor with vlmcap.testing.tiny_checkpoint_like (README: Writing a plugin)."
        ),
    )
    p.add_argument(
        "variant",
        help="a recipe: qwen, cosmos_r1 (Qwen2.5-VL); cosmos_r2, qwen3_vl (dense Qwen3-VL); "
        "qwen3_vl_moe; qwen3_5 (hybrid Qwen3.5); cosmos3 (Cosmos 3 layout); phi4; "
        "nemotron_vl (Nemotron Nano VL v2); chat (LLaVA-OneVision, video); "
        "chat_image (LLaVA-1.5, images)",
    )
    p.add_argument(
        "dest",
        nargs="?",
        default=None,
        help="folder to build into (default: $VLMCAP_TINY_DIR or ~/.cache/vlmcap/tiny, "
        "one subfolder per recipe, seed and recipe version)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    p.set_defaults(func=_cmd_tiny)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("vlmcap")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _usage_error(exc: VlmcapError) -> str:
    """The message of a usage error, in the command's terms (options, not config fields)."""
    if isinstance(exc, SettingsChangedError):
        lines = "\n  ".join(
            f"fingerprint {fp} ({n} rows): {exc.changes[fp]}" for fp, n in exc.others.items()
        )
        return (
            f"{exc.path} holds rows written with other settings than this run's "
            f"(fingerprint {exc.fingerprint}); changed:\n  {lines}\n"
            "re-run with --alongside to add this run's rows beside them, --replace to remove "
            "them, or choose another --out"
        )
    text = str(exc)
    if isinstance(exc, ModelNotFoundError):
        text = text.replace("Set VllmConfig.model_path,", "Pass --model-path DIR, set")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vlmcap`` command (``argv=None``: the command line of this process)."""
    argv_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own options (vlmcap bench --help)
        quiet_third_party(0)
        from vlmcap.bench import main as bench_main

        bench_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    quiet_third_party(args.verbose)
    if argv_given is None and args.command in ("caption", "demo"):
        start_reaper()  # the engine's processes die with this command, whatever kills it
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code: int = args.func(args)
    except VlmcapError as exc:
        print(f"vlmcap: error: {_usage_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("\nvlmcap: interrupted", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
