"""Every plugin, stage 1 and stage 2, on a CUDA GPU with its tiny checkpoint (marked ``gpu``).

Skipped without a GPU (CI has none). On the GPU machine (vLLM 0.26, see benchmarks/README.md)::

    VLMCAP_GPU_RECORD=$OUT/gpu-e2e.jsonl python3 -m pytest -m gpu tests/test_gpu_e2e.py

``VLMCAP_GPU_RECORD`` appends one JSON line per plugin (date, GPU, vLLM version, captions,
token counts, engine start) so the last GPU run is recorded in the repository
(``benchmarks/results/gpu-e2e-*.json``).
"""

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import vlmcap
from vlmcap.testing import synthetic_clip, tiny_checkpoint


# vLLM picks "fork" for its engine process unless it sees CUDA initialised; under pytest CUDA
# can be initialised without it noticing ("Cannot re-initialize CUDA in forked subprocess").
os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CASES = [  # (variant, tiny recipe)
    ("qwen", "qwen"),
    ("cosmos_r1", "cosmos_r1"),
    ("qwen3_vl", "qwen3_vl"),
    ("cosmos_r2", "cosmos_r2"),
    ("qwen3_vl", "qwen3_vl_moe"),
    ("phi4", "phi4"),
    ("chat", "chat"),
    ("chat", "chat_image"),
    ("chat", "qwen"),  # the long-tail plugin on a Qwen2.5-VL folder
]


def _record(doc: dict[str, Any]) -> None:
    path = os.environ.get("VLMCAP_GPU_RECORD")
    if path:
        with Path(path).open("a") as f:
            f.write(json.dumps(doc, default=str) + "\n")


@pytest.mark.parametrize(("variant", "recipe"), CASES, ids=[f"{v}-{r}" for v, r in CASES])
def test_stage1_and_stage2_on_the_gpu(variant: str, recipe: str) -> None:
    from vlmcap._vllm_compat import shutdown_llm, vllm_version_string

    if recipe not in vlmcap.testing.tiny_variants():
        pytest.skip(f"no tiny recipe {recipe!r}")
    config = vlmcap.VllmConfig(
        model_variant=variant,
        model_path=tiny_checkpoint(recipe),
        max_output_tokens=12,
        max_model_len=16384,  # phi4: 8 frames of 112x112 as images are over 4,096 tokens
        gpu_memory_utilization=0.3,
        sampling=vlmcap.VllmSamplingConfig(temperature=0.0, top_p=1.0, min_tokens=0),
    )
    t0 = time.perf_counter()
    try:
        llm = vlmcap.vllm_model(config)
    except vlmcap.UnsupportedSettingError as exc:  # this vLLM cannot import the architecture
        if "failed to be inspected" not in str(exc):
            raise
        _record({"variant": variant, "recipe": recipe, "skipped": str(exc)[:2000]})
        pytest.skip(f"{recipe}: this vLLM cannot load the architecture here: {exc}")
    start_s = time.perf_counter() - t0
    try:
        processor = vlmcap.auto_processor(config)
        params = vlmcap.sampling_params(config)
        noise = torch.randint(0, 256, (8, 3, 64, 128), generator=torch.Generator().manual_seed(0))
        clips = [
            synthetic_clip(8, 112, 112),
            torch.full((8, 3, 64, 96), 255, dtype=torch.uint8),
            noise.to(torch.uint8),
        ]
        inputs = vlmcap.make_model_inputs(clips, config, processor, "Describe this video.")
        only1 = vlmcap.caption_results(inputs, llm, processor, params, config, 0)
        stage2: list[str | None] = ["Refine this caption: ", None, "Refine this caption: "]
        res = vlmcap.caption_results(
            inputs, llm, processor, params, config, 0, stage2_prompts=stage2
        )
        device = torch.cuda.get_device_name(0)
        _record(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "gpu": device,
                "vllm_version": vllm_version_string(),
                "variant": variant,
                "recipe": recipe,
                "engine_start_s": round(start_s, 1),
                "stage1": [[r.status.value, r.text, r.prompt_tokens] for r in only1],
                "stage2": [[r.status.value, r.stages, r.text, r.prompt_tokens] for r in res],
            }
        )
    finally:
        shutdown_llm(llm)
    assert all(r.ok and r.text.strip() and r.stages == 1 for r in only1), only1
    assert [r.stages for r in res] == [2, 1, 2], res
    assert all(r.ok and r.text.strip() and r.output_tokens > 0 for r in res), res
    for i in (0, 2):  # stage 2 re-sends the media with a longer prompt
        assert res[i].prompt_tokens > 2 * only1[i].prompt_tokens
    assert (res[1].text, res[1].prompt_tokens) == (only1[1].text, only1[1].prompt_tokens)
