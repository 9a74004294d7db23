"""``vlmcap caption`` end to end on the real vLLM engine (CPU here) with the tiny checkpoint.

One module-scoped scenario pays for two engine starts: run A is SIGKILLed (with its engine
processes) once rows are being written; run B resumes it to the end; run C, a re-run of a
finished job, must not start an engine at all. Usage errors need no engine.
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

import vlmcap
from vlmcap import cli
from vlmcap.testing._samples import broken_media, sample_image, sample_videos
from vlmcap.video import (
    FILE_ROW_INDEX,
    WindowCaption,
    WindowSettings,
    caption_paths,
    plan_media,
    probe,
    read_rows,
)


WINDOW_SIZE = 16
SETTINGS = WindowSettings(window_size=WINDOW_SIZE, remainder_threshold=WINDOW_SIZE // 2)
SHM = "/dev/shm"  # noqa: S108 - where vLLM's shared memory lives (cleaned after a kill)
BROKEN_KINDS = ("corrupt", "empty", "no_video", "no_frames", "unsupported", "too_short")


@attrs.frozen
class Run:
    returncode: int
    stderr: str
    seconds: float


@attrs.frozen
class Scenario:
    out: Path
    videos: tuple[Path, ...]
    image: Path
    broken: dict[str, Path]
    missing: Path
    cmd: tuple[str, ...]
    rows_after_kill: int
    resumed: Run
    rerun: Run
    bytes_before_rerun: bytes


def _command(inputs: list[Path], out: Path, model_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "vlmcap.cli", "caption", *map(str, inputs),
        "--model", "qwen", "--model-path", str(model_path), "--out", str(out),
        "--max-tokens", "24", "--max-model-len", "4096", "--window-size", str(WINDOW_SIZE),
        "--batch-windows", "1",
    ]


def _caption_rows(out: Path) -> int:
    try:
        return sum(1 for r in read_rows(out) if r.frames > 0)
    except (OSError, ValueError):
        return 0


def _shm_in_use() -> set[Path]:
    """Shared-memory files that some live process maps or holds open."""
    used: set[Path] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            maps = (proc / "maps").read_text()
            fds = [str(fd.readlink()) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        used |= {Path(line.split()[-1]) for line in maps.splitlines() if f" {SHM}/" in line}
        used |= {Path(fd) for fd in fds if fd.startswith(f"{SHM}/")}
    return used


def _kill_group(proc: "subprocess.Popen[bytes]", shm_before: set[Path]) -> None:
    """SIGKILL the command and its engine processes, then remove the shared memory they leaked.

    Only files that appeared since ``shm_before`` and that no live process uses are removed.
    """
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # let the kernel reap the group's processes
    for path in set(Path(SHM).glob("*")) - shm_before - _shm_in_use():
        path.unlink(missing_ok=True)


def _run(cmd: list[str]) -> Run:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    return Run(done.returncode, done.stderr, time.monotonic() - t0)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, tiny_qwen: Path) -> Scenario:
    root = tmp_path_factory.mktemp("cli")
    videos = tuple(sample_videos(root / "videos", n=3))
    image = sample_image(root / "still.png")
    broken = broken_media(root / "broken")
    missing = root / "missing.mp4"
    out = root / "out" / "captions.jsonl"
    inputs = [root / "videos", image, *(broken[k] for k in (*BROKEN_KINDS, "truncated")), missing]
    cmd = _command(inputs, out, tiny_qwen)

    # Run A: SIGKILL the command and its engine processes once captions are being written.
    shm_before = set(Path(SHM).glob("*"))
    log = root / "run-a.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 400
        while proc.poll() is None and _caption_rows(out) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        finished_early = proc.poll() is not None
    finally:
        if proc.poll() is None:
            _kill_group(proc, shm_before)
        proc.wait()
    assert not finished_early, (
        f"run A ended (status {proc.returncode}) before it was killed:\n"
        + log.read_text(errors="replace")[-3000:]
    )
    rows_after_kill = _caption_rows(out)

    resumed = _run(cmd)  # run B
    before = out.read_bytes()
    rerun = _run(cmd)  # run C
    return Scenario(
        out, videos, image, broken, missing, tuple(cmd), rows_after_kill, resumed, rerun, before
    )


def _expected_keys(s: Scenario) -> set[tuple[str, int]]:
    keys = {
        (str(v), i) for v in s.videos for i in range(len(plan_media(probe(v), SETTINGS)))
    }
    keys.add((str(s.image), 0))
    cut = s.broken["truncated"]
    keys |= {(str(cut), i) for i in range(len(plan_media(probe(cut), SETTINGS)))}
    keys |= {(str(s.broken[k]), FILE_ROW_INDEX) for k in BROKEN_KINDS}
    keys.add((str(s.missing), FILE_ROW_INDEX))
    return keys


@pytest.mark.engine
@pytest.mark.slow
def test_kill_and_resume_leaves_exactly_one_row_per_window(scenario: Scenario) -> None:
    rows = read_rows(scenario.out)
    counts = Counter(r.key for r in rows)
    assert counts.most_common(1)[0][1] == 1, "no window written twice"
    assert {(r.source, r.window_index) for r in rows} == _expected_keys(scenario), "none lost"
    total_windows = sum(1 for r in rows if r.frames > 0)
    assert 0 < scenario.rows_after_kill < total_windows, "run A was killed part-way"
    earlier = _summary_counts(scenario.resumed.stderr)["earlier"]
    assert scenario.rows_after_kill <= earlier < len(rows), "run B kept run A's rows"
    assert len({r.fingerprint for r in rows}) == 1


def _summary_counts(stderr: str) -> dict[str, int]:
    """Parse "this run: success a, truncated b, error c; from earlier runs: n (...)"."""
    line = next(ln for ln in stderr.splitlines() if "from earlier runs:" in ln)
    this_run, earlier = line.split(";")
    counts = {
        name: int(n) for name, n in re.findall(r"(success|truncated|error) (\d+)", this_run)
    }
    pattern = r"from earlier runs: (\d+) \(success (\d+), truncated (\d+), error (\d+)\)"
    m = re.search(pattern, earlier)
    assert m is not None, line
    counts["earlier"] = int(m.group(1))
    counts["earlier_error"] = int(m.group(4))
    return counts


@pytest.mark.engine
@pytest.mark.slow
def test_captions_and_error_rows(scenario: Scenario) -> None:
    rows = read_rows(scenario.out)
    by_source: dict[str, list[WindowCaption]] = {}
    for r in sorted(rows, key=lambda r: (r.source, r.window_index)):
        by_source.setdefault(r.source, []).append(r)
    for video in scenario.videos:
        got = by_source[str(video)]
        assert [r.window_index for r in got] == list(range(got[0].num_windows))
        assert got[0].start_s == 0.0
        assert got[-1].end_s == pytest.approx(probe(video).total_frames / probe(video).native_fps)
        for r in got:
            assert r.ok, r.error
            assert r.caption.strip()
            assert r.prompt_tokens > 0
            assert 0 < r.output_tokens <= 24
            assert r.finish_reason in ("stop", "length")
            assert r.frames >= 4
            assert r.frames % 2 == 0
    (still,) = by_source[str(scenario.image)]
    assert (still.ok, still.frames, still.window_index) == (True, 2, 0)
    for kind in BROKEN_KINDS:
        (row,) = by_source[str(scenario.broken[kind])]
        assert row.status is vlmcap.CaptionStatus.ERROR
        assert row.error is not None
        assert f"({kind})" in row.error
    (gone,) = by_source[str(scenario.missing)]
    assert gone.error is not None
    assert "(missing)" in gone.error
    cut = by_source[str(scenario.broken["truncated"])]
    assert cut[0].ok
    assert not cut[-1].ok
    assert cut[-1].error is not None
    assert "(truncated)" in cut[-1].error


@pytest.mark.engine
@pytest.mark.slow
def test_exit_status_progress_and_summary(scenario: Scenario) -> None:
    b = scenario.resumed
    assert b.returncode == 1, b.stderr[-3000:]  # the broken files are error rows
    rows = read_rows(scenario.out)
    n_err = sum(1 for r in rows if not r.ok)
    assert "file/s" in b.stderr or "s/file" in b.stderr, "a tqdm progress bar on stderr"
    assert f"vlmcap caption: {len(rows)} windows from" in b.stderr
    assert "output tokens/s" in b.stderr
    assert "clips (windows)/s" in b.stderr
    counts = _summary_counts(b.stderr)
    assert counts["error"] + counts["earlier_error"] == n_err
    assert counts["success"] + counts["truncated"] + counts["error"] + counts["earlier"] == len(
        rows
    )
    assert "error: " in b.stderr, "new error rows are reported as they happen"


@pytest.mark.engine
@pytest.mark.slow
def test_a_rerun_of_a_finished_job_is_a_no_op(scenario: Scenario, tiny_qwen: Path) -> None:
    c = scenario.rerun
    assert c.returncode == 1, "earlier error rows still fail the job"
    assert scenario.out.read_bytes() == scenario.bytes_before_rerun
    rows = read_rows(scenario.out)
    assert f"from earlier runs: {len(rows)} " in c.stderr
    assert "engine start 0.0 s" in c.stderr, "no engine is started when nothing is left"
    # Only the good inputs, all captioned already: every window succeeded, so status 0.
    ok_only = _command([*scenario.videos, scenario.image], scenario.out, tiny_qwen)
    assert _run(ok_only).returncode == 0


def test_usage_errors_exit_2(tmp_path: Path, tiny_qwen: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    base = ["caption", str(clip), "--out", str(tmp_path / "o.jsonl")]
    assert cli.main([*base, "--model", "no-such-model"]) == 2
    assert cli.main([*base, "--model", "qwen", "--model-path", str(tmp_path / "nope")]) == 2
    mp = ["--model", "qwen", "--model-path", str(tiny_qwen)]
    assert cli.main([*base, *mp, "--prompt", "   "]) == 2
    assert cli.main([*base, *mp, "--prompt-variant", "no-such-prompt"]) == 2
    assert cli.main(["caption", str(clip), "--out", str(tmp_path / "o.csv"), *mp]) == 2
    (tmp_path / "empty-dir").mkdir()
    empty = ["caption", str(tmp_path / "empty-dir"), "--out", str(tmp_path / "e.jsonl"), *mp]
    assert cli.main(empty) == 2
    for bad in (
        [*base, *mp, "--window-size", "0"],
        [*base, *mp, "--sampling-fps", "nan"],
        [*base, *mp, "--prompt", "a", "--prompt-variant", "default"],
        ["caption", str(clip), *mp],  # no --out
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main(bad)
        assert exc.value.code == 2
    assert cli.main([*base, *mp, "--window-size", "3"]) == 2  # below the 4-frame minimum


def test_a_job_of_only_bad_files_exits_1_without_an_engine(tmp_path: Path, tiny_qwen: Path) -> None:
    out = tmp_path / "o.jsonl"
    gone = tmp_path / "gone.mp4"
    args = ["caption", str(gone), "--out", str(out), "--model", "qwen"]
    assert cli.main([*args, "--model-path", str(tiny_qwen), "--no-progress"]) == 1
    (row,) = read_rows(out)
    assert (row.source, row.window_index, row.ok) == (str(gone), FILE_ROW_INDEX, False)


@pytest.mark.engine
def test_stage2_through_the_python_api(
    qwen_engine: Any, qwen_config: Any, tmp_path: Path
) -> None:
    """Stage 2 on the session's engine: two stages' tokens are summed into each row."""
    llm, processor, _params = qwen_engine
    (video,) = sample_videos(tmp_path, n=1)
    config = attrs.evolve(qwen_config, max_output_tokens=16)
    one = list(
        caption_paths(video, config, llm=llm, processor=processor, progress=False)
    )
    two = list(
        caption_paths(
            video, attrs.evolve(config, stage2_caption=True), llm=llm, processor=processor,
            progress=False,
        )
    )
    assert [r.window_index for r in one] == [r.window_index for r in two] == [0]
    assert one[0].ok, one[0].error
    assert two[0].ok, two[0].error
    assert two[0].prompt_tokens > 2 * one[0].prompt_tokens, "stage 2 re-reads video + caption"
    assert two[0].output_tokens > one[0].output_tokens
    assert one[0].fingerprint != two[0].fingerprint
