"""The video job and its outputs on a fake engine: order, error rows, resume, durability.

The real Qwen processor of the tiny checkpoint builds the inputs (no engine is started); a
:class:`FakeEngine` captions them. The engine runs are in ``test_caption_cli.py``.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pyarrow.parquet as pq
import pytest

import vlmcap
from vlmcap import _captioner
from vlmcap.testing._fake import FakeEngine
from vlmcap.testing._samples import broken_media, sample_image, sample_videos
from vlmcap.video import (
    FILE_ROW_INDEX,
    JobStats,
    MissingInputError,
    SettingsChangedError,
    SinkError,
    WindowCaption,
    WindowSettings,
    _job,
    caption_paths,
    expand_inputs,
    items,
    open_sink,
    plan_media,
    probe,
    read_rows,
    scan_inputs,
)
from vlmcap.video._results import model_identity


SETTINGS = WindowSettings(window_size=32, remainder_threshold=16)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jobmedia")
    videos = sample_videos(root / "videos", n=3)
    broken = broken_media(root / "broken")
    image = sample_image(root / "still.png")
    return {
        **{f"video{i}": v for i, v in enumerate(videos)},
        **broken,
        "image": image,
        "missing": root / "missing.mp4",
    }


@pytest.fixture(scope="module")
def processor(qwen_config: Any) -> Any:
    return vlmcap.auto_processor(qwen_config)


def _expected_windows(path: Path) -> int:
    return len(plan_media(probe(path), SETTINGS))


def _run(
    inputs: list[Path], config: Any, processor: Any, out: Path | None = None, **kw: Any
) -> tuple[list[WindowCaption], FakeEngine]:
    engine = FakeEngine()
    kw.setdefault("settings", SETTINGS)
    rows = list(
        caption_paths(
            inputs, config, llm=engine, processor=processor, out=out, progress=False, **kw
        )
    )
    return rows, engine


def _keys(rows: list[WindowCaption]) -> list[tuple[str, int, str]]:
    return [r.key for r in rows]


def test_one_row_per_window_in_input_order(
    media: dict[str, Path], qwen_config: Any, processor: Any
) -> None:
    order = ["video1", "corrupt", "image", "video0", "truncated", "too_short"]
    rows, engine = _run([media[k] for k in order], qwen_config, processor, batch_windows=3)
    by_source: dict[str, list[WindowCaption]] = {}
    for r in rows:
        by_source.setdefault(r.source, []).append(r)
    assert list(by_source) == [str(media[k]) for k in order], "input order, files not interleaved"
    for k in ("video0", "video1"):
        got = by_source[str(media[k])]
        n = _expected_windows(media[k])
        assert [r.window_index for r in got] == list(range(n))
        assert all(r.ok and (r.caption or "").startswith("caption-") for r in got)
        assert all(r.num_windows == n and r.frames >= 4 for r in got)
        assert [r.end_s for r in got[:-1]] == [r.start_s for r in got[1:]]
    (still,) = by_source[str(media["image"])]
    assert (still.window_index, still.frames, still.ok) == (0, 2, True)
    for k, kind in [("corrupt", "corrupt"), ("too_short", "too_short")]:
        (row,) = by_source[str(media[k])]
        assert row.window_index == FILE_ROW_INDEX
        assert row.status is vlmcap.CaptionStatus.ERROR
        assert row.caption is None, "an error row has no caption (null, not '')"
        assert row.error is not None
        assert f"({kind})" in row.error
    cut = by_source[str(media["truncated"])]
    assert [r.window_index for r in cut] == list(range(len(cut)))
    assert cut[0].ok, "windows before the cut are captioned"
    assert not cut[-1].ok
    assert cut[-1].error is not None
    assert "truncated" in cut[-1].error
    captioned = sum(1 for r in rows if r.ok)
    assert len(engine.added) == captioned, "each good window is sent to the engine once"


def test_rows_are_written_and_a_rerun_captions_nothing(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    inputs = [media["video0"], media["corrupt"], media["video2"]]
    stats = JobStats()
    rows, _ = _run(inputs, qwen_config, processor, out, batch_windows=2, stats=stats)
    assert [r.to_row() for r in read_rows(out)] == [r.to_row() for r in rows]
    assert stats.rows["error"] == 1
    assert stats.rows["success"] + stats.rows["truncated"] == len(rows) - 1
    before = out.read_bytes()

    again_stats = JobStats()
    again, engine = _run(inputs, qwen_config, processor, out, stats=again_stats)
    assert engine.added == [], "nothing is captioned twice"
    assert all(r.resumed for r in again)
    assert [attrs.evolve(r, resumed=False) for r in again] == rows, "same rows, same order"
    assert out.read_bytes() == before
    assert sum(again_stats.resumed.values()) == len(rows)
    assert again_stats.errors == 1


def test_a_fully_resumed_run_starts_no_engine(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "rows.jsonl"
    _run([media["video0"]], qwen_config, processor, out)

    def no_engine(_config: Any) -> Any:
        raise AssertionError("an engine was built for a run with nothing to do")

    monkeypatch.setattr(_job, "vllm_model", no_engine)
    rows = list(
        caption_paths(media["video0"], qwen_config, out=out, settings=SETTINGS, progress=False)
    )
    assert rows
    assert all(r.resumed for r in rows)


def test_resume_captions_only_the_missing_windows(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    inputs = [media["video1"], media["video2"]]
    full, _ = _run(inputs, qwen_config, processor, out)
    lines = out.read_bytes().splitlines(keepends=True)
    keep = [line for i, line in enumerate(lines) if i % 3 != 1]
    out.write_bytes(b"".join(keep))
    rows, engine = _run(inputs, qwen_config, processor, out)
    assert len(engine.added) == len(lines) - len(keep)
    assert _keys(rows) == _keys(full), "the same windows in the same order"
    stored = read_rows(out)
    assert sorted(_keys(stored)) == sorted(_keys(full)), "exactly one row per window"


def test_other_settings_are_refused_by_name_then_kept_alongside_or_replaced(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    first, _ = _run([media["video0"]], qwen_config, processor, out)
    before = out.read_bytes()
    other = attrs.evolve(qwen_config, max_output_tokens=7)
    with pytest.raises(SettingsChangedError) as refused:
        _run([media["video0"]], other, processor, out, prompt="Other prompt.")
    message = str(refused.value)
    assert "max_output_tokens 12 -> 7" in message, message
    assert '"Other prompt."' in message, "the message names what changed"
    assert refused.value.others == {first[0].fingerprint: len(first)}
    assert out.read_bytes() == before, "a refused run writes nothing"

    stats = JobStats()
    second, engine = _run(
        [media["video0"]], other, processor, out, on_change="alongside", stats=stats
    )
    assert len(engine.added) == len(second)
    assert {r.fingerprint for r in first}.isdisjoint({r.fingerprint for r in second})
    assert stats.other_rows == len(first)
    stored = read_rows(out)
    assert len(stored) == len(first) + len(second)
    assert len(set(_keys(stored))) == len(stored)

    stats = JobStats()
    third, engine = _run([media["video0"]], other, processor, out, on_change="replace", stats=stats)
    assert engine.added == [], "this fingerprint's rows are kept and resumed"
    assert (stats.replaced, stats.other_rows) == (len(first), 0)
    assert _keys(read_rows(out)) == _keys(second) == _keys(third)


def test_the_model_is_keyed_by_its_files_not_by_how_its_path_is_spelled(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "rows.jsonl"
    model = Path(qwen_config.model_path).resolve()
    first, _ = _run([media["video0"]], attrs.evolve(qwen_config, model_path=model), processor, out)
    monkeypatch.chdir(model.parent)
    (tmp_path / "link").symlink_to(model)
    for spelling in (Path(model.name), tmp_path / "link", Path(f"{model}/")):
        rows, engine = _run(
            [media["video0"]], attrs.evolve(qwen_config, model_path=spelling), processor, out
        )
        assert engine.added == [], f"{spelling} is the same model: nothing captioned again"
        assert {r.fingerprint for r in rows} == {first[0].fingerprint}
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    same = model_identity(copy)
    assert same == model_identity(model), "a copy is the same model"
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    assert model_identity(copy) != same, "another config is another model"
    (copy / "config.json").write_text(json.dumps(config))
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the weights
    weights.write_bytes(bytes(data))
    assert model_identity(copy) != same, "other weights are another model"


def test_retry_errors_captions_error_rows_again_and_keeps_one_row_each(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    video = tmp_path / "later-fixed.mp4"
    shutil.copy(media["corrupt"], video)
    first, _ = _run([video, media["video0"]], qwen_config, processor, out)
    assert not first[0].ok
    shutil.copy(media["video1"], video)  # the file is fixed
    again, engine = _run([video, media["video0"]], qwen_config, processor, out)
    assert engine.added == [] and not again[0].ok, "without the flag error rows stay"
    stats = JobStats()
    fixed, engine = _run(
        [video, media["video0"]], qwen_config, processor, out, retry_errors=True, stats=stats
    )
    n = _expected_windows(media["video1"])
    assert len(engine.added) == n, "only the error row's file is captioned again"
    assert stats.retried == 1
    assert all(r.ok for r in fixed)
    stored = read_rows(out)
    assert sorted(_keys(stored)) == sorted(_keys(fixed)), "exactly one row per window"
    assert all(r.ok for r in stored)


def test_a_missing_input_is_a_usage_error_before_anything_is_written(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    with pytest.raises(MissingInputError, match="missing.mp4"):
        _run([media["video0"], media["missing"]], qwen_config, processor, out)
    assert not out.exists()
    gone = attrs.evolve(qwen_config, model_path=None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLMCAP_MODEL_DIR", str(tmp_path / "no-models"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path / "hf"))
        with pytest.raises(vlmcap.ModelNotFoundError, match=r"VllmConfig\.model_path"):
            list(caption_paths(media["video0"], gone, out=out, progress=False))
    assert not out.exists()


def test_no_resume_starts_afresh(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    _run([media["video0"], media["video1"]], qwen_config, processor, out)
    rows, engine = _run([media["video0"]], qwen_config, processor, out, resume=False)
    assert len(engine.added) == len(rows)
    assert _keys(read_rows(out)) == _keys(rows)


def test_a_torn_last_line_is_cut_and_redone(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    full, _ = _run([media["video1"]], qwen_config, processor, out)
    data = out.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    out.write_bytes(data[: last + 25])  # the kill hit in the middle of the last row
    rows, engine = _run([media["video1"]], qwen_config, processor, out)
    assert len(engine.added) == 1
    assert out.read_bytes().endswith(b"\n")
    assert sorted(_keys(read_rows(out))) == sorted(_keys(full))
    assert _keys(rows) == _keys(full)


def test_a_malformed_row_before_the_end_stops_the_run(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    out.write_text('{"not": "a row"}\n{"also": 1}\n')
    with pytest.raises(SinkError, match=r"rows.jsonl:1: not a vlmcap result row"):
        open_sink(out)


def _row(source: str, index: int, fingerprint: str = "f") -> WindowCaption:
    return WindowCaption.file_error(source, "boom", fingerprint) if index < 0 else WindowCaption(
        source, index, 3, float(index), index + 1.0, 4, "a caption", vlmcap.CaptionStatus.SUCCESS,
        "stop", 10, 5, None, fingerprint,
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_sinks_refuse_duplicates_and_a_second_writer(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"rows{suffix}"
    sink = open_sink(out)
    try:
        sink.append([_row("/a.mp4", 0), _row("/a.mp4", 1)])
        with pytest.raises(SinkError, match="already holds a row for /a.mp4 window 1"):
            sink.append([_row("/a.mp4", 2), _row("/a.mp4", 1)])
        with pytest.raises(SinkError, match="being written by another run"):
            open_sink(out)
        sink.append([_row("/a.mp4", 1, "other-settings"), _row("/a.mp4", 2)])
    finally:
        sink.close()
    again = open_sink(out)
    try:
        assert [r.key for r in again.existing] == [
            ("/a.mp4", 0, "f"), ("/a.mp4", 1, "f"), ("/a.mp4", 1, "other-settings"),
            ("/a.mp4", 2, "f"),
        ]
        assert all(r.resumed for r in again.existing)
    finally:
        again.close()


def test_parquet_output_is_a_folder_of_atomic_parts(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.parquet"
    inputs = [media["video0"], media["empty"], media["video1"]]
    rows, _ = _run(inputs, qwen_config, processor, out, batch_windows=2)
    assert out.is_dir()
    table = pq.read_table(out)
    assert table.num_rows == len(rows)
    assert sorted(table.column("window_index").to_pylist()) == sorted(r.window_index for r in rows)
    (out / ".part-000099.parquet.tmp").write_bytes(b"half a part")  # a kill mid-write
    again, engine = _run(inputs, qwen_config, processor, out)
    assert engine.added == []
    assert [attrs.evolve(r, resumed=False) for r in again] == rows
    assert not list(out.glob(".part-*")), "stale temporary parts are removed"
    (tmp_path / "file.parquet").write_bytes(b"x")
    with pytest.raises(SinkError, match="is a file"):
        open_sink(tmp_path / "file.parquet")


def test_unknown_output_suffix(tmp_path: Path) -> None:
    with pytest.raises(vlmcap.ConfigError, match="use .jsonl or .parquet"):
        open_sink(tmp_path / "rows.csv")


def test_a_window_whose_inputs_fail_is_an_error_row_alone(
    media: dict[str, Path], qwen_config: Any, processor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = vlmcap.make_model_inputs

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise vlmcap.FrameContractError("videos[0]", "frames", "nothing")
        return real(*args, **kwargs)

    monkeypatch.setattr(items, "make_model_inputs", flaky)
    rows, _ = _run([media["video1"]], qwen_config, processor)
    assert [r.ok for r in rows] == [i != 1 for i in range(len(rows))]
    assert rows[1].error is not None
    assert "FrameContractError" in rows[1].error


def test_stopping_early_releases_the_output(
    media: dict[str, Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    gen = caption_paths(
        [media["video2"], media["video1"]], qwen_config, llm=FakeEngine(), processor=processor,
        out=out, settings=SETTINGS, progress=False, batch_windows=1,
    )
    first = next(gen)
    gen.close()
    assert first.window_index == 0
    open_sink(out).close()  # not locked any more


def test_expand_inputs(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / ".hidden").mkdir()
    names = ["d/b.mp4", "d/A.MOV", "d/sub/c.png", "d/.x.mp4", "d/.hidden/y.mp4", "d/n.txt",
             "d/sub/notes.TXT", "d/meta.json", "d/README"]
    for name in names:
        empty_list = name.lower().endswith(".txt")
        (tmp_path / name).write_bytes(b"# an empty list\n" if empty_list else b"x")
    (tmp_path / "e.mp4").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\n\nd/b.mp4\n" + str(tmp_path / "e.mp4") + "\nd/sub\n")
    scan = scan_inputs([tmp_path / "d", listing, tmp_path / "d/b.mp4", tmp_path / "d/n.txt"])
    got = expand_inputs([tmp_path / "d", listing, tmp_path / "d/b.mp4", tmp_path / "d/n.txt"])
    assert list(scan.files) == got
    rel = [p.relative_to(tmp_path).as_posix() for p in got]
    assert rel == ["d/A.MOV", "d/b.mp4", "d/sub/c.png", "e.mp4"], "a listed .txt is a list"
    assert all(p.is_absolute() for p in got)
    # what a folder scan leaves out is counted by kind (twice: d/sub is scanned via the list too)
    assert scan.skipped == {".txt": 3, ".json": 1, "(none)": 1}
    assert scan.describe_skipped() == "5 files (.txt 3, (none) 1, .json 1)"
    with pytest.raises(MissingInputError) as missing:
        expand_inputs([tmp_path / "d", tmp_path / "gone.webm", tmp_path / "nosuchdir"])
    assert missing.value.missing == (tmp_path / "gone.webm", tmp_path / "nosuchdir")


_CHILD = textwrap.dedent(
    """
    import sys, time
    import vlmcap
    from vlmcap.testing._fake import FakeEngine, default_text
    from vlmcap.video import WindowSettings, caption_paths

    out, model_path, *inputs = sys.argv[1:]
    config = vlmcap.VllmConfig(model_variant="qwen", model_path=model_path, max_model_len=4096)

    def slow_text(inputs):
        time.sleep(0.03)
        return default_text(inputs)

    settings = WindowSettings(window_size=16, remainder_threshold=8)
    for _ in caption_paths(inputs, config, llm=FakeEngine(text=slow_text), out=out,
                           settings=settings, batch_windows=2, progress=False):
        pass
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_sigkill_at_random_moments_then_resume_gives_each_window_once(
    media: dict[str, Path], tiny_qwen: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"rows{suffix}"
    inputs = [str(media[k]) for k in ("video0", "corrupt", "video1", "video2", "image")]
    cmd = [sys.executable, "-c", _CHILD, str(out), str(tiny_qwen), *inputs]
    rng = random.Random(1234)
    kills = 0
    for _attempt in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(_safe_rows(out)) < 2:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert proc.returncode in (0, -signal.SIGKILL), err
    assert kills >= 1, "the run finished before any kill; slow the fake engine down"
    done = subprocess.run(cmd, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    rows = read_rows(out)
    counts = Counter(r.key for r in rows)
    assert max(counts.values()) == 1, "no window twice"
    settings = WindowSettings(window_size=16, remainder_threshold=8)
    expected = {
        (s, i)
        for s in inputs
        if not s.endswith("corrupt.mp4")
        for i in range(len(plan_media(probe(s), settings)))
    } | {(str(media["corrupt"]), FILE_ROW_INDEX)}
    assert {(r.source, r.window_index) for r in rows} == expected, "no window lost"


def _safe_rows(out: Path) -> list[WindowCaption]:
    try:
        return read_rows(out)
    except (OSError, ValueError, json.JSONDecodeError):
        return []


def test_a_dead_engine_is_rebuilt_and_every_window_still_captioned(
    media: dict[str, Path], qwen_config: Any, processor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job passes a rebuild to caption_results: when its engine dies mid-batch, a new one
    (from ``vllm_model``) finishes the unfinished windows; nothing is lost or doubled."""
    import vlmcap.video._job as job

    fresh: list[FakeEngine] = []

    def build(_config: Any) -> FakeEngine:
        fresh.append(FakeEngine())
        return fresh[-1]

    monkeypatch.setattr(job, "vllm_model", build)
    stopped: list[Any] = []
    monkeypatch.setattr(_captioner, "shutdown_llm", stopped.append)
    dying = FakeEngine(steps=lambda _id, _inp: 2, die_after=1)
    rows = list(
        caption_paths(
            [media["video1"]], qwen_config, llm=dying, processor=processor,
            progress=False, settings=SETTINGS, batch_windows=64,
        )
    )
    assert dying.dead and len(fresh) == 1
    assert [r.window_index for r in rows] == list(range(_expected_windows(media["video1"])))
    assert all(r.ok for r in rows), [r.error for r in rows if not r.ok]
    assert len(fresh[0].added) == len(rows)  # everything was unfinished when the engine died
    # one engine owner: the lost engine is shut down at the rebuild, the job's own at its end
    assert stopped == [dying, fresh[0]]


def test_a_callers_engine_is_left_running(
    media: dict[str, Path], qwen_config: Any, processor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[Any] = []
    monkeypatch.setattr(_captioner, "shutdown_llm", stopped.append)
    engine = FakeEngine()
    rows = list(
        caption_paths(
            media["video0"], qwen_config, llm=engine, processor=processor, progress=False,
            settings=SETTINGS,
        )
    )
    assert rows and all(r.ok for r in rows)
    assert stopped == [], "the caller's engine is the caller's"


def test_the_engine_stays_full_across_files_and_rows_keep_input_order(
    media: dict[str, Path], qwen_config: Any, processor: Any
) -> None:
    """Windows of later files join the engine while earlier ones run (no drain per batch)."""
    inputs = [media["video0"], media["video1"], media["video2"]]
    per_file = [_expected_windows(p) for p in inputs]
    limit = max(per_file) + 1
    assert limit < sum(per_file)
    total = sum(per_file)

    class UntilFull(FakeEngine):
        """Finishes nothing until it holds ``limit`` requests or every window came in, so the
        test does not depend on how fast the decode thread runs."""

        def step(self) -> Any:
            if self.inflight < limit and len(self.added) < total:
                time.sleep(0.001)
                return []
            return super().step()

    engine = UntilFull(steps=lambda _id, inp: 2 + len(str(inp)) % 5)  # out-of-order finishes
    rows = list(
        caption_paths(
            inputs, qwen_config, llm=engine, processor=processor, progress=False,
            settings=SETTINGS, max_inflight=limit,
        )
    )
    assert engine.peak_inflight == limit  # more than any one file holds: files overlap
    assert [(r.source, r.window_index) for r in rows] == [
        (str(p), i) for p, n in zip(inputs, per_file, strict=True) for i in range(n)
    ]
    assert all(r.ok for r in rows), rows


def test_the_progress_rate_leaves_engine_start_up_out(
    media: dict[str, Path], qwen_config: Any, processor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tqdm

    bars: list[dict[str, float]] = []

    class Bar(tqdm.tqdm):  # type: ignore[misc]  # tqdm ships no types
        def close(self) -> None:
            if self.unit == "file":  # the job's bar (not vLLM's or a loader's)
                bars.append({"elapsed": self._time() - self.start_t, "n": self.n})
            super().close()

    def slow_engine(_config: Any) -> FakeEngine:
        time.sleep(2.0)  # engine start-up
        return FakeEngine()

    monkeypatch.setattr(_job, "tqdm", Bar)
    monkeypatch.setattr(_job, "vllm_model", slow_engine)
    t0 = time.monotonic()
    rows = list(
        caption_paths(
            media["video0"], qwen_config, processor=processor, settings=SETTINGS, progress=True
        )
    )
    wall = time.monotonic() - t0
    assert rows and all(r.ok for r in rows)
    bar = bars[0]  # (close() runs twice: the job's and tqdm's own at exit)
    assert bar["n"] == 1
    assert bar["elapsed"] <= wall - 1.9, "the bar's clock (rate, ETA) starts after the engine"
