"""``vlmcap`` as a user meets it, without an engine: usage errors, help, logs, small outputs."""

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import vlmcap
from vlmcap import cli
from vlmcap.testing._samples import sample_videos
from vlmcap.video import ROW_DOCS, JobStats, WindowCaption, read_rows
from vlmcap.video._results import ROW_FIELDS


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (video,) = sample_videos(tmp_path_factory.mktemp("clip"), n=1)
    return video


def _caption(clip: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["caption", str(clip), "--out", str(out), "--model", "qwen",
            "--model-path", str(model), "--no-progress", *extra]


def test_a_missing_input_is_a_usage_error_and_nothing_is_written(
    tmp_path: Path, tiny_qwen: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.jsonl"
    argv = _caption(clip, out, tiny_qwen)
    argv[1:2] = [str(tmp_path / "nosuchdir"), str(clip), str(tmp_path / "gone.mp4")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "2 input path(s) do not exist" in err
    assert "nosuchdir" in err
    assert "gone.mp4" in err
    assert not out.exists()


def test_a_missing_model_is_named_by_its_option_before_any_progress(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VLMCAP_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "o.jsonl"
    argv = ["caption", str(clip), "--out", str(out), "--model", "qwen"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--model-path DIR" in err
    assert "VllmConfig" not in err, "the command speaks of its options, not config fields"
    assert "file/s" not in err, "found before the progress bar starts"
    assert not out.exists()
    assert cli.main([*argv, "--model-path", str(tmp_path / "nope")]) == 2
    assert "--model-path" in capsys.readouterr().err


def test_other_settings_in_the_output_are_refused_with_the_flags_to_use(
    tmp_path: Path, tiny_qwen: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.jsonl"
    old = WindowCaption.file_error(str(clip), "x", "0123456789abcdef")
    out.write_text(json.dumps(old.to_row()) + "\n")
    assert cli.main(_caption(clip, out, tiny_qwen)) == 2
    err = capsys.readouterr().err
    assert "fingerprint 0123456789abcdef (1 rows)" in err
    assert "--alongside" in err
    assert "--replace" in err
    assert [r.fingerprint for r in read_rows(out)] == ["0123456789abcdef"], "nothing written"


def test_summary_counts_and_says_how_to_retry() -> None:
    stats = JobStats(files=3, fingerprint="abc", other_rows=4, elapsed_s=0.01)
    stats.resumed.update({"success": 5, "error": 2})
    text = cli._caption_summary(stats, "o.jsonl")
    assert "fingerprint abc" in text
    assert "files/s" not in text, "no rate for a run that captioned nothing"
    assert "nothing left to caption" in text
    assert "4 rows of other fingerprints" in text
    assert "error rows: 2" in text
    assert "--retry-errors" in text
    busy = JobStats(files=3, windows_captioned=6, caption_s=2.0, elapsed_s=4.0)
    busy.rows.update({"success": 6})
    text = cli._caption_summary(busy, "o.jsonl")
    assert "3.00 clips (windows)/s" in text
    assert "--retry-errors" not in text


def _all_help() -> str:
    parser = cli.build_parser()
    texts = [parser.format_help()]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    texts += [p.format_help() for p in sub.choices.values()]
    return "\n".join(texts)


def test_help_is_plain_text_and_documents_every_column() -> None:
    text = _all_help()
    for markup in ("``", ":func:", ":class:", ":data:", ":meth:"):
        assert markup not in text, f"reStructuredText {markup} in --help"
    caption = cli.build_parser().parse_args(["caption", "x", "--model", "q", "--out", "o.jsonl"])
    assert caption.max_tokens == cli.DEFAULT_MAX_TOKENS == 512
    assert set(ROW_DOCS) == set(ROW_FIELDS), "every stored column is documented"
    flat = " ".join(text.split())
    for name, doc in ROW_DOCS.items():
        assert name in text
        assert " ".join(doc.split()) in flat, name
    for prompt in vlmcap.PROMPTS:
        assert prompt in text, "named prompts are listed in --help"


def test_version_plugins_and_prompts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    version = importlib.metadata.version("vlmcap")
    assert capsys.readouterr().out.strip() == f"vlmcap {version}"
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    line = r"^qwen\s+vlmcap\.plugins\.qwen:VllmQwen7B\s+Qwen/Qwen2\.5-VL"
    assert re.search(line, out, re.MULTILINE)
    assert cli.main(["prompts"]) == 0
    out = capsys.readouterr().out
    for name, text in vlmcap.PROMPTS.items():
        assert f"{name}:\n  {text}" in out


def test_download_dry_run_says_where_and_how_caption_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VLMCAP_MODEL_DIR", raising=False)
    assert cli.main(["download", "qwen", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Hugging Face cache" in out
    assert "no --model-path needed" in out
    assert cli.main(["download", "qwen", "--dry-run", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"VLMCAP_MODEL_DIR={tmp_path}" in out
    assert f"--model-path {tmp_path / 'Qwen/Qwen2.5-VL-7B-Instruct'}" in out
    assert not any(tmp_path.iterdir())


def test_times_have_no_float_noise() -> None:
    row = WindowCaption.file_error("a", "e", "f")
    import attrs

    noisy = attrs.evolve(row, start_s=0.1 + 0.2, end_s=4.0040000000000004)
    assert (noisy.start_s, noisy.end_s) == (0.3, 4.004)
    assert json.dumps(noisy.to_row()).count("4.004,") == 1


_LOGS = (
    "import logging, sys, warnings; from vlmcap.cli import quiet_third_party; "
    "quiet_third_party(int(sys.argv[1])); import vllm, transformers; "
    "log = logging.getLogger('vllm.test'); log.info('INFO-MARK'); log.warning('WARN-MARK'); "
    "log.error('ERROR-MARK'); warnings.warn('PY-WARNING-MARK', stacklevel=1); "
    "transformers.logging.get_logger('transformers.test').warning('TF-WARN-MARK'); "
    "print('ours')"
)


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [0, 1])
def test_third_party_logs_stay_off_stdout_and_quiet_unless_verbose(verbose: int) -> None:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("VLLM_", "TRANSFORMERS_", "TORCH_", "PYTHONWARNINGS"))
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOGS, str(verbose)],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    )
    assert done.stdout == "ours\n", "nothing of vLLM's on stdout"
    assert "ERROR-MARK" in done.stderr
    for mark in ("INFO-MARK", "WARN-MARK", "TF-WARN-MARK", "PY-WARNING-MARK"):
        assert (mark in done.stderr) == bool(verbose), mark
    if not verbose:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert lines == [ln for ln in lines if "ERROR" in ln], "only errors by default"


def test_dev_run_keeps_the_callers_directory(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("here")
    code = "import os; print(os.getcwd()); print(open('mine.txt').read())"
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "dev"), "run", "python", "-c", code],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=True,
    )
    assert done.stdout.split() == [str(tmp_path), "here"]


def test_input_order_of_skipped_kinds_is_reported(
    tmp_path: Path, tiny_qwen: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("notes.txt", "meta.json", "b.json"):
        (folder / name).write_text("{}")
    out = tmp_path / "o.jsonl"
    argv = _caption(clip, out, tiny_qwen)
    argv[1] = str(folder)
    assert cli.main(argv) == 2, "a folder of no media is a usage error"
    assert "hold no media files" in capsys.readouterr().err
    (folder / "bad.mp4").write_bytes(b"not a video")
    assert cli.main(argv) == 1, "the one media file is an error row"
    err = capsys.readouterr().err
    assert "skipping what is not media in the folders: 3 files (.json 2, .txt 1)" in err
    assert Counter(r.status.value for r in read_rows(out)) == {"error": 1}


def test_every_bench_option_is_described(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.ArgumentParser] = []

    def capture(self: argparse.ArgumentParser, *_a: object, **_k: object) -> None:
        seen.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    (parser,) = seen
    assert parser.description is not None
    assert "``" not in parser.description
    undescribed = [a.dest for a in parser._actions if not a.help]
    assert undescribed == []
