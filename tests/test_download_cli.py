"""``vlmcap download``: its plan and its error paths, offline (no hub is reachable here)."""

from pathlib import Path

import pytest

from vlmcap import MODEL_IDS
from vlmcap.cli import main


def test_dry_run_prints_the_pinned_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download", "qwen", "--dest", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    entry = MODEL_IDS["qwen"]
    assert f"{entry.repo_id}@{entry.revision}" in out
    assert str(tmp_path / entry.repo_id) in out
    assert not any(tmp_path.iterdir())  # nothing fetched


def test_destination_defaults_to_the_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VLMCAP_MODEL_DIR", str(tmp_path))
    assert main(["download", "cosmos_r1", "--dry-run"]) == 0
    assert str(tmp_path / "nvidia/Cosmos-Reason1-7B") in capsys.readouterr().out


def test_errors_are_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VLMCAP_MODEL_DIR", raising=False)
    assert main(["download", "qwen", "--dry-run"]) == 0  # no --dest: the Hugging Face cache
    assert "Hugging Face cache" in capsys.readouterr().out
    assert main(["download", "nope", "--dest", str(tmp_path)]) == 2
    assert "unknown model id variant 'nope'" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["download", "qwen", "--dest", str(tmp_path)]) == 1
    assert "download of Qwen/Qwen2.5-VL-7B-Instruct failed" in capsys.readouterr().err
