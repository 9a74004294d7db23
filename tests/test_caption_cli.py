"""``vlmcap caption`` end to end on the real vLLM engine (CPU here) with the tiny checkpoint.

One module-scoped scenario pays for two engine starts: run A is SIGKILLed (the command alone,
as ``kill -9 PID`` does) once rows are being written, and its engine processes must die with
it; run B resumes it to the end; run C, a re-run of a finished job, must not start an engine
at all. Two more runs are stopped mid-generation by SIGTERM and by Ctrl-C. Usage errors need
no engine.
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
BROKEN_KINDS = ("corrupt", "empty", "no_video", "no_frames", "unsupported", "too_short")


@attrs.frozen
class Run:
    returncode: int
    stderr: str
    seconds: float
    stdout: str = ""


@attrs.frozen
class Scenario:
    out: Path
    videos: tuple[Path, ...]
    image: Path
    broken: dict[str, Path]
    cmd: tuple[str, ...]
    rows_after_kill: int
    engine_pids: tuple[int, ...]
    left_after_kill: tuple[int, ...]
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


def _group(pgid: int) -> list[int]:
    """Live processes of a process group (zombies excluded)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(proc.name))
    return found


def _deaf_to_sigint(pid: int) -> bool:
    """Whether the process blocks or ignores SIGINT (``SigBlk``/``SigIgn`` in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = [int(ln.split()[1], 16) for ln in status.splitlines()
             if ln.startswith(("SigBlk:", "SigIgn:"))]
    return any(mask & (1 << (signal.SIGINT - 1)) for mask in masks)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _left_after(pgid: int, seconds: float = 15.0) -> list[int]:
    """The group's processes still alive after waiting up to ``seconds`` for them to go."""
    deadline = time.monotonic() + seconds
    while (left := _group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _run(cmd: list[str]) -> Run:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    return Run(done.returncode, done.stderr, time.monotonic() - t0, done.stdout)


def _foreground_signals() -> None:
    """In the child: Ctrl-C as in a terminal's foreground job.

    A test run started in the background of a script (``cmd &``) inherits SIGINT ignored, and
    Python keeps an inherited SIG_IGN, so the command would never see the Ctrl-C it is sent.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(cmd: list[str], log: Path) -> "subprocess.Popen[bytes]":
    """Start the command in its own process group (its engine processes join the group)."""
    with log.open("wb") as err:
        return subprocess.Popen(
            cmd,
            stdout=err,
            stderr=err,
            start_new_session=True,
            preexec_fn=_foreground_signals,  # noqa: PLW1509 - only a signal reset, no threads
        )


def _wait_for_rows(proc: "subprocess.Popen[bytes]", out: Path, n: int, log: Path) -> None:
    deadline = time.monotonic() + 400
    while proc.poll() is None and _caption_rows(out) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail(
            f"the run ended (status {proc.returncode}) before it was stopped:\n"
            + log.read_text(errors="replace")[-3000:]
        )


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, tiny_qwen: Path) -> Scenario:
    root = tmp_path_factory.mktemp("cli")
    videos = tuple(sample_videos(root / "videos", n=3))
    image = sample_image(root / "still.png")
    broken = broken_media(root / "broken")
    out = root / "out" / "captions.jsonl"
    inputs = [root / "videos", image, *(broken[k] for k in (*BROKEN_KINDS, "truncated"))]
    cmd = _command(inputs, out, tiny_qwen)

    # Run A: `kill -9` of the command alone once captions are being written. One window in
    # flight, so rows arrive one by one: with the default depth a fast engine (vLLM 0.26 here)
    # finishes every window in one burst and the kill would land after the last row.
    log = root / "run-a.log"
    proc = _start([*cmd, "--max-inflight", "1"], log)
    try:
        _wait_for_rows(proc, out, 2, log)
        engine_pids = tuple(p for p in _group(proc.pid) if p != proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = tuple(_left_after(proc.pid))
    finally:
        if _group(proc.pid):  # never leak engines into the rest of the suite
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rows_after_kill = _caption_rows(out)

    resumed = _run(cmd)  # run B
    before = out.read_bytes()
    rerun = _run(cmd)  # run C
    return Scenario(
        out, videos, image, broken, tuple(cmd), rows_after_kill, engine_pids, left, resumed,
        rerun, before,
    )


def _expected_keys(s: Scenario) -> set[tuple[str, int]]:
    keys = {
        (str(v), i) for v in s.videos for i in range(len(plan_media(probe(v), SETTINGS)))
    }
    keys.add((str(s.image), 0))
    cut = s.broken["truncated"]
    keys |= {(str(cut), i) for i in range(len(plan_media(probe(cut), SETTINGS)))}
    keys |= {(str(s.broken[k]), FILE_ROW_INDEX) for k in BROKEN_KINDS}
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


@pytest.mark.engine
@pytest.mark.slow
def test_kill_9_of_the_command_takes_its_engine_processes_with_it(scenario: Scenario) -> None:
    assert scenario.engine_pids, "vLLM's engine ran in processes of the command's group"
    assert scenario.left_after_kill == (), "no engine process outlives `kill -9` of the job"


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
            assert (r.caption or "").strip()
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
        assert row.caption is None
        assert row.error is not None
        assert f"({kind})" in row.error
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
    assert "re-run with --retry-errors" in b.stderr
    assert b.stdout == "", "nothing on stdout: no vLLM logs there"
    noise = [ln for ln in b.stderr.splitlines() if re.search(r"\bINFO\b|\bDEBUG\b", ln)]
    assert noise == [], "third-party logs are at WARNING unless -v"
    assert "Traceback" not in b.stderr


@pytest.mark.engine
@pytest.mark.slow
def test_a_rerun_of_a_finished_job_is_a_no_op(scenario: Scenario, tiny_qwen: Path) -> None:
    c = scenario.rerun
    assert c.returncode == 1, "earlier error rows still fail the job"
    assert scenario.out.read_bytes() == scenario.bytes_before_rerun
    rows = read_rows(scenario.out)
    assert f"from earlier runs: {len(rows)} " in c.stderr
    assert "engine start 0.0 s" in c.stderr, "no engine is started when nothing is left"
    assert "files/s" not in c.stderr, "no rate for a run that captioned nothing"
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
    assert cli.main(["caption", str(clip), "--out", str(tmp_path / "o.csv"), *mp]) == 2
    (tmp_path / "empty-dir").mkdir()
    empty = ["caption", str(tmp_path / "empty-dir"), "--out", str(tmp_path / "e.jsonl"), *mp]
    assert cli.main(empty) == 2
    for bad in (
        [*base, *mp, "--prompt-variant", "no-such-prompt"],
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
    gone = tmp_path / "bad.mp4"
    gone.write_bytes(b"not a video")
    args = ["caption", str(gone), "--out", str(out), "--model", "qwen"]
    assert cli.main([*args, "--model-path", str(tiny_qwen), "--no-progress"]) == 1
    (row,) = read_rows(out)
    assert (row.source, row.window_index, row.ok) == (str(gone), FILE_ROW_INDEX, False)


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_sigterm_and_ctrl_c_stop_cleanly_mid_generation(
    how: str, tmp_path: Path, tiny_qwen: Path
) -> None:
    """One line, the conventional status, rows saved, no engine process left."""
    videos = sample_videos(tmp_path / "videos", n=3)
    out = tmp_path / "o.jsonl"
    cmd = [*_command(videos, out, tiny_qwen), "--max-inflight", "1"]
    cmd[cmd.index("--max-tokens") + 1] = "300"
    log = tmp_path / "run.log"
    proc = _start(cmd, log)
    try:
        _wait_for_rows(proc, out, 1, log)
        engine = [p for p in _group(proc.pid) if p != proc.pid]
        assert engine, "the engine is running"
        # Ctrl-C reaches the command only: its engine processes start with SIGINT blocked
        # (or ignore it, as multiprocessing's resource tracker and vlmcap's reaper do)
        assert [_cmdline(p) for p in engine if not _deaf_to_sigint(p)] == []
        assert not _deaf_to_sigint(proc.pid)
        if how == "SIGTERM":
            os.kill(proc.pid, signal.SIGTERM)  # `kill PID`: the command alone
        else:
            os.killpg(proc.pid, signal.SIGINT)  # a terminal sends Ctrl-C to the whole group
        code = proc.wait(timeout=120)
        left = _left_after(proc.pid)
    finally:
        if _group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    err = log.read_text(errors="replace")
    assert code == (143 if how == "SIGTERM" else 130), err[-3000:]
    assert left == [], "the engine was shut down"
    assert "Traceback" not in err, err[-3000:]
    (line,) = [ln for ln in err.splitlines() if "interrupted" in ln]
    saved = int(re.search(r"interrupted; (\d+) rows saved", line).group(1))  # type: ignore[union-attr]
    assert saved == len(read_rows(out)) >= 1
    assert "re-run the same command to resume" in line


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
