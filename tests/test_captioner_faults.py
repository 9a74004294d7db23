"""The driver on the fake engine: ordering, fault isolation, stalls, limits (fast, no vLLM)."""

import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, strategies as st

import vlmcap
from vlmcap import CaptionStatus, VllmConfig
from vlmcap._registry import unregister_plugin
from vlmcap.testing._fake import FakeEngine, default_text

from ._plugins import ONE_FRAME, EchoPlugin


@pytest.fixture(autouse=True)
def _echo_plugin() -> Iterator[None]:
    vlmcap.register_plugin(EchoPlugin)
    yield
    unregister_plugin("echo-test")


CONFIG = VllmConfig(model_variant="echo-test", batch_size=3, stall_timeout_s=0.2)


def _inputs(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"clip {i}", "multi_modal_data": {"video": ONE_FRAME}} for i in range(n)]


def _index(inputs: Mapping[str, Any]) -> int:
    return int(str(inputs["prompt"]).rsplit(" ", 1)[-1])


def _run(engine: FakeEngine, n: int, **kw: Any) -> list[vlmcap.CaptionResult]:
    kw.setdefault("inflight_batching", True)
    mi = kw.pop("max_inflight_requests", 0)
    return vlmcap.caption_results(_inputs(n), engine, None, None, CONFIG, mi, **kw)


@given(
    n=st.integers(1, 20),
    delays=st.lists(st.integers(1, 6), min_size=20, max_size=20),
    max_inflight=st.integers(0, 5),
    inflight=st.booleans(),
)
def test_results_follow_input_order_under_any_completion_order(
    n: int, delays: list[int], max_inflight: int, inflight: bool
) -> None:
    engine = FakeEngine(
        steps=lambda _id, inp: delays[_index(inp) % 20] if "clip" in inp["prompt"] else 1
    )
    res = _run(engine, n, max_inflight_requests=max_inflight, inflight_batching=inflight)
    assert [r.text for r in res] == [default_text({"prompt": f"clip {i}"}) for i in range(n)]
    limit = max_inflight if inflight else CONFIG.batch_size
    if limit:
        assert engine.peak_inflight <= limit


def test_inflight_fills_to_the_limit_in_one_step() -> None:
    engine = FakeEngine(steps=lambda _id, _inp: 3)
    _run(engine, 10, max_inflight_requests=4)
    assert engine.peak_inflight == 4
    # 10 requests, 4 at a time, 3 steps each: 3 waves -> 9 steps; one-per-step admission needs more
    assert engine.step_calls == 9


def test_stage2_runs_on_the_refined_prompt_and_sums_tokens() -> None:
    engine = FakeEngine()
    res = _run(engine, 3, stage2_prompts=["refine: ", None, "refine: "])
    stage1 = default_text({"prompt": "clip 0"})
    assert res[0].text == default_text({"prompt": "refine: " + stage1})
    assert res[0].stages == 2
    assert res[1].stages == 1
    assert res[1].text == default_text({"prompt": "clip 1"})
    # prompt tokens of stage 2 are counted on top of stage 1
    assert res[0].prompt_tokens == len(b"clip 0") + len(("refine: " + stage1).encode())


def test_config_stage2_caption_applies_the_default_prompt() -> None:
    engine = FakeEngine()
    cfg = VllmConfig(model_variant="echo-test", stage2_caption=True)
    res = vlmcap.caption_results(_inputs(2), engine, None, None, cfg, 0)
    assert all(r.stages == 2 for r in res)


def test_a_rejected_request_fails_alone() -> None:
    engine = FakeEngine(reject=lambda _id, inp: _index(inp) == 2)
    res = _run(engine, 5)
    assert [r.status for r in res] == [CaptionStatus.SUCCESS] * 2 + [CaptionStatus.ERROR] + [
        CaptionStatus.SUCCESS
    ] * 2
    assert "rejected" in (res[2].error or "")
    assert (
        vlmcap.vllm_caption(
            _inputs(5),
            FakeEngine(reject=lambda _i, inp: _index(inp) == 2),
            None,
            None,
            CONFIG,
            0,
            inflight_batching=True,
        )[2]
        == vlmcap.UNKNOWN_CAPTION
    )


class _DecodeBomb(EchoPlugin):
    @staticmethod
    def decode(vllm_output: Any) -> str:
        if vllm_output.outputs[0].text == default_text({"prompt": "clip 1"}):
            raise KeyError("bad output")
        if vllm_output.outputs[0].text == default_text({"prompt": "clip 3"}):
            return vllm_output.outputs  # type: ignore[no-any-return]  # seed bug 4: not a str
        return str(vllm_output.outputs[0].text)


