"""The job's output at scale: Parquet parts of many rows, read back in one call, kill-safe.

No engine: rows are made directly and written through the sinks the job uses.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vlmcap.video import ParquetSink, WindowCaption, open_sink, read_rows
from vlmcap.video._sink import DEFAULT_ROWS_PER_PART


N = 10_000


def _row(i: int, fingerprint: str = "f") -> WindowCaption:
    ok = i % 97 != 0
    return WindowCaption(
        source=f"/data/video-{i // 10:05d}.mp4",
        window_index=i % 10,
        num_windows=10,
        start_s=(i % 10) * 4.004,
        end_s=(i % 10 + 1) * 4.004,
        frames=16 if ok else 0,
        caption=f"caption {i}" if ok else None,
        status="success" if ok else "error",
        finish_reason="stop" if ok else None,
        prompt_tokens=500,
        output_tokens=40 if ok else 0,
        error=None if ok else "CorruptMediaError (corrupt): boom",
        fingerprint=fingerprint,
    )


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def test_ten_thousand_rows_make_few_files_even_with_time_flushes(tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    # one row per append, as the job stores them, and a flush every 2 ms: hundreds of parts
    sink = ParquetSink(out, rows_per_part=2_000, flush_s=0.002)
    for i in range(N):
        sink.append([_row(i)])
        if i % 50 == 0:
            time.sleep(0.003)
    written = len(_parts(out))
    sink.close()
    assert written > 20, "the time flushes did write parts while running"
    parts = _parts(out)
    assert len(parts) <= 24, f"{len(parts)} files for {N} rows"
    assert all(pq.ParquetFile(p).metadata.num_rows <= 2_000 for p in parts)
    rows = read_rows(out)
    assert [r.key for r in rows] == [_row(i).key for i in range(N)], "stored in order, once each"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".vlmcap"]


def test_default_parts_hold_ten_thousand_rows(tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    with_default = open_sink(out)
    for i in range(N):
        with_default.append([_row(i)])
    with_default.close()
    assert DEFAULT_ROWS_PER_PART >= N
    (part,) = _parts(out)
    assert pq.ParquetFile(part).metadata.num_rows == N


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("read") / "captions.parquet"
    sink = ParquetSink(out, rows_per_part=3_000)
    sink.append([_row(i) for i in range(N)])
    sink.record_settings("f", {"prompt": "p"})
    sink.close()
    (out / ".part-000099.parquet.tmp").write_bytes(b"torn")  # what a kill can leave
    return out


def test_pyarrow_and_pandas_read_the_folder_in_one_call(folder: Path) -> None:
    import pandas as pd  # type: ignore[import-untyped]

    table = pq.read_table(folder)
    assert table.num_rows == N
    frame = pd.read_parquet(folder)
    assert len(frame) == N
    assert frame["caption"].isna().sum() == sum(1 for i in range(N) if i % 97 == 0)
    assert set(frame["status"]) == {"success", "error"}


def test_duckdb_reads_the_folder_in_one_call(folder: Path) -> None:
    import duckdb

    query = "select count(*), count(distinct source) from read_parquet($glob)"
    got = duckdb.execute(query, {"glob": f"{folder}/*.parquet"}).fetchall()
    assert got == [(N, N // 10)]


@pytest.mark.slow
def test_ray_data_reads_the_folder_in_one_call(folder: Path) -> None:
    import ray
    import ray.data

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.data.read_parquet(str(folder)).count() == N
    finally:
        ray.shutdown()


_WRITER = textwrap.dedent(
    """
    import sys, time
    from vlmcap.video import ParquetSink
    sys.path.insert(0, sys.argv[2])
    from test_job_output import _row

    sink = ParquetSink(sys.argv[1], rows_per_part=400, flush_s=0.01)
    done = {r.key for r in sink.existing}
    print("ready", flush=True)
    for i in range(int(sys.argv[3])):
        if _row(i).key not in done:
            sink.append([_row(i)])
            time.sleep(0.0005)
    sink.close()
    print("finished")
    """
)


@pytest.mark.slow
def test_a_kill_at_any_moment_still_ends_with_one_row_per_window(tmp_path: Path) -> None:
    """SIGKILL writers of a Parquet output at random moments (appends, flushes, merges)."""
    out = tmp_path / "rows.parquet"
    n = 3_000
    cmd = [sys.executable, "-c", _WRITER, str(out), str(Path(__file__).parent), str(n)]
    rng = random.Random(7)
    kills, stored = 0, [0]
    for _ in range(8):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.5, 3.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
        rows = read_rows(out)
        counts = Counter(r.key for r in rows)
        assert not counts or counts.most_common(1)[0][1] == 1, "never a doubled row"
        stored.append(len(rows))
    assert kills >= 4, "the writers were killed part-way"
    assert len(set(stored)) >= 4, f"the kills hit while rows were being written: {stored}"
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    assert "finished" in done.stdout
    rows = read_rows(out)
    assert sorted(r.key for r in rows) == sorted(_row(i).key for i in range(n))
    assert len(_parts(out)) <= n // 400 + 2
