"""Soak: thousands of requests through the real tiny-checkpoint engine with 1% faults of each kind.

Kinds injected, each at its own 1% of the inputs: the plugin's ``decode`` raises,
``make_refined_llm_request`` raises, the engine rejects the request (bad multimodal key),
``decode`` returns an empty caption, and the engine reports an output for an unknown request id
(a stray, which must be ignored: those inputs succeed). Every input must get exactly one result,
and errors must appear exactly at the injected indices.
"""

import collections
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import pytest

import vlmcap
from vlmcap._registry import unregister_plugin
from vlmcap._vllm_compat import EngineAdapter, Finished
from vlmcap.testing import synthetic_clip


pytestmark = [pytest.mark.engine, pytest.mark.slow]

N = int(os.environ.get("VLMCAP_SOAK_N", "2000"))
KINDS = ("decode_raises", "refine_raises", "rejected", "empty_caption", "stray_output")
RATE = 0.01


def _index(engine_or_request_id: str) -> int:
    """``vlmcap-<serial>-<index>-s<stage>`` (engine ids) or ``vlmcap-<index>`` (requests)."""
    parts = engine_or_request_id.split("-")
    return int(parts[2] if len(parts) == 4 else parts[1])


def _faults(n: int) -> dict[str, frozenset[int]]:
    per_kind = max(1, round(n * RATE))
    picked = random.Random(7).sample(range(n), per_kind * len(KINDS))
    return {k: frozenset(picked[j * per_kind : (j + 1) * per_kind]) for j, k in enumerate(KINDS)}


FAULTS = _faults(N)


class StrayingEngine:
    """The real engine adapter, plus one stray output next to each chosen input's output."""

    def __init__(self, inner: EngineAdapter, stray_for: frozenset[int]) -> None:
        self.inner = inner
        self.stray_for = stray_for
        self.injected = 0

    def add(self, engine_id: str, inputs: Mapping[str, Any], params: Any) -> None:
        self.inner.add(engine_id, inputs, params)

    def add_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], params: Any
    ) -> list[Exception | None]:
        return self.inner.add_many(items, params)

    def step(self) -> list[Finished]:
        out = self.inner.step()
        strays = [
            attrs.evolve(f, engine_id=f"ghost-{f.engine_id}")
            for f in out
            if f.error is None
            and f.engine_id.endswith("-s1")
            and _index(f.engine_id) in self.stray_for
        ]
        self.injected += len(strays)
        return strays + out  # the stray first: it must not be taken for the real one

    def abort(self, engine_ids: Sequence[str]) -> None:
        self.inner.abort(engine_ids)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def soak_plugin() -> Iterator[str]:
    qwen = vlmcap.get_plugin("qwen")

    class SoakPlugin(qwen):  # type: ignore[misc, valid-type]
        @staticmethod
        def model_variant() -> str:
            return "qwen-soak"

        @staticmethod
        def decode(vllm_output: Any) -> str:
            i = _index(str(vllm_output.request_id))
            if i in FAULTS["decode_raises"]:
                raise RuntimeError(f"injected decode fault at {i}")
            if i in FAULTS["empty_caption"]:
                return ""
            return str(qwen.decode(vllm_output))

        @staticmethod
        def make_refined_llm_request(
            request: vlmcap.VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
        ) -> vlmcap.VllmCaptionRequest:
            i = _index(request.request_id)
            if i in FAULTS["refine_raises"]:
                raise RuntimeError(f"injected refine fault at {i}")
            refined: vlmcap.VllmCaptionRequest = qwen.make_refined_llm_request(
                request, processor, refine_prompt
            )
            return refined

    vlmcap.register_plugin(SoakPlugin)
    yield "qwen-soak"
    unregister_plugin("qwen-soak")


def test_soak_with_one_percent_faults_of_each_kind(
    qwen_engine: Any, qwen_config: Any, soak_plugin: str
) -> None:
    llm, processor, _params = qwen_engine
    config = attrs.evolve(qwen_config, model_variant=soak_plugin, max_output_tokens=4)
    params = vlmcap.sampling_params(config)
    t0 = time.monotonic()
    distinct = [
        vlmcap.make_model_inputs(
            [synthetic_clip(4, 56, 56, seed=k)], config, processor, f"Describe clip {k}."
        )[0]
        for k in range(16)
    ]
    inputs: list[dict[str, Any]] = []
    for i in range(N):
        inp = distinct[i % len(distinct)]
        if i in FAULTS["rejected"]:  # seed bug 2: a key vLLM does not know
            inp = {**inp, "multi_modal_data": {"video_frames": inp["multi_modal_data"]["video"]}}
        inputs.append(inp)
    refine_at = {i for i in range(N) if i % 20 == 0} | FAULTS["refine_raises"]
    stage2: list[str | None] = ["Refine: " if i in refine_at else None for i in range(N)]
    engine = StrayingEngine(EngineAdapter(llm), FAULTS["stray_output"])
    reported: collections.Counter[int] = collections.Counter()
    t1 = time.monotonic()
    try:
        res = vlmcap.caption_results(
            inputs,
            engine,
            processor,
            params,
            config,
            64,
            stage2_prompts=stage2,
            on_result=lambda i, _r: reported.update([i]),
        )
    finally:
        engine.inner.close()
    t2 = time.monotonic()

    expected = {k: v for k, v in FAULTS.items() if k != "stray_output"}
    errors: dict[str, set[int]] = {k: set() for k in expected}
    unexpected = {}
    for i, r in enumerate(res):
        if r.ok:
            continue
        err = r.error or ""
        kind = (
            "decode_raises"
            if "injected decode fault" in err
            else "refine_raises"
            if "injected refine fault" in err
            else "rejected"
            if "rejected" in err
            else "empty_caption"
            if "empty caption" in err
            else None
        )
        if kind is None:
            unexpected[i] = err
        else:
            errors[kind].add(i)
    stage2_ran = sum(r.stages == 2 for r in res)
    print(
        f"\nsoak: {N} requests in, {len(res)} results out, "
        f"{sum(r.ok for r in res)} ok, {stage2_ran} with stage 2; "
        + ", ".join(f"{k}: {len(v)} errors" for k, v in errors.items())
        + f", strays injected: {engine.injected} (ignored); unexpected errors: {len(unexpected)}; "
        f"inputs built in {t1 - t0:.1f} s, captioned in {t2 - t1:.1f} s "
        f"({N / (t2 - t1):.0f} requests/s)"
    )
    assert len(res) == N and sorted(reported) == list(range(N))
    assert set(reported.values()) == {1}, "an input reported twice"
    assert not unexpected, dict(list(unexpected.items())[:5])
    assert errors == {k: set(v) for k, v in expected.items()}
    assert engine.injected == len(FAULTS["stray_output"])
    assert all(res[i].ok for i in FAULTS["stray_output"])
    assert all(res[i].stages == 2 for i in refine_at if res[i].ok)
    assert stage2_ran >= len(refine_at) - len(set().union(*expected.values()))
