"""vlmcap on the real vLLM engine (CPU build here, GPU where present) with the tiny checkpoint."""

from typing import Any

import pytest
import torch

import vlmcap
from vlmcap import CaptionStatus
from vlmcap._vllm_compat import EngineAdapter
from vlmcap.testing import synthetic_clip
from vlmcap.testing._fake import FakeEngine


pytestmark = pytest.mark.engine

PROMPTS = [
    "Describe this video.",
    "What moves in this clip?",
    "List the colours you see.",
    "Summarise the scene in one sentence.",
    "Describe the motion of every shape.",
]


def _inputs(config: Any, processor: Any, n: int) -> list[dict[str, Any]]:
    """Inputs that differ in prompt and video so their captions can be told apart."""
    out = []
    for i in range(n):
        clip = synthetic_clip(4 + 2 * (i % 3), 112, 112 + 28 * i, seed=i)
        out += vlmcap.make_model_inputs([clip], config, processor, PROMPTS[i % len(PROMPTS)])
    return out


def _solo(
    engine: tuple[Any, Any, Any],
    config: Any,
    inputs: list[dict[str, Any]],
    stage2: list[str | None],
) -> list[vlmcap.CaptionResult]:
    llm, processor, params = engine
    return [
        vlmcap.caption_results([inp], llm, processor, params, config, 1, stage2_prompts=[s])[0]
        for inp, s in zip(inputs, stage2, strict=True)
    ]


def test_stage1_and_stage2_inflight_and_static(qwen_engine: Any, qwen_config: Any) -> None:
    llm, processor, params = qwen_engine
    inputs = _inputs(qwen_config, processor, 4)
    stage2: list[str | None] = ["Refine this caption: ", None, "Refine this caption: ", None]
    only1 = vlmcap.caption_results(inputs, llm, processor, params, qwen_config, 0)
    for inflight in (True, False):
        res = vlmcap.caption_results(
            inputs,
            llm,
            processor,
            params,
            qwen_config,
            0,
            inflight_batching=inflight,
            stage2_prompts=stage2,
        )
        assert [r.stages for r in res] == [2, 1, 2, 1]
        assert all(r.ok and r.text.strip() for r in res), res
        assert all(r.output_tokens > 0 and r.prompt_tokens > 0 for r in res)
        # stage 2 re-sends the video with a longer prompt; its tokens add to stage 1's
        for i in (0, 2):
            assert res[i].prompt_tokens > 2 * only1[i].prompt_tokens
            assert res[i].output_tokens > only1[i].output_tokens
        assert (res[1].prompt_tokens, res[1].text) == (only1[1].prompt_tokens, only1[1].text)
        assert all(r.finish_reason in ("stop", "length") for r in res)
        assert all(r.status in (CaptionStatus.SUCCESS, CaptionStatus.TRUNCATED) for r in res)


def test_input_order_survives_out_of_order_completion(qwen_engine: Any, qwen_config: Any) -> None:
    """Inputs 0 and 2 run two stages, so 1, 3, 4 finish first; every result must still equal the
    result of running that input alone (greedy decoding is deterministic)."""
    llm, processor, params = qwen_engine
    inputs = _inputs(qwen_config, processor, 5)
    stage2: list[str | None] = ["Refine: ", None, "Refine: ", None, None]
    completion: list[int] = []
    together = vlmcap.caption_results(
        inputs,
        llm,
        processor,
        params,
        qwen_config,
        0,
        stage2_prompts=stage2,
        on_result=lambda i, _r: completion.append(i),
    )
    assert completion != sorted(completion), "the scenario must complete out of order"
    alone = _solo(qwen_engine, qwen_config, inputs, stage2)
    assert [r.text for r in together] == [r.text for r in alone]
    assert len({r.text for r in together}) > 1, "captions must differ for the test to mean anything"


def test_one_bad_request_does_not_sink_the_batch(qwen_engine: Any, qwen_config: Any) -> None:
    llm, processor, params = qwen_engine
    inputs = _inputs(qwen_config, processor, 3)
    bad = dict(inputs[1])
    bad["multi_modal_data"] = {"video_frames": inputs[1]["multi_modal_data"]["video"]}  # seed bug 2
    res = vlmcap.caption_results(
        [inputs[0], bad, inputs[2]], llm, processor, params, qwen_config, 0
    )
    assert [r.ok for r in res] == [True, False, True]
    assert "rejected" in (res[1].error or "")
    strings = vlmcap.vllm_caption(
        [inputs[0], bad], llm, processor, params, qwen_config, 0, inflight_batching=False
    )
    assert strings[1] == vlmcap.UNKNOWN_CAPTION and strings[0] != vlmcap.UNKNOWN_CAPTION


def test_metadata_is_attached_with_the_true_fps(qwen_engine: Any, qwen_config: Any) -> None:
    _llm, processor, _params = qwen_engine
    clip = synthetic_clip(6, 112, 112)
    md = vlmcap.VideoMetadata.uniform(6, 3.0)
    (inp,) = vlmcap.make_model_inputs([clip], qwen_config, processor, "Describe.", metadata=[md])
    frames, sent = inp["multi_modal_data"]["video"]
    assert sent["fps"] == 3.0 and sent["frames_indices"] == list(range(6))
    assert sent["total_num_frames"] == 6 and sent["do_sample_frames"] is False
    assert frames.dtype == torch.uint8 and frames.shape[0] == 6
    with pytest.raises(vlmcap.MetadataError, match="describes 4 frames"):
        vlmcap.make_model_inputs(
            [clip], qwen_config, processor, "x", metadata=[vlmcap.VideoMetadata.uniform(4, 2.0)]
        )


def test_fake_engine_agrees_with_the_real_one(qwen_engine: Any, qwen_config: Any) -> None:
    """The fake engine used for fault injection behaves like vLLM on the same inputs: it accepts
    and rejects the same requests, finishes each accepted id exactly once, and reports outputs
    the plugin decodes to strings, with counts inside the same bounds."""
    llm, processor, params = qwen_engine
    inputs = _inputs(qwen_config, processor, 3)
    bad = {**inputs[0], "multi_modal_data": {"images": inputs[0]["multi_modal_data"]["video"]}}
    no_prompt = {"multi_modal_data": inputs[0]["multi_modal_data"]}
    cases = [*inputs, bad, no_prompt]
    plugin = vlmcap.get_plugin("qwen")
    behaviour = []
    for engine in (EngineAdapter(llm), FakeEngine()):
        accepted: list[str] = []
        finished: list[Any] = []
        for k, inp in enumerate(cases):
            try:
                engine.add(f"cmp-{k}", inp, params)
                accepted.append(f"cmp-{k}")
            except Exception:  # noqa: S112 - rejection is what is compared here
                continue
        while len(finished) < len(accepted):
            finished += engine.step()
        assert sorted(f.engine_id for f in finished) == sorted(accepted)
        for f in finished:
            assert isinstance(plugin.decode(f.output), str)
            assert f.finish_reason in ("stop", "length")
            assert 0 < f.output_tokens <= qwen_config.max_output_tokens
            k = int(f.engine_id.split("-")[1])
            assert f.prompt_tokens >= len(cases[k]["prompt_token_ids"])
        behaviour.append(sorted(accepted))
    assert behaviour[0] == behaviour[1] == ["cmp-0", "cmp-1", "cmp-2"]
