"""The driver's store-rate benchmark (benchmarks/bench_store.py), smoke-run on a few rows."""

import json
from pathlib import Path

from benchmarks.bench_store import main, make_rows

from vlmcap.video import read_rows


def test_rows_are_distinct_and_shaped_like_w1() -> None:
    rows = make_rows(40)
    assert len({r.key for r in rows}) == 40
    assert all(r.ok and r.output_tokens == 256 and len(r.caption or "") >= 1100 for r in rows)


def test_store_bench_measures_every_format_and_write_size(tmp_path: Path) -> None:
    doc = main(
        ["--rows", "60", "--batch-windows", "1,16", "--repeat", "1", "--dir", str(tmp_path / "w"),
         "--out", str(tmp_path / "out")],
        emit=lambda _s: None,
    )
    (path,) = (tmp_path / "out").glob("*-store-W1-cpu.json")
    assert json.loads(path.read_text())["results"] == doc["results"]
    assert set(doc["results"]) == {f"{f}_batch_{b}" for f in ("jsonl", "parquet") for b in (1, 16)}
    for r in doc["results"].values():
        assert r["rows"] == 60 and r["rows_per_s"] > 0 and r["bytes"] > 0
        assert r["headroom_at_8_gpus"] == r["rows_per_s"] / (8 * doc["clips_per_gpu"])
    # the last output of each format holds every row once (what the driver would have stored)
    for fmt in ("jsonl", "parquet"):
        stored = read_rows(tmp_path / "w" / f"out-16.{fmt}")
        assert sorted(r.key for r in stored) == sorted(r.key for r in make_rows(60))