class _RefineBomb(EchoPlugin):
    @staticmethod
    def make_refined_llm_request(
        request: vlmcap.VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> vlmcap.VllmCaptionRequest:
        if request.inputs["prompt"] == "clip 0":
            raise RuntimeError("refine bug")
        return EchoPlugin.make_refined_llm_request(request, processor, refine_prompt)


def test_plugin_faults_stay_with_their_input() -> None:
    vlmcap.register_plugin(_DecodeBomb)
    res = _run(FakeEngine(), 5)
    assert [r.ok for r in res] == [True, False, True, False, True]
    assert "decode failed: KeyError" in (res[1].error or "")
    assert "not str" in (res[3].error or "")
    vlmcap.register_plugin(_RefineBomb)
    res = _run(FakeEngine(), 3, stage2_prompts=["r: "] * 3)
    assert [r.ok for r in res] == [False, True, True]
    assert "make_refined_llm_request failed: RuntimeError: refine bug" in (res[0].error or "")
    assert res[0].stages == 1 and res[0].prompt_tokens > 0  # stage-1 tokens still counted


def test_engine_death_ends_the_rest_with_the_cause() -> None:
    engine = FakeEngine(steps=lambda _id, inp: 1 + _index(inp), fail_step=3)
    res = _run(engine, 6)
    assert [r.ok for r in res] == [True, True, False, False, False, False]
    assert all("fake engine died" in (r.error or "") for r in res[2:])


def test_a_stalled_engine_times_out_instead_of_hanging() -> None:
    engine = FakeEngine(steps=lambda _id, inp: 1 + _index(inp), stall=2)
    res = _run(engine, 4)
    assert res[0].ok
    assert all("EngineStalledError" in (r.error or "") for r in res[1:])
    assert sorted(engine.aborted)  # what was in flight was aborted


def test_stray_outputs_are_ignored() -> None:
    res = _run(FakeEngine(strays=["ghost-1", "ghost-2"]), 3)
    assert all(r.ok for r in res)


def test_empty_caption_is_an_error_not_a_success() -> None:
    res = _run(FakeEngine(text=lambda inp: "   " if _index(inp) == 1 else "words"), 3)
    assert [r.status for r in res] == [
        CaptionStatus.SUCCESS,
        CaptionStatus.ERROR,
        CaptionStatus.SUCCESS,
    ]
    assert "empty caption" in (res[1].error or "")


def test_bad_arguments_are_typed_errors() -> None:
    with pytest.raises(vlmcap.ConfigError, match="must be >= 0"):
        _run(FakeEngine(), 2, max_inflight_requests=-1)
    with pytest.raises(vlmcap.ConfigError, match="same length"):
        _run(FakeEngine(), 2, stage2_prompts=["x"])
    with pytest.raises(vlmcap.PromptError, match="empty prompt"):
        _run(FakeEngine(), 2, stage2_prompts=["x", "  "])
    with pytest.raises(vlmcap.UnknownVariantError, match="known variants: .*qwen"):
        vlmcap.caption_results(
            _inputs(1), FakeEngine(), None, None, VllmConfig(model_variant="nope"), 0
        )


def test_static_path_runs_batches_to_completion() -> None:
    engine = FakeEngine(steps=lambda _id, inp: 1 + _index(inp) % 3)
    res = _run(engine, 7, inflight_batching=False)
    assert all(r.ok for r in res)
    assert engine.peak_inflight == CONFIG.batch_size


def test_a_plugin_lora_request_goes_with_every_request() -> None:
    """Phi-4's vision is a LoRA adapter: a plugin's ``lora_request(config)`` reaches every
    ``add_request`` the vLLM adapter makes, stage 2 included."""
    from vlmcap._vllm_compat import EngineAdapter
    from vlmcap.testing._fake import FakeCompletion, FakeRequestOutput

    class LoraEcho(EchoPlugin):
        @classmethod
        def lora_request(cls, config: VllmConfig | None = None) -> Any:
            return ("vision-lora", config.model_variant if config else None)

    class StubEngine:  # the llm_engine surface the adapter uses
        def __init__(self) -> None:
            self.loras: list[Any] = []
            self.pending: list[str] = []

        def add_request(self, rid: str, inputs: Any, params: Any, lora_request: Any = None) -> None:
            self.loras.append(lora_request)
            self.pending.append(rid)

        def has_unfinished_requests(self) -> bool:
            return bool(self.pending)

        def step(self) -> list[Any]:
            done, self.pending = self.pending, []
            out = (FakeCompletion(0, "a caption", (1,), "stop"),)
            return [FakeRequestOutput(r, (1,), out) for r in done]

    class StubLLM:
        def __init__(self) -> None:
            self.llm_engine = StubEngine()

    vlmcap.register_plugin(LoraEcho)
    llm = StubLLM()
    res = vlmcap.caption_results(_inputs(3), llm, None, None, CONFIG, 0, stage2_prompts=["r: "] * 3)
    assert all(r.ok and r.stages == 2 for r in res)
    assert llm.llm_engine.loras == [("vision-lora", "echo-test")] * 6
    assert isinstance(EngineAdapter(StubLLM()), vlmcap.Engine)
    assert isinstance(EngineAdapter(StubLLM()), vlmcap.AddsInParallel), "declared capability"
    assert not isinstance(FakeEngine(), vlmcap.AddsInParallel), "adds one by one"


def test_a_caption_call_leaves_the_global_random_generator_alone() -> None:
    """beartype's checks draw from vlmcap's own generator: a user's seeded ``random`` sequence
    (and Hypothesis, which forbids strategies to touch it) never sees vlmcap's calls."""
    from beartype import beartype

    @beartype
    def made_after_import(xs: list[int]) -> int:
        return len(xs)

    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    res = _run(FakeEngine(), 12)  # checked calls with sequence arguments, all through
    assert made_after_import(list(range(100))) == 100
    assert all(r.ok for r in res)
    assert [random.random() for _ in range(3)] == expected
