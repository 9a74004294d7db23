"""How many rows per second the driver of a Ray run can store: the sink alone, JSONL and Parquet.

Every row of a Ray run is written by its one driver, through the same sink as the plain job
(:func:`vlmcap.video.open_sink`: each ``append`` is durable, ``fsync`` included, before its rows
are reported). This measures that sink on this machine's disk, with rows shaped like W1's (a
256-token caption, about 1,100 characters), appended in batches the size of an engine call
(``--batch-windows``), and compares it with the caption rate of a cluster. The time counts
every ``append`` and the final ``close`` (a Parquet sink buffers rows into large parts and
writes what is left on close)::

    python -m benchmarks.bench_store --out benchmarks/results

``gpus_at_store_limit`` is how many GPUs at ``--clips-per-gpu`` (8.25 clips/s per H200 on W1,
``benchmarks/results/2026-11-27T122054-scaling-W1-NVIDIA_H200-stream.json``) it takes to produce
rows as fast as the driver stores them; ``headroom_at_8_gpus`` is the store rate over the
8-GPU caption rate (target: at least 10).
"""

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlmcap import CaptionResult, CaptionStatus
from vlmcap.bench._harness import write_results
from vlmcap.video import WindowCaption, WindowPlan, WindowSettings, open_sink, plan_windows


W1_CLIPS_PER_GPU = 8.25
"""Measured: one H200 engine on W1 through the Ray job (the scaling result named above)."""

_TEXT = (
    "a person walks across the frame while the camera pans slowly to the left and a red car "
    "passes behind them on a wet street lit by shop windows at dusk people wait at the crossing "
    "one of them holds an umbrella the scene then cuts to a close view of a hand opening a door"
)


def make_rows(
    n: int, *, windows_per_file: int = 8, caption_chars: int = 1100
) -> list[WindowCaption]:
    """``n`` distinct successful rows shaped like W1's (deterministic)."""
    rng = random.Random(0)
    vocabulary = _TEXT.split()
    plans: tuple[WindowPlan, ...] = plan_windows(
        windows_per_file * 32, 16.0, WindowSettings(window_size=32, remainder_threshold=16)
    )
    rows = []
    for i in range(n):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) <= caption_chars:
            words.append(rng.choice(vocabulary))
        text = " ".join(words)
        result = CaptionResult(
            text=text, status=CaptionStatus.SUCCESS, finish_reason="length",
            prompt_tokens=2076, output_tokens=256,
        )
        source = f"/data/videos/shard-{i // 10_000:04d}/clip-{i // windows_per_file:08d}.mp4"
        plan = plans[i % windows_per_file]
        rows.append(
            WindowCaption.from_result(source, plan, windows_per_file, 16, result, "f" * 16)
        )
    return rows


def store_rate(rows: Sequence[WindowCaption], path: Path, batch: int) -> dict[str, Any]:
    """Append ``rows`` to a fresh output at ``path`` in batches of ``batch``; rates and sizes."""
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    sink = open_sink(path, resume=False)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(rows), batch):
            sink.append(rows[start : start + batch])
        appended = time.perf_counter() - t0
    finally:
        sink.close()  # Parquet writes its buffered rows here: part of the cost
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    reopened = open_sink(path, resume=True)
    try:
        assert len(reopened.existing) == len(rows), "every row is read back"  # noqa: S101
    finally:
        reopened.close()
    reopen = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
    return {
        "rows": len(rows),
        "batch_rows": batch,
        "wall_s": wall,
        "append_s": appended,
        "rows_per_s": len(rows) / wall,
        "appends_per_s": -(-len(rows) // batch) / wall,
        "bytes": size,
        "reopen_s": reopen,
    }


def _filesystem(path: Path) -> str:
    """The mount type of ``path`` (from /proc/mounts, Linux; '' elsewhere)."""
    best, kind = "", ""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every format at every batch size; the results document."""
    rows = make_rows(args.rows)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vlmcap-store-"))
    work.mkdir(parents=True, exist_ok=True)
    eight_gpus = 8 * args.clips_per_gpu
    results: dict[str, dict[str, Any]] = {}
    try:
        for fmt in ("jsonl", "parquet"):
            for batch in args.batch_windows:
                tries = [
                    store_rate(rows, work / f"out-{batch}.{fmt}", batch)
                    for _ in range(args.repeat)
                ]
                r = sorted(tries, key=lambda t: t["rows_per_s"])[len(tries) // 2]  # the median
                r = r | {
                    "repeats_rows_per_s": [t["rows_per_s"] for t in tries],
                    "gpus_at_store_limit": r["rows_per_s"] / args.clips_per_gpu,
                    "headroom_at_8_gpus": r["rows_per_s"] / eight_gpus,
                }
                results[f"{fmt}_batch_{batch}"] = r
                print(
                    f"{fmt:8s} batch {batch:4d}: {r['rows_per_s']:10,.0f} rows/s "
                    f"({r['headroom_at_8_gpus']:.0f}x the 8-GPU caption rate; "
                    f"the store limits at {r['gpus_at_store_limit']:,.0f} GPUs)",
                    flush=True,
                )
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": "cpu",
        "machine": {
            "node": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "filesystem": _filesystem(work),
        },
        "label": args.label,
        "workload": {"name": "W1", "rows": args.rows, "caption_chars": 1100},
        "clips_per_gpu": args.clips_per_gpu,
        "caption_rate_8_gpus": eight_gpus,
        "target_headroom": 10,
        "repeat": args.repeat,
        "results": results,
    }


def main(
    argv: Sequence[str] | None = None, *, emit: Callable[[str], None] = print
) -> dict[str, Any]:
    """Parse arguments, run, write ``<out>/<date>-store-W1-cpu[-label].json``."""
    p = argparse.ArgumentParser(prog="bench_store", description=__doc__)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument(
        "--batch-windows", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 16, 64],
        help="rows per append, comma-separated (the driver appends one engine call's rows)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per setting; the median is kept")
    p.add_argument("--clips-per-gpu", type=float, default=W1_CLIPS_PER_GPU)
    p.add_argument("--dir", default="", help="where to write (default: a temporary folder)")
    p.add_argument("--label", default="")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    doc = run(args)
    path = write_results(doc, Path(args.out), label=args.label, kind="store-")
    emit(str(path))
    return doc


if __name__ == "__main__":
    main()
