"""``vlmcap check``: exit 0 for a good plugin, 1 with the broken rule's ID for each bad one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.reference_plugins import bad
from vlmcap.cli import main
from vlmcap.testing import tiny_checkpoint


ROOT = Path(__file__).resolve().parent.parent.parent
VIDEOLLAMA = "contracts.reference_plugins.videollama:VllmVideoLLaMA"


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", *args])
    return code, capsys.readouterr().out


def test_videollama_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(capsys, VIDEOLLAMA, "--max-examples", "10")
    assert code == 0, out
    assert "FAIL" not in out
    assert "ok   C-REFINE-002 check_refine_resets_caption" in out
    assert out.rstrip().endswith("conforms: 26 checks, 0 failed, 0 skipped")


@pytest.mark.parametrize("plugin", bad.BAD_PLUGINS, ids=lambda p: p.__name__)
def test_bad_plugin_fails_with_its_contract_id(
    capsys: pytest.CaptureFixture[str], plugin: type
) -> None:
    rule = plugin.BREAKS  # type: ignore[attr-defined]
    extra = (
        ["--engine", "--model-path", str(tiny_checkpoint("qwen"))]
        if rule.startswith("C-ENGINE-")
        else []
    )
    code, out = _check(
        capsys, f"contracts.reference_plugins.bad:{plugin.__name__}", "--max-examples", "10", *extra
    )
    assert code == 1, out
    fails = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 1, out
    assert fails[0].startswith(f"FAIL {rule} "), out


def test_variant_name_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(capsys, "qwen", "--max-examples", "3")
    assert code == 0, out
    assert "vlmcap.plugins.qwen:VllmQwen7B conforms" in out


def test_unimportable_plugin_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "no_such_module_xyz:Plugin"])
    captured = capsys.readouterr()
    assert code == 2
    assert "cannot import 'no_such_module_xyz'" in captured.err


def test_missing_model_path_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["check", VIDEOLLAMA, "--model-path", str(tmp_path / "nope")])
    assert code == 2
    assert "is not a folder" in capsys.readouterr().err


def test_console_script_from_the_project_folder() -> None:
    """The installed ``vlmcap`` command finds ``contracts`` in the current folder; exit 0."""
    script = Path(sys.executable).parent / "vlmcap"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(  # noqa: S603 - the installed vlmcap command
        [str(script), "check", VIDEOLLAMA, "--max-examples", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VllmVideoLLaMA conforms: 26 checks, 0 failed, 0 skipped" in done.stdout


def test_check_names_its_checkpoint_and_does_not_run_the_engine_on_a_stand_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _check(capsys, VIDEOLLAMA, "--max-examples", "3", "--engine")
    assert code == 0, out
    assert "checked with checkpoint" in out
    assert "Qwen2_5_VLForConditionalGeneration" in out
    assert "a stand-in: tiny Qwen2.5-VL, not its model" in out
    assert "skip C-ENGINE-001 check_engine_round_trip: not run" in out
    assert out.rstrip().endswith("conforms: 27 checks, 0 failed, 1 skipped")
