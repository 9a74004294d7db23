"""The ``vlmcap`` command: ``demo``, ``plugins``, ``tiny-checkpoint``."""

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from vlmcap._captioner import (
    auto_processor,
    caption_results,
    make_model_inputs,
    sampling_params,
    vllm_model,
)
from vlmcap._errors import VlmcapError
from vlmcap._plugin import plugin_model_id
from vlmcap._prompts import get_prompt
from vlmcap._records import CaptionResult, VllmConfig
from vlmcap._registry import available_variants, get_plugin


def _cmd_plugins(_args: argparse.Namespace) -> int:
    for variant in available_variants():
        try:
            model_id = plugin_model_id(get_plugin(variant))
        except VlmcapError as exc:
            model_id = f"(unavailable: {exc})"
        print(f"{variant:16} {model_id}")
    return 0


def _cmd_tiny(args: argparse.Namespace) -> int:
    from vlmcap.testing import tiny_checkpoint

    print(tiny_checkpoint(args.variant, args.dest, seed=args.seed))
    return 0


def _row(i: int, result: CaptionResult) -> dict[str, object]:
    return {"clip": i, **attrs.asdict(result)}


def _cmd_demo(args: argparse.Namespace) -> int:
    from vlmcap.testing import synthetic_clip, tiny_checkpoint

    t0 = time.monotonic()
    path = tiny_checkpoint("qwen")
    print(f"tiny checkpoint: {path}", file=sys.stderr)
    config = VllmConfig(
        model_variant="qwen",
        model_path=path,
        max_output_tokens=args.max_tokens,
        max_model_len=4096,
        stage2_caption=args.stage2,
    )
    llm = vllm_model(config)
    processor = auto_processor(config)
    clips = [synthetic_clip(8, 224, 224, seed=s) for s in range(args.clips)]
    inputs = make_model_inputs(clips, config, processor, get_prompt(config.prompt_variant))
    t1 = time.monotonic()
    results = caption_results(
        inputs, llm, processor, sampling_params(config), config, 0, inflight_batching=True
    )
    elapsed = time.monotonic() - t1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for i, r in enumerate(results):
            f.write(json.dumps(_row(i, r)) + "\n")
            print(f"clip {i}: [{r.status}] {r.text or r.error}")
    ok = sum(r.ok for r in results)
    print(
        f"{ok}/{len(results)} captioned in {elapsed:.2f} s "
        f"({len(results) / elapsed:.1f} clips/s; {time.monotonic() - t0:.0f} s with start-up); "
        f"rows in {out}",
        file=sys.stderr,
    )
    return 0 if ok == len(results) else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="vlmcap", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="caption synthetic clips with the embedded tiny model")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--stage2", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default="out/demo.jsonl")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("plugins", help="list plugin variants and their model ids")
    p.set_defaults(func=_cmd_plugins)
    p = sub.add_parser("tiny-checkpoint", help="build a tiny checkpoint for a variant")
    p.add_argument("variant")
    p.add_argument("dest", nargs="?", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_tiny)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vlmcap`` command."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except VlmcapError as exc:
        print(f"vlmcap: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
