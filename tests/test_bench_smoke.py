"""The GPU benchmark harness, smoke-run on CPU with the tiny checkpoint (seconds, not a target)."""

import json
from pathlib import Path

import pytest

from vlmcap.bench import MODES, main


pytestmark = pytest.mark.engine


def test_bench_harness_runs_every_mode_and_writes_its_results(tmp_path: Path) -> None:
    doc = main(
        ["--workload", "tiny", "--clips", "3", "--async-sweep", "2", "4", "--out", str(tmp_path)],
        emit=lambda _s: None,
    )
    (path,) = tmp_path.glob("*-tiny-*.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc, default=str))
    modes = doc["modes"]
    swept = {f"{m}@{n}" for m in ("async_llm", "async_llm_tuned") for n in (2, 4)}
    assert set(modes) == set(MODES) | swept
    for name, mode in modes.items():
        assert mode["clips"] == 3 and mode["errors"] == 0, name
        assert mode["clips_per_s"] > 0 and mode["output_tokens_per_s"] > 0
        assert mode["ratio_to_naive_generate"] > 0
        assert mode["cpu_cores_busy"] > 0, name
        assert mode["vllm_counters"]["generation_tokens"] > 0, name
    # two stages produce twice the output tokens of one (pinned output length), for both drivers
    for one_name, two_name in (
        ("vlmcap", "vlmcap_two_stage"),
        ("async_llm", "async_llm_two_stage"),
    ):
        one, two = modes[one_name], modes[two_name]
        tokens_two = two["output_tokens_per_s"] * two["wall_s"]
        assert tokens_two == pytest.approx(2 * one["output_tokens_per_s"] * one["wall_s"])
    # the peers: best of the sweep, and the two-stage peer at that semaphore
    best = max((2, 4), key=lambda n: modes[f"async_llm@{n}"]["clips_per_s"])
    assert modes["async_llm"]["semaphore"] == modes["async_llm_two_stage"]["semaphore"] == best
    assert modes["async_llm_tuned"]["best_of"] == ["async_llm_tuned@2", "async_llm_tuned@4"]
    # vlmcap's layout: every stage-2 request takes its whole video from the prefix cache
    for name in ("vlmcap_two_stage", "naive_two_stage_aligned"):
        assert modes[name]["requests_video_from_prefix_cache"] == 3, name
        assert modes[name]["vllm_counters"]["prompt_tokens_cached"] > 0, name
    assert modes["vlmcap"]["requests_video_from_prefix_cache"] == 0
    assert modes["vlmcap_nochecks"]["jaxtyping_disable"] == "disabled"
    assert 0 <= modes["vlmcap"]["vlmcap_own_fraction"] < 1
    assert "runtime_checks_fraction_of_wall" in doc["diagnostics"]
    assert doc["diagnostics"]["vlmcap_over_best_peer"] > 0
    assert doc["engine"]["load_format"] == "auto" and doc["vllm_version"]
    assert doc["peer_tuned_engine"] == {"renderer_num_workers": 4, "mm_processor_cache_gb": 0.0}


def test_scaling_harness_runs_both_phases_through_the_ray_job(tmp_path: Path) -> None:
    """1 engine then 2, fake engines on CPU: every window captioned once per phase, both timed."""
    pytest.importorskip("ray")
    from vlmcap.bench._scaling import main as scaling_main

    doc = scaling_main(
        [
            "--workload",
            "tiny",
            "--engines",
            "2",
            "--clips",
            "8",
            "--windows-per-file",
            "4",
            "--decoders",
            "1",
            "--cpus-per-engine",
            "0.5",
            "--fake-engine-s",
            "0.02",
            "--videos",
            str(tmp_path / "videos"),
            "--out",
            str(tmp_path / "out"),
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
