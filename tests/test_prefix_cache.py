"""Stage 2 takes the whole video from vLLM's prefix cache (the block-aligned prompt layout).

The layout (``vlmcap.plugins.qwen.block_aligned_ids``) is checked as a pure function over the
tiny checkpoint's real tokenizer, then on the real CPU engine through vLLM's own counters
(``LLM.get_metrics()``, ``RequestOutput.num_cached_tokens``).
"""

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import assume, given, strategies as st

import vlmcap
from vlmcap._driver import as_engine
from vlmcap._vllm_compat import build_llm, shutdown_llm
from vlmcap.bench._stats import counter_delta, counters, video_reuse
from vlmcap.plugins.kit import chat_token_ids
from vlmcap.plugins.qwen import VllmQwen7B, block_aligned_ids, kv_block_tokens, video_token_count
from vlmcap.testing import synthetic_clip


@pytest.fixture(scope="module")
def processor(qwen_config: Any) -> Any:
    return vlmcap.auto_processor(qwen_config)


def _special(processor: Any, token: str) -> int:
    return int(processor.tokenizer.convert_tokens_to_ids(token))


@given(
    video_tokens=st.integers(1, 5000),
    prompt=st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1),
)
def test_layout_only_inserts_newlines_after_the_video_up_to_a_block_boundary(
    processor: Any, video_tokens: int, prompt: str
) -> None:
    assume("<|" not in prompt)  # a prompt spelling a special token is not laid out (below)
    ids = chat_token_ids(processor, prompt)
    laid = block_aligned_ids(ids, processor, video_tokens)
    end = ids.index(_special(processor, "<|vision_end|>"))
    pad = len(laid) - len(ids)
    newline = processor.tokenizer.encode("\n", add_special_tokens=False)
    assert 0 <= pad < kv_block_tokens()
    assert laid == [*ids[: end + 1], *newline * pad, *ids[end + 1 :]]
    # once vLLM expands the one <|video_pad|> into video_tokens, the text starts a fresh block
    assert (end + 1 - 1 + video_tokens + pad) % kv_block_tokens() == 0
    # the prompt says the same thing: only newlines between the video and the text
    text, before = processor.tokenizer.decode(laid), processor.tokenizer.decode(ids)
    assert text.replace("<|vision_end|>" + "\n" * pad, "<|vision_end|>", 1) == before


def test_layout_leaves_prompts_it_cannot_place_unchanged(processor: Any) -> None:
    ids = chat_token_ids(processor, "Describe.")
    assert block_aligned_ids(ids, processor, None) == ids
    no_video = [i for i in ids if i != _special(processor, "<|video_pad|>")]
    assert block_aligned_ids(no_video, processor, 100) == no_video
    two_videos = chat_token_ids(processor, "<|video_pad|>")  # the prompt spells the placeholder
    assert block_aligned_ids(two_videos, processor, 100) == two_videos


@pytest.fixture(scope="module")
def stats_engine(qwen_config: Any) -> Iterator[Any]:
    """A CPU engine with vLLM's statistics on (the session engine has them off)."""
    kwargs = VllmQwen7B.engine_kwargs(qwen_config)
    llm = build_llm(**kwargs, enable_prefix_caching=True, disable_log_stats=False)
    yield llm
    shutdown_llm(llm)


class _Recorder:
    """The engine adapter, keeping every finished ``RequestOutput``."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.outputs: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def step(self) -> Any:
        done = self._engine.step()
        self.outputs += [f.output for f in done if f.output is not None]
        return done


def _clips(n: int, seed: int) -> list[Any]:
    # 216 video tokens: the plain layout puts the text mid-block (checked below)
    return [synthetic_clip(6, 224, 252, seed=seed + i) for i in range(n)]


@pytest.mark.engine
def test_stage2_takes_the_whole_video_from_the_prefix_cache(
    stats_engine: Any, processor: Any, qwen_config: Any
) -> None:
    config = attrs.evolve(qwen_config, stage2_caption=True)
    params = vlmcap.sampling_params(config)
    inputs = vlmcap.make_model_inputs(_clips(3, seed=10), config, processor, "Describe it.")
    engine = _Recorder(as_engine(stats_engine))
    before = counters(stats_engine.get_metrics())
    results = vlmcap.caption_results(
        inputs, engine, processor, params, config, 0, stage2_prompts=["Refine this: "] * 3
    )
    delta = counter_delta(before, counters(stats_engine.get_metrics()))
    assert [r.ok for r in results] == [True] * 3
    assert all(r.text.strip() and r.stages == 2 for r in results)
    assert len(engine.outputs) == 6
    end_id = _special(processor, "<|vision_end|>")
    start_id = _special(processor, "<|vision_start|>")
    newline = processor.tokenizer.encode("\n", add_special_tokens=False)[0]
    video_tokens = video_token_count(inputs[0]["multi_modal_data"]["video"], processor)
    assert video_tokens is not None
    spans = set()
    for out in engine.outputs:
        ids = list(out.prompt_token_ids)
        # vLLM expanded the video into the tokens the layout counted on ...
        assert ids.index(end_id) == ids.index(start_id) + 1 + video_tokens
        spans.add(ids.index(end_id))
        # ... so the text after the newlines starts a fresh block
        text_start = ids.index(end_id) + 1
        while ids[text_start] == newline:
            text_start += 1
        assert text_start % kv_block_tokens() == 0
    (span,) = spans
    reuse = video_reuse(engine.outputs, end_id)
    # stage 1 of distinct clips shares no video; each stage 2 takes all of its video cached
    assert reuse["requests_video_from_prefix_cache"] == 3
    assert delta["prompt_tokens_cached"] >= 3 * span
    assert delta["prefix_cache_hits"] >= 3 * span


@pytest.mark.engine
def test_without_the_layout_stage2_recomputes_the_tail_of_the_video(
    stats_engine: Any, processor: Any, qwen_config: Any
) -> None:
    params = vlmcap.sampling_params(qwen_config)
    clips = _clips(2, seed=20)
    first = vlmcap.make_model_inputs(clips, qwen_config, processor, "Describe it.")
    plain = [
        {**inp, "prompt_token_ids": chat_token_ids(processor, "Describe it.")} for inp in first
    ]
    end_id = _special(processor, "<|vision_end|>")
    outs1 = stats_engine.generate(plain, params, use_tqdm=False)
    text_start = list(outs1[0].prompt_token_ids).index(end_id) + 1
    assert text_start % kv_block_tokens() > 1  # else the plain layout caches the video by chance
    before = counters(stats_engine.get_metrics())
    second = [
        {**inp, "prompt_token_ids": chat_token_ids(processor, "Refine: " + o.outputs[0].text)}
        for inp, o in zip(plain, outs1, strict=True)
    ]
    outs2 = stats_engine.generate(second, params, use_tqdm=False)
    delta = counter_delta(before, counters(stats_engine.get_metrics()))
    assert video_reuse(outs2, end_id)["requests_video_from_prefix_cache"] == 0
    assert 0 < delta["prompt_tokens_cached"] < 2 * (text_start - 1)
