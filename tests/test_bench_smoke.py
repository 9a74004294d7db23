"""The GPU benchmark harness, smoke-run on CPU with the tiny checkpoint (seconds, not a target)."""

import json
from pathlib import Path

import pytest

from vlmcap.bench import MODES, main


pytestmark = pytest.mark.engine


def test_bench_harness_runs_every_mode_and_writes_its_results(tmp_path: Path) -> None:
    doc = main(["--workload", "tiny", "--clips", "3", "--out", str(tmp_path)], emit=lambda _s: None)
    (path,) = tmp_path.glob("*-tiny-*.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc, default=str))
    assert set(doc["modes"]) == set(MODES)
    for name, mode in doc["modes"].items():
        assert mode["clips"] == 3 and mode["errors"] == 0, name
        assert mode["clips_per_s"] > 0 and mode["output_tokens_per_s"] > 0
        assert mode["ratio_to_naive_generate"] > 0
    # two stages produce twice the output tokens of one (pinned output length)
    one, two = doc["modes"]["vlmcap"], doc["modes"]["vlmcap_two_stage"]
    tokens_two = two["output_tokens_per_s"] * two["wall_s"]
    assert tokens_two == pytest.approx(2 * one["output_tokens_per_s"] * one["wall_s"])
    assert 0 <= doc["modes"]["vlmcap"]["vlmcap_own_fraction"] < 1
    assert doc["engine"]["load_format"] == "auto" and doc["vllm_version"]


def test_scaling_harness_runs_both_phases_through_the_ray_job(tmp_path: Path) -> None:
    """1 engine then 2, fake engines on CPU: every window captioned once per phase, both timed."""
    pytest.importorskip("ray")
    from vlmcap.bench._scaling import main as scaling_main

    doc = scaling_main(
        [
            "--workload", "tiny", "--engines", "2", "--clips", "8", "--windows-per-file", "4",
            "--decoders", "1", "--cpus-per-engine", "0.5", "--fake-engine-s", "0.02",
            "--videos", str(tmp_path / "videos"), "--out", str(tmp_path / "out"),
        ],
        emit=lambda _s: None,
    )
    (path,) = (tmp_path / "out").glob("*-scaling-tiny-*.json")
    assert json.loads(path.read_text())["phases"] == doc["phases"]
    assert set(doc["phases"]) == {"engines_1", "engines_2"}
    for phase in doc["phases"].values():
        assert (phase["clips"], phase["errors"]) == (8, 0)
        assert phase["clips_per_s"] > 0
    assert doc["scaling"] == pytest.approx(
        doc["phases"]["engines_2"]["clips_per_s"] / doc["phases"]["engines_1"]["clips_per_s"]
    )
